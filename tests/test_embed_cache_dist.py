"Embedding cache under torchrun: 2 CPU processes (gloo) each embed a shard, rank 0 assembles; same values as 1 process."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
from conftest import env


def worker(img_dir, cache_root, out):
    "Embed the images of `img_dir` (pooled + tokens) and some texts; rank 0 saves what it read to `out`."
    import torch
    from medvlp.cache import embed_images, embed_texts
    from medvlp.data import image_transform
    from medvlp.models import build_image_tower, build_text_tower
    dist = int(os.environ.get('WORLD_SIZE', '1')) > 1
    if dist: torch.distributed.init_process_group('gloo')
    rank = torch.distributed.get_rank() if dist else 0
    paths = sorted(Path(img_dir).glob('*.png'))
    torch.manual_seed(0); tower = build_image_tower('tiny-vit', img_size=32)  # same weights in every process
    e = embed_images(tower, paths, image_transform(32, train=False), tokens=True, batch_size=4, root=cache_root)
    texts = [f'finding number {i} on the {"left" if i % 2 else "right"}' for i in range(11)]
    torch.manual_seed(0); txt = build_text_tower('tiny-bert', texts=texts)
    t = embed_texts(txt, texts, batch_size=4, root=cache_root)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out)/f'rank{rank}.json').write_text(json.dumps(dict(path=str(e.path), n=len(e), text_path=str(t.path))))
    if rank == 0:
        np.save(Path(out)/'pooled.npy', e.pooled); np.save(Path(out)/'tokens.npy', e.tokens)
        np.save(Path(out)/'text.npy', t.pooled)
        (Path(out)/'meta.json').write_text(json.dumps(dict(e.meta, grid=e.grid, ids=e.ids)))
    if dist: torch.distributed.destroy_process_group()


def run(n, img_dir, cache_root, out):
    if n == 1:   # the reference: one process, this one
        worker(img_dir, cache_root, out)
        return json.loads((Path(out)/'meta.json').read_text())
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(n), __file__,
           str(img_dir), str(cache_root), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=600, cwd=Path(__file__).parent)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads((Path(out)/'meta.json').read_text())


def test_two_processes_match_one(tmp_path):
    from PIL import Image
    img_dir = tmp_path/'imgs'; img_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(13):  # odd count: shards of 6 and 7 rows
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(img_dir/f'{i:02d}.png')
    one = run(1, img_dir, tmp_path/'cache1', tmp_path/'out1')
    two = run(2, img_dir, tmp_path/'cache2', tmp_path/'out2')
    assert one['world_size'] == 1 and two['world_size'] == 2
    assert one['key'] == two['key'] and one['ids'] == two['ids'] and len(two['ids']) == 13
    assert two['grid'] == [4, 4] and two['shapes']['tokens'] == [13, 16, 64]
    for k in ('pooled', 'tokens', 'text'):
        a, b = np.load(tmp_path/'out1'/f'{k}.npy'), np.load(tmp_path/'out2'/f'{k}.npy')
        assert a.shape == b.shape and np.abs(a).sum() > 0
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)  # other batch splits: equal up to float rounding
    r0, r1 = (json.loads((tmp_path/'out2'/f'rank{r}.json').read_text()) for r in (0, 1))
    assert r0 == r1 and r0['n'] == 13  # every process reads the one folder rank 0 assembled
    names = sorted(p.name for p in Path(r0['path']).iterdir())
    assert names == ['ids.json', 'meta.json', 'pooled.npy', 'tokens.npy'], names  # no part files left
    assert not list((tmp_path/'cache2').glob('.tmp-*'))
    again = run(2, img_dir, tmp_path/'cache2', tmp_path/'out3')  # reused, not recomputed
    assert again['created'] == two['created'] and again['wall_s'] == two['wall_s']


def test_more_processes_than_images(tmp_path):
    "One image, two processes: rank 0 embeds nothing, yet the folder records the token grid rank 1 saw."
    from PIL import Image
    img_dir = tmp_path/'imgs'; img_dir.mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(img_dir/'00.png')
    meta = run(2, img_dir, tmp_path/'cache', tmp_path/'out')
    assert meta['grid'] == [4, 4] and meta['shapes']['tokens'] == [1, 16, 64] and len(meta['ids']) == 1


if __name__ == '__main__': worker(*sys.argv[1:4])
