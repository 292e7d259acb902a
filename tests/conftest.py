import os, socket, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def synth_root(tmp_path_factory):
    "A small SynthCXR corpus shared by the tests of one session (the notebooks use the full default one)."
    from medvlp.synthcxr import generate_synthcxr
    return generate_synthcxr(root=tmp_path_factory.mktemp('synth') / 'synthcxr', n_studies=320, size=64, seed=0,
                             n_per_class=20, n_rsna=20, workers=2)


def tiny_params(synth_root, out, **kw):
    "Parameters of a tiny, quick pretraining run on the small corpus, written to `out`."
    p = dict(data_root=str(synth_root), output_dir=str(out), image_size=32, batch_size=16, max_steps=8,
             warmup_steps=2, log_every=1, ckpt_every=4, zero_shot=False, emb_dim=32)
    p.update(kw)
    return p


def cli_args(params):
    "`medvlp pretrain` arguments for `params`."
    args = []
    for k, v in params.items(): args += ['-p', k, str(v).lower() if isinstance(v, bool) else str(v)]
    return args


def env():
    "The environment of a subprocess run: one OpenMP thread per process, unbuffered output."
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')


def free_port() -> int:
    "A free local TCP port."
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def leaks(folder, *markers, skip=('params.yaml',)) -> dict:
    "{file: the `markers` (strings) it holds} for every file under `folder` but `skip`, binary files read as latin-1."
    found = {}
    for p in sorted(Path(folder).rglob('*')):
        if p.is_file() and p.name not in skip:
            text = p.read_bytes().decode('latin-1').lower()
            if hit := [m for m in markers if m.lower() in text]: found[str(p.relative_to(folder))] = hit
    return found
