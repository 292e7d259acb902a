"""A run on data that is not SynthCXR, as a user starts it: the skip list and row counts land in the run folder, bad
parameters leave nothing behind, and papermill run from outside the checkout exits 0 and writes only its run folder."""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd
import yaml
from PIL import Image
from conftest import ROOT, env, cli_args

TINY = dict(max_steps=3, batch_size=8, image_size=32, warmup_steps=1, log_every=1, emb_dim=32)


def write_csv_dataset(root, n=40):
    "A CSV of colour and grey JPEG/PNG images, reports, a patient column with stray spaces, and one truncated JPEG."
    (root / 'img').mkdir(parents=True)
    rng, rows = np.random.default_rng(0), []
    for i in range(n):
        a = rng.integers(0, 255, (40, 48, 3) if i % 2 else (40, 48), dtype=np.uint8)
        f = f'img/{i:03d}.' + ('jpg' if i % 3 else 'png')
        Image.fromarray(a).save(root / f)
        rows.append(dict(path=f, report=f'{"Left" if i % 2 else "Right"} lower lobe opacity, grade {i % 5}.', patient=f' P{i // 2:03d} '))
    bad = root / 'img' / '005.jpg'; b = bad.read_bytes(); bad.write_bytes(b[:len(b) // 2])
    pd.DataFrame(rows).to_csv(root / 'studies.csv', index=False)
    return root


def write_pairs_folder(root, n=24):
    "The CLIP fine-tuning layout: train/img_text_pair.json + train/imgs/, colour PNGs."
    d = root / 'train' / 'imgs'; d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n): Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(d / f'cell_{i:02d}.png')
    pairs = [dict(img=f'cell_{i:02d}.png', caption=f'Cluster of {"atypical" if i % 2 else "benign"} cells, sample {i % 4}.') for i in range(n)]
    (root / 'train' / 'img_text_pair.json').write_text(json.dumps(pairs))
    return root


def medvlp(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'medvlp.cli', 'pretrain', *args], capture_output=True, text=True,
                          env=env(), timeout=600, cwd=cwd)


def test_skipped_rows_and_counts_in_the_run_folder(tmp_path):
    data, out = write_csv_dataset(tmp_path / 'data'), tmp_path / 'run'
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_text(yaml.safe_dump(dict(dataset='csv', data_root=str(data / 'studies.csv'), output_dir=str(out),
                                          data_options=dict(image='path', text='report', patient='patient', on_bad='skip'), **TINY)))
    r = medvlp('-f', str(recipe))
    assert r.returncode == 0, r.stderr[-3000:]
    sk = pd.read_csv(out / 'skipped.csv')
    assert sk.row.tolist() == [7] and sk.path.iloc[0].endswith('005.jpg') and sk.reason.iloc[0], sk  # CSV line 7 = item 5
    man = (out / 'manifest.json').read_text()
    rows = json.loads(man)['data']['rows']
    assert rows['rows_in'] == 40 and rows['skipped'] == 1 and rows['used'] > 20
    assert rows['rows_in'] == rows['used'] + rows['skipped'] + rows['held_out']
    assert '.jpg' not in man and '.png' not in man  # no image path in the manifest


def test_bad_parameters_leave_nothing_behind(tmp_path, capsys):
    "The console's `main`, in this process (the script's exit status is `test_cli`'s): each bad parameter fails by name."
    from medvlp.cli import main
    data = write_pairs_folder(tmp_path / 'pairs')
    for p, msg in [(['-p', 'lr', '0'], 'lr=0.0: expected > 0'), (['-p', 'data_pct', '1.5'], 'data_pct=1.5'),
                   (['-p', 'epochs', '0'], 'no step'), (['-p', 'keep_ckpts', '0'], 'keep_ckpts=0'),
                   (['-p', 'batch_size', '64'], 'smaller than batch_size=64')]:
        out = tmp_path / 'out'
        rc = main(['pretrain', '-p', 'dataset', 'pairs_folder', '-p', 'data_root', str(data), '-p', 'output_dir', str(out), *p])
        err = capsys.readouterr().err
        assert rc == 1 and msg in err, (p, err[-2000:])
        assert not out.exists(), p


def test_papermill_outside_the_checkout(tmp_path):
    """The README's main job on the user's own pairs folder, run from another folder: exit 0, only its run folder written
    (and in the cache, the training images decoded once: nothing else, no SynthCXR, no model)."""
    data, work, cache = write_pairs_folder(tmp_path / 'pairs'), tmp_path / 'work', tmp_path / 'cache'
    work.mkdir()
    before = sorted(os.listdir(ROOT / 'outputs' / 'runs')) if (ROOT / 'outputs' / 'runs').exists() else []
    args = ['-p', 'dataset', 'pairs_folder', '-p', 'data_root', str(data), '-p', 'run_name', 'mine']
    for k, v in TINY.items(): args += ['-p', k, str(v)]
    r = subprocess.run([sys.executable, '-m', 'papermill', str(ROOT / 'nbs' / '02_pretrain.ipynb'), 'out.ipynb', *args],
                       capture_output=True, text=True, cwd=work, env=dict(env(), MEDVLP_CACHE=str(cache)), timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert sorted(os.listdir(work)) == ['out.ipynb', 'outputs']
    run = work / 'outputs' / 'runs' / 'mine'
    assert json.loads((run / 'metrics.json').read_text())['steps'] == 3 and (run / 'model' / 'config.json').exists()
    assert sorted(os.listdir(work / 'outputs' / 'runs')) == ['mine']
    assert (sorted(os.listdir(ROOT / 'outputs' / 'runs')) if (ROOT / 'outputs' / 'runs').exists() else []) == before
    assert {p.relative_to(cache).parts[0] for p in cache.rglob('*')} == {'arrays'}, sorted(cache.rglob('*'))[:10]


def test_a_name_in_one_patients_reports_stays_out_of_the_run_folder(tmp_path):
    "Six readable reports of one training patient name him and his MRN: the trained tokenizer keeps neither, nor does any file of the run."
    import medvlp.pretrain as P
    data = write_csv_dataset(tmp_path / 'data')
    t = pd.read_csv(data / 'studies.csv')
    t.loc[:6, 'report'] = 'Mr Vexmoor, MRN 8841273: ' + t.loc[:6, 'report']; t.loc[:6, 'patient'] = 'P901'  # in train
    t.to_csv(data / 'studies.csv', index=False)
    out = tmp_path / 'run'
    P.pretrain(P.PretrainConfig.make(dataset='csv', data_root=str(data / 'studies.csv'), output_dir=str(out), zero_shot=False,
                                     data_options=dict(image='path', text='report', patient='patient', on_bad='skip'), **TINY))
    assert (out / 'model' / 'tokenizer').is_dir()
    found = [f for f in out.rglob('*') if f.is_file() and any(m in f.read_bytes().lower() for m in (b'vexmoor', b'8841273'))]
    assert found == [], found
