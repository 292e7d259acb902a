"""Two CPU processes (gloo) against one: the gathered losses of `medvlp.losses` give the loss and gradients of the
concatenated batch, and match open_clip's `ClipLoss` / `SigLipLoss` run with the same rank and world size.

DDP averages gradients over ranks, so the gradient a rank contributes for its own features is `grad / WORLD` and
for a replicated scalar (logit scale, bias) the mean over ranks. With `gather_with_grad=True` (either
`local_loss`) that equals the one-process gradient exactly; with `gather_with_grad=False, local_loss=False` each
rank's gradient is the one-process gradient of its slice, i.e. 1/WORLD of the exact one after averaging (as in
open_clip). Run: `python -m pytest tests/test_dist_losses.py -q`.
"""
import sys, time
from pathlib import Path

import pytest
from conftest import free_port
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
from medvlp import losses as L  # noqa: E402

WORLD, N, D = 2, 4, 8  # ranks, rows per rank, embedding width
FLAGS = [(False, True), (True, True), (False, False)]  # (local_loss, gather_with_grad) with a one-process equivalent

def _data():
    "The global batch, the same on every process (float64 so comparisons can be tight)."
    g = torch.Generator().manual_seed(0)
    emb = lambda: F.normalize(torch.randn(WORLD * N, D, generator=g, dtype=torch.float64), dim=-1)
    d = dict(img=emb(), txt=emb(), img2=emb(), txt2=emb(),
             z1=torch.randn(WORLD * N, D, generator=g, dtype=torch.float64),
             z2=torch.randn(WORLD * N, D, generator=g, dtype=torch.float64),
             li=torch.randint(-1, 2, (WORLD * N, 5), generator=g).double(),
             lt=torch.randint(-1, 2, (WORLD * N, 5), generator=g).double())
    d['scale'], d['bias'] = torch.tensor(7.0, dtype=torch.float64), torch.tensor(-2.0, dtype=torch.float64)
    return d

# name -> (loss of the inputs dict and the flags, names of the inputs that get gradients, flag pairs to run)
CASES = {
    'clip': (lambda d, kw: L.clip_loss(d['img'], d['txt'], d['scale'], **kw), ['img', 'txt', 'scale'], FLAGS),
    'simclr': (lambda d, kw: L.simclr_loss(d['z1'], d['z2'], 0.2, **kw), ['z1', 'z2'], FLAGS),
    'cxr_clip': (lambda d, kw: L.cxr_clip_loss(d['img'], d['img2'], d['txt'], d['txt2'], d['scale'], **kw)['loss'],
                 ['img', 'img2', 'txt', 'txt2', 'scale'], FLAGS),
    'medclip': (lambda d, kw: L.medclip_loss(d['img'], d['txt'], d['li'], d['lt'], d['scale'], **kw),
                ['img', 'txt', 'scale'], FLAGS),
    'adaptor': (lambda d, kw: L.adaptor_loss(d['img'], d['txt'], d['scale'], i2t_weight=0.3, **kw),
                ['img', 'txt', 'scale'], FLAGS),
    'siglip': (lambda d, kw: L.siglip_loss(d['img'], d['txt'], d['scale'], d['bias']),
               ['img', 'txt', 'scale', 'bias'], [(True, True)]),
}

def _run(fn, keys, data, kw, rank=None):
    "Loss and gradients of `fn` on the whole batch (rank None) or on `rank`'s slice of it."
    sl = slice(None) if rank is None else slice(rank * N, (rank + 1) * N)
    d = {k: (v[sl] if v.ndim else v).clone().requires_grad_(k in keys) for k, v in data.items()}
    loss = fn(d, kw); loss.backward()
    return loss.detach(), {k: d[k].grad for k in keys}

def _worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=WORLD)
    try:
        data, res = _data(), {}
        for name, (fn, keys, flags) in CASES.items():
            for local, wgrad in flags:
                res[name, local, wgrad] = _run(fn, keys, data, dict(local_loss=local, gather_with_grad=wgrad), rank)
        # the local-loss-without-gradient combination has no one-process equivalent: only compared with open_clip
        res['clip', True, False] = _run(CASES['clip'][0], CASES['clip'][1], data,
                                        dict(local_loss=True, gather_with_grad=False), rank)
        try: import open_clip
        except ImportError: open_clip = None
        if open_clip is not None:
            for local, wgrad in FLAGS + [(True, False)]:
                ref = open_clip.loss.ClipLoss(local_loss=local, gather_with_grad=wgrad, rank=rank, world_size=WORLD)
                res['open_clip', local, wgrad] = _run(lambda d, kw: ref(d['img'], d['txt'], d['scale']),
                                                      ['img', 'txt', 'scale'], data, {}, rank)
            for impl in ('bidir', 'gather'):
                ref = open_clip.loss.SigLipLoss(rank=rank, world_size=WORLD, dist_impl=impl)
                res['open_siglip', impl] = _run(lambda d, kw: ref(d['img'], d['txt'], d['scale'], d['bias']),
                                                ['img', 'txt', 'scale', 'bias'], data, {}, rank)
        torch.save(res, Path(out) / f'rank{rank}.pt')
    finally:
        dist.destroy_process_group()

@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    "Per-rank results of the 2-process run: a list (by rank) of {case key: (loss, grads)}."
    out = tmp_path_factory.mktemp('dist')
    ctx = mp.spawn(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=False)
    deadline = time.time() + 120
    while not ctx.join(timeout=2):
        if time.time() > deadline:
            for p in ctx.processes: p.kill()
            pytest.fail('the 2-process gloo run did not finish within 120 s')
    return [torch.load(out / f'rank{r}.pt', weights_only=False) for r in range(WORLD)]

def _close(a, b, what, tol=1e-10):
    torch.testing.assert_close(a, b, atol=tol, rtol=0, msg=lambda m: f'{what}: {m}')

@pytest.mark.parametrize('name,local,wgrad', [(n, l, w) for n, (_, _, fl) in CASES.items() for l, w in fl])
def test_matches_one_process(ranks, name, local, wgrad):
    fn, keys, _ = CASES[name]
    loss1, grads1 = _run(fn, keys, _data(), {})  # one process, the concatenated batch
    got = [r[name, local, wgrad] for r in ranks]
    _close(torch.stack([l for l, _ in got]).mean(), loss1, f'{name} mean of the ranks\' losses')
    for k in keys:
        if grads1[k].ndim == 0:  # replicated scalar: DDP averages the ranks' gradients
            _close(torch.stack([g[k] for _, g in got]).mean(), grads1[k], f'{name} d/d{k}')
        else:  # each rank's slice; DDP divides by WORLD
            per_rank = torch.cat([g[k] for _, g in got]) / WORLD
            _close(per_rank, grads1[k] / (1 if wgrad else WORLD), f'{name} d/d{k}')

@pytest.mark.parametrize('local,wgrad', FLAGS + [(True, False)])
def test_clip_matches_open_clip(ranks, local, wgrad):
    if ('open_clip', local, wgrad) not in ranks[0]: pytest.skip('open_clip_torch is not installed (a dev dependency)')
    for rank, r in enumerate(ranks):
        (l, g), (lr, gr) = r['clip', local, wgrad], r['open_clip', local, wgrad]
        _close(l, lr, f'rank {rank} loss', 1e-6)
        for k in g: _close(g[k], gr[k], f'rank {rank} d/d{k}', 1e-6)

@pytest.mark.parametrize('impl', ['bidir', 'gather'])
def test_siglip_matches_open_clip(ranks, impl):
    if ('open_siglip', impl) not in ranks[0]: pytest.skip('open_clip_torch is not installed (a dev dependency)')
    for rank, r in enumerate(ranks):
        (l, g), (lr, gr) = r['siglip', True, True], r['open_siglip', impl]
        _close(l, lr, f'rank {rank} loss', 1e-6)
        for k in g: _close(g[k], gr[k], f'rank {rank} d/d{k}', 1e-6)
