"A 2-process CPU run (gloo) through the console entry point matches the 1-process run with the same global batch."
import subprocess, sys
import numpy as np
import pandas as pd
import yaml
from conftest import tiny_params, cli_args, env

# Towers without batch norm or dropout: their outputs do not depend on how the global batch is split.
NO_BATCH_STATS = dict(image_tower='tiny-vit', text_config=dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


def run(n, out, synth_root):
    out.mkdir(parents=True)
    (out / 'recipe.yaml').write_text(yaml.safe_dump(NO_BATCH_STATS))
    p = tiny_params(synth_root, out, num_processes=n, max_steps=6)
    if n == 1: cmd = [sys.executable, '-m', 'medvlp.cli', 'pretrain']
    else: cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(n),
                 '-m', 'medvlp.cli', 'pretrain']
    r = subprocess.run(cmd + ['-f', str(out / 'recipe.yaml')] + cli_args(p), capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return pd.read_csv(out / 'metrics.csv')


def test_two_processes_match_one(tmp_path, synth_root):
    one = run(1, tmp_path / 'one', synth_root)
    two = run(2, tmp_path / 'two', synth_root)
    assert len(one) == len(two) == 6
    np.testing.assert_allclose(two.loss.values, one.loss.values, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(two.lr.values, one.lr.values, rtol=1e-6)
    assert one.loss.iloc[0] != one.loss.iloc[-1]
    assert (tmp_path / 'two' / 'checkpoints' / 'step_000004' / 'rng_1.safetensors').exists()  # every rank's RNG saved
