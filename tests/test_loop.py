"""The fast training loop (issue 14) changes how batches are made, not what a run learns: DataLoader workers give the
very same run, the image array gives the run that reading the files gives (up to 8-bit rounding), SLIP and CXR-CLIP
get their extra views. (That a compiled model gives the eager model's losses is a slow-tier check in 02_pretrain.)"""
import numpy as np
import pytest
from conftest import tiny_params

TINY = dict(image_tower='tiny-vit', text_config=dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), max_steps=4)


def losses(synth_root, out, **kw):
    from medvlp.pretrain import pretrain
    return pretrain(**tiny_params(synth_root, out, **{**TINY, **kw})).history.loss.values


def test_workers_give_the_same_run(tmp_path, synth_root, monkeypatch):
    monkeypatch.setenv('MEDVLP_CACHE', str(tmp_path / 'cache'))
    main = losses(synth_root, tmp_path / 'w0', num_workers=0)
    np.testing.assert_array_equal(losses(synth_root, tmp_path / 'w2', num_workers=2), main)
    assert len(list((tmp_path / 'cache' / 'arrays').glob('32px-1ch-*/images.npy'))) == 1  # decoded once, shared by both


def test_image_array_matches_the_files(tmp_path, synth_root, monkeypatch):
    monkeypatch.setenv('MEDVLP_CACHE', str(tmp_path / 'cache'))
    files = losses(synth_root, tmp_path / 'files', image_cache=False)
    assert not (tmp_path / 'cache' / 'arrays').exists()
    np.testing.assert_allclose(losses(synth_root, tmp_path / 'array'), files, rtol=2e-3)


@pytest.mark.parametrize('method', ['slip', 'cxr_clip'])
def test_methods_with_more_views_train(tmp_path, synth_root, method):
    l = losses(synth_root, tmp_path / method, method=method, max_steps=6, ssl_mlp='64,64,32')
    assert np.isfinite(l).all() and l[-1] < l[0], l
