"Kill a run after a checkpoint, resume it: it ends exactly where an uninterrupted run ends; NaN stops a run cleanly."
import subprocess, sys, time, json
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_params, cli_args, env


def cmd(p): return [sys.executable, '-m', 'medvlp.cli', 'pretrain'] + cli_args(p)


def test_resume_after_kill(tmp_path, synth_root):
    ref = tiny_params(synth_root, tmp_path / 'ref', max_steps=12, zero_shot=True)
    r = subprocess.run(cmd(ref), capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]

    p = dict(ref, output_dir=str(tmp_path / 'killed'))
    proc = subprocess.Popen(cmd(p), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    ck = tmp_path / 'killed' / 'checkpoints' / 'step_000004'
    t0 = time.time()
    while not ck.exists() and proc.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
    proc.kill(); proc.wait()
    assert ck.exists(), 'no checkpoint before the run ended'
    assert not (tmp_path / 'killed' / 'metrics.json').exists(), 'the run finished before it was killed'

    r = subprocess.run(cmd(p), capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'resumed from' in r.stdout + r.stderr
    a, b = pd.read_csv(tmp_path / 'ref' / 'metrics.csv'), pd.read_csv(tmp_path / 'killed' / 'metrics.csv')
    assert a.step.tolist() == b.step.tolist() == list(range(1, 13))
    np.testing.assert_allclose(b.loss.values, a.loss.values, rtol=0, atol=1e-6)
    ma, mb = (json.loads((tmp_path / d / 'metrics.json').read_text()) for d in ('ref', 'killed'))
    assert ma['final_loss'] == pytest.approx(mb['final_loss'], abs=1e-6)
    assert ma['zero_shot_5x200_acc'] == mb['zero_shot_5x200_acc']


def test_nan_loss_stops_and_keeps_checkpoint(tmp_path, synth_root, monkeypatch):
    import torch
    import medvlp.pretrain as P
    real = P.compute_loss
    calls = {'n': 0}
    def poisoned(model, b, cfg):
        calls['n'] += 1
        out = real(model, b, cfg)
        if calls['n'] >= 6: out['loss'] = out['loss'] * float('nan')
        return out
    monkeypatch.setattr(P, 'compute_loss', poisoned)
    with pytest.raises(FloatingPointError, match='at step 6.*last good checkpoint.*step_000004'):
        P.pretrain(P.PretrainConfig.make(**tiny_params(synth_root, tmp_path / 'nan')))
    assert (tmp_path / 'nan' / 'checkpoints' / 'step_000004' / 'model.safetensors').exists()
