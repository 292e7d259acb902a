"Kill a run after a checkpoint, resume it: it ends exactly where an uninterrupted run ends; NaN stops a run cleanly."
import subprocess, sys, time, json
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_params, cli_args, env


def cmd(p): return [sys.executable, '-m', 'medvlp.cli', 'pretrain'] + cli_args(p)


def test_resume_after_kill(tmp_path, synth_root, capfd):
    "A run killed (SIGKILL, its own process) after a checkpoint resumes to exactly the uninterrupted run's end."
    import medvlp.pretrain as P
    ref = tiny_params(synth_root, tmp_path / 'ref', max_steps=12, zero_shot=True)
    P.pretrain(P.PretrainConfig.make(**ref))                      # uninterrupted, in this process

    p = dict(ref, output_dir=str(tmp_path / 'killed'))
    proc = subprocess.Popen(cmd(p), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    ck = tmp_path / 'killed' / 'checkpoints' / 'step_000004'
    t0 = time.time()
    while not ck.exists() and proc.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
    proc.kill(); proc.wait()
    assert ck.exists(), 'no checkpoint before the run ended'
    assert not (tmp_path / 'killed' / 'metrics.json').exists(), 'the run finished before it was killed'

    capfd.readouterr()
    P.pretrain(P.PretrainConfig.make(**p))                        # the resume, in this process
    assert 'resumed from' in ''.join(capfd.readouterr())
    a, b = pd.read_csv(tmp_path / 'ref' / 'metrics.csv'), pd.read_csv(tmp_path / 'killed' / 'metrics.csv')
    assert a.step.tolist() == b.step.tolist() == list(range(1, 13))
    np.testing.assert_allclose(b.loss.values, a.loss.values, rtol=0, atol=1e-6)
    ma, mb = (json.loads((tmp_path / d / 'metrics.json').read_text()) for d in ('ref', 'killed'))
    assert ma['final_loss'] == pytest.approx(mb['final_loss'], abs=1e-6)
    assert ma['zero_shot_5x200_acc'] == mb['zero_shot_5x200_acc']


def test_nan_loss_stops_and_keeps_checkpoint(tmp_path, synth_root, monkeypatch):
    import medvlp.pretrain as P
    real = P.compute_loss
    calls = {'n': 0}
    def poisoned(model, b, cfg):
        calls['n'] += 1
        out = real(model, b, cfg)
        if calls['n'] >= 6: out['loss'] = out['loss'] * float('nan')
        return out
    monkeypatch.setattr(P, 'compute_loss', poisoned)
    with pytest.raises(FloatingPointError, match='loss is nan at step 6.*last good checkpoint.*step_000004'):
        P.pretrain(P.PretrainConfig.make(**tiny_params(synth_root, tmp_path / 'nan')))
    assert (tmp_path / 'nan' / 'checkpoints' / 'step_000004' / 'model.safetensors').exists()


def _all_finite(ckpt):
    import torch
    from safetensors.torch import load_file
    ts = {**load_file(str(ckpt / 'model.safetensors')), **load_file(str(ckpt / 'optimizer.safetensors'))}
    return len(ts) > 10 and all(torch.isfinite(t).all() for t in ts.values() if t.is_floating_point())


def test_nan_gradient_with_finite_loss_never_reaches_a_checkpoint(tmp_path, synth_root, monkeypatch):
    "A finite loss whose gradient is NaN at a checkpoint step: the run stops there, and the named checkpoint is finite."
    import torch
    import medvlp.pretrain as P
    class NanGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x): return x.clone()
        @staticmethod
        def backward(ctx, g): return g * float('nan')
    real, calls = P.compute_loss, {'n': 0}
    def poisoned(model, b, cfg):
        calls['n'] += 1
        out = real(model, b, cfg)
        if calls['n'] == 8: out['loss'] = NanGrad.apply(out['loss'])  # step 8, when a checkpoint is due
        return out
    monkeypatch.setattr(P, 'compute_loss', poisoned)
    with pytest.raises(FloatingPointError, match=r'gradient norm is nan at step 8.*last good checkpoint is \S*step_000004$'):
        P.pretrain(P.PretrainConfig.make(**tiny_params(synth_root, tmp_path / 'g', max_steps=12)))
    cks = sorted(p.name for p in (tmp_path / 'g' / 'checkpoints').iterdir())
    assert cks == ['step_000004'], cks
    assert _all_finite(tmp_path / 'g' / 'checkpoints' / 'step_000004')


def test_non_finite_final_model_is_not_saved(tmp_path, synth_root):
    "lr=inf with one step: the loss and gradient are finite, the updated weights are not; the run fails and writes no model/."
    import medvlp.pretrain as P
    with pytest.raises(FloatingPointError, match=r'non-finite weights \(\d+ tensors.* at step 1: run stopped; the last good checkpoint is none'):
        P.pretrain(P.PretrainConfig.make(**tiny_params(synth_root, tmp_path / 'r', max_steps=1, warmup_steps=0, lr=float('inf'))))
    assert not (tmp_path / 'r' / 'model').exists() and not (tmp_path / 'r' / 'metrics.json').exists()


def test_eval_refuses_a_non_finite_model(tmp_path, synth_root):
    "A model folder with a NaN weight: evaluate fails naming it, before any metric or run folder is written."
    import torch
    from medvlp.models import create_model, DEFAULT_CORPUS
    from medvlp.evaluate import evaluate
    m = create_model('tiny-resnet', 'tiny-bert', texts=DEFAULT_CORPUS, emb_dim=16)
    with torch.no_grad(): m.text_proj.weight[0, 0] = float('nan')
    m.save_pretrained(tmp_path / 'model')
    with pytest.raises(FloatingPointError, match=r'model: 1 weight tensors are not finite.*text_proj'):
        evaluate(model_dir=str(tmp_path / 'model'), data_root=str(synth_root), output_dir=str(tmp_path / 'eval'))
    assert not (tmp_path / 'eval').exists()


def test_max_grad_norm_clips(tmp_path, synth_root):
    import medvlp.pretrain as P
    free = P.pretrain(P.PretrainConfig.make(**tiny_params(synth_root, tmp_path / 'free', max_steps=4)))
    clip = P.pretrain(P.PretrainConfig.make(**tiny_params(synth_root, tmp_path / 'clip', max_steps=4, max_grad_norm=0.01)))
    assert free.history.grad_norm.min() > 0.01  # the norm recorded is the one before clipping
    assert free.history.grad_norm.iloc[0] == clip.history.grad_norm.iloc[0]  # same first step
    assert (free.history.loss.iloc[2:] != clip.history.loss.iloc[2:]).all()  # clipped updates differ (step 1 has lr 0)


def test_a_checkpoint_is_what_it_says(tmp_path, synth_root):
    "A linked file in a checkpoint is refused by name; a metrics.csv cut short comes back whole from the checkpoint."
    import shutil
    import medvlp.pretrain as P
    cfg = P.PretrainConfig.make(**tiny_params(synth_root, tmp_path / 'run', max_steps=4, ckpt_every=2))
    whole = P.pretrain(cfg).history
    ck = tmp_path / 'run' / 'checkpoints' / 'step_000002'
    w = ck / 'model.safetensors'; shutil.move(w, tmp_path / 'elsewhere.safetensors'); w.symlink_to(tmp_path / 'elsewhere.safetensors')
    with pytest.raises(ValueError, match=r"step_000002: unexpected \['model.safetensors'\].*no links.*refusing to resume"):
        P.pretrain(cfg)
    w.unlink(); shutil.move(tmp_path / 'elsewhere.safetensors', w)
    m = tmp_path / 'run' / 'metrics.csv'; m.write_text(''.join(m.read_text().splitlines(True)[:2]))  # header and step 1
    again = P.pretrain(cfg).history
    assert again.step.tolist() == whole.step.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(again.loss.values, whole.loss.values, rtol=0, atol=1e-6)
    assert pd.read_csv(m).step.tolist() == [1, 2, 3, 4]


PAYLOAD = "import os, pickle\nclass P:\n    def __reduce__(self): return (os.system, ('touch {marker}',))\n"


def test_resume_never_unpickles(tmp_path, synth_root):
    "A pickle planted in a checkpoint (a new file, or in place of a real one) is refused by name and never run."
    import pickle, shutil, types
    import medvlp.pretrain as P
    cfg = P.PretrainConfig.make(**tiny_params(synth_root, tmp_path / 'run', max_steps=4, ckpt_every=2))
    P.pretrain(cfg)
    ck, marker = tmp_path / 'run' / 'checkpoints' / 'step_000002', tmp_path / 'pwned'
    assert sorted(f.name for f in ck.iterdir()) == ['model.safetensors', 'optimizer.safetensors', 'rng_0.json',
                                                     'rng_0.safetensors', 'trainer_state.json']
    shutil.copy(ck / 'optimizer.safetensors', tmp_path / 'optimizer.safetensors')
    mod = types.ModuleType('payload'); exec(PAYLOAD.format(marker=marker), mod.__dict__)
    for where in ('custom_checkpoint_0.pkl', 'optimizer.safetensors'):
        (ck / where).write_bytes(pickle.dumps(mod.P()))
        with pytest.raises(ValueError, match='refusing to resume') as e: P.pretrain(cfg)
        assert where in str(e.value), str(e.value)
        assert not marker.exists(), 'the planted pickle was executed'
        (ck / where).unlink(); shutil.copy(tmp_path / 'optimizer.safetensors', ck / 'optimizer.safetensors')
