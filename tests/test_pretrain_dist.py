"A 2-process CPU run (gloo) through the console entry point matches the 1-process run with the same global batch."
import json, subprocess, sys
import numpy as np
import pandas as pd
import yaml
from conftest import tiny_params, cli_args, env

# Towers without batch norm or dropout: their outputs do not depend on how the global batch is split.
NO_BATCH_STATS = dict(image_tower='tiny-vit', text_config=dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


def run(n, out, synth_root, **kw):
    out.mkdir(parents=True, exist_ok=True)
    (out / 'recipe.yaml').write_text(yaml.safe_dump(NO_BATCH_STATS))
    p = tiny_params(synth_root, out, num_processes=n, max_steps=6, **kw)
    if n == 1:   # the reference: one process, this one (what `medvlp pretrain` calls)
        from medvlp.pretrain import PretrainConfig, pretrain
        pretrain(PretrainConfig.load(out / 'recipe.yaml', **p))
        return pd.read_csv(out / 'metrics.csv')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(n),
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


def test_two_sharded_processes_match_one_and_resume(tmp_path, synth_root):
    "FSDP2 on two CPU processes: the same losses as one process; its sharded checkpoint resumes exactly; the saved model is whole."
    import torch
    from medvlp.models import DualEncoder
    # local_loss: each process's loss covers its own rows, so the whole (unsharded) logit scale's gradient differs
    # between processes until it is averaged
    one = run(1, tmp_path / 'one', synth_root, ckpt_every=2, local_loss=True)
    two = run(2, tmp_path / 'fsdp', synth_root, ckpt_every=2, local_loss=True, fsdp=True)
    np.testing.assert_allclose(two.loss.values, one.loss.values, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(two.grad_norm.values, one.grad_norm.values, rtol=1e-4)  # gathered over the shards
    ck = tmp_path / 'fsdp' / 'checkpoints' / 'step_000004'
    assert 'logit_scale' in json.loads((ck / 'trainer_state.json').read_text())['optimizer']['state']  # FSDP's state, by name
    (tmp_path / 'fsdp' / 'metrics.json').unlink()
    again = run(2, tmp_path / 'fsdp', synth_root, ckpt_every=2, local_loss=True, fsdp=True)  # resumes from step 4's sharded checkpoint
    np.testing.assert_allclose(again.loss.values, two.loss.values, rtol=0, atol=1e-6)
    a, b = (DualEncoder.from_pretrained(tmp_path / d / 'model').state_dict() for d in ('one', 'fsdp'))  # whole tensors, one process
    assert {k: v.shape for k, v in b.items()} == {k: v.shape for k, v in a.items()}
    # Adam turns rounding noise in a near-zero gradient (attention key biases have none) into steps of up to lr (1e-3):
    # 6 steps move such a weight at most 6e-3 apart; the others agree far closer
    assert max((b[k] - a[k]).abs().max().item() for k in a) < 6e-3


def test_a_refused_folder_stops_every_process(tmp_path, synth_root):
    "Two processes into another command's folder: the main process refuses it, and the other stops with its reason instead of waiting."
    out = tmp_path / 'taken'
    out.mkdir()
    (out / 'run.json').write_text(json.dumps(dict(command='eval')))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m', 'medvlp.cli', 'pretrain']
    r = subprocess.run(cmd + cli_args(tiny_params(synth_root, out, num_processes=2, max_steps=2)), capture_output=True, text=True,
                       env=env(), timeout=180)
    assert r.returncode != 0
    assert r.stderr.count("holds a 'eval' run (run.json)") == 2, r.stderr[-3000:]   # the main's refusal, and the other's copy of it
    assert sorted(p.name for p in out.iterdir() if p.name[0] != '.') == ['run.json']
