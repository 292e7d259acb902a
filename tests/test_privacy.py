"""Privacy: no identifying DICOM header field (nor a planted table date) reaches a run's outputs, logs or printed lines;
a name from one report stays out of a tokenizer vocabulary (min_frequency); no image path reaches a run's shareable files."""
import json
from pathlib import Path

import numpy as np
from PIL import Image

from medvlp.datasets import load_dataset, preprocess
from fixtures import PLANTED_PHI, write_example
import conftest

DICOM_SETS = ['rsna_pneumonia', 'siim_pneumothorax', 'vindr_cxr', 'cbis_ddsm', 'embed']


def planted(text): return [v for v in PLANTED_PHI.values() if v in text]


def scan(folder):
    "{file: planted strings found} for every file under `folder` (bytes read as latin-1, so binary files are scanned too)."
    return {str(p): planted(p.read_bytes().decode('latin-1')) for p in Path(folder).rglob('*') if p.is_file()}


def test_no_planted_identifiers_in_outputs(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv('MEDVLP_CACHE', str(tmp_path / 'cache'))
    data, out = tmp_path / 'data', tmp_path / 'out'
    for name in DICOM_SETS + ['mimic_cxr']:
        root = write_example(name, data / name)
        st = load_dataset(name, root, None, on_bad='skip', log=out / f'{name}_skipped.csv')
        if name == 'rsna_pneumonia':  # a corrupt DICOM whose header (with the planted fields) still parses
            f = Path(st[0].images[0]); b = f.read_bytes(); f.write_bytes(b[:len(b) - 300])
        pp = preprocess(st, size=16, workers=2, cache=out / 'prep', on_bad='skip', log=out / f'{name}_prep_skipped.csv')
        print(name, st, pp, pp.skipped)
        (out / f'{name}_studies.json').write_text(json.dumps([vars(s) for s in pp], default=str))
        if name == 'rsna_pneumonia': assert len(pp.skipped) == 1 and len(pp) == len(st) - 1
    printed = capfd.readouterr()
    # the fixtures do carry the planted fields (so the scan below can fail) ...
    assert set(sum(scan(data).values(), [])) == set(PLANTED_PHI.values())
    assert (out / 'rsna_pneumonia_prep_skipped.csv').exists()
    # ... and no output, cache file, log or printed line does
    assert {k: v for k, v in scan(out).items() if v} == {}
    assert {k: v for k, v in scan(tmp_path / 'cache').items() if v} == {}
    assert planted(printed.out + printed.err) == []
    assert len(list((out / 'prep').rglob('*.png'))) > 40


# --- the trained tokenizer's vocabulary and a run's shareable files

def vocab_text(folder):
    "Everything in a saved tokenizer folder, lower-cased (vocabulary, merges, config)."
    return ' '.join(p.read_text(encoding='utf-8') for p in Path(folder).rglob('*') if p.is_file()).lower()


def test_name_in_one_report_stays_out_of_the_vocabulary(tmp_path):
    from medvlp.data import train_tokenizer
    common = ['No pleural effusion.', 'Small left pleural effusion.', 'Heart size is enlarged.', 'No pneumothorax.'] * 10
    texts = common + ['Discussed with Dr Vantrebel; Vantrebel agrees. Vantrebel.', 'Mild cardiomegaly.', 'Mild edema.']
    for kind in ('wordpiece', 'bpe'):
        train_tokenizer(texts, kind, 2000, out_dir=tmp_path / f'{kind}1')
        train_tokenizer(texts, kind, 2000, out_dir=tmp_path / f'{kind}2', min_frequency=2)
        assert 'vantrebel' in vocab_text(tmp_path / f'{kind}1'), kind  # without the filter the name is a token ...
        v = vocab_text(tmp_path / f'{kind}2')
        assert 'vantreb' not in v and 'antrebel' not in v, kind      # ... with it, not even most of it
        assert 'effusion' in v and 'mild' in v, kind                  # words of two or more reports stay


def test_pretrain_outputs_hold_no_image_paths(tmp_path, monkeypatch):
    from medvlp.pretrain import pretrain
    monkeypatch.setenv('MEDVLP_CACHE', str(tmp_path / 'cache'))
    data, out = tmp_path / 'pairs', tmp_path / 'runs'
    names = [f'zq{i:03d}xr.png' for i in range(10)]
    (data / 'train' / 'imgs').mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, n in enumerate(names):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3) if i % 2 else (40, 40), dtype=np.uint8)).save(data / 'train' / 'imgs' / n)
    (data / 'train' / 'img_text_pair.json').write_text(json.dumps(
        [{'img': n, 'caption': f'Finding number {i}.' + (' Seen by Dr Vantrebel.' if i == 3 else '')} for i, n in enumerate(names)]))
    pretrain(dataset='pairs_folder', data_root=str(data), max_steps=2, batch_size=4, image_size=32, zero_shot=False,
             output_dir=str(out))
    files = [p for p in out.rglob('*') if p.is_file() and 'checkpoints' not in p.parts and 'skipped' not in p.name]
    assert any(p.name == 'manifest.json' for p in files) and any(p.suffix == '.csv' for p in files)
    stems = [n[:-4] for n in names]
    leaks = {str(p.relative_to(out)): [s for s in stems if s in p.read_bytes().decode('latin-1')] for p in files}
    assert {k: v for k, v in leaks.items() if v} == {}
    assert conftest.leaks(out, str(tmp_path.parents[1])) == {}   # no path of this machine in the run folder, params.yaml aside
    saved = [d for d in out.rglob('tokenizer.json')]
    assert saved and all('vantrebel' not in vocab_text(d.parent) and 'finding' in vocab_text(d.parent) for d in saved)
