"""The comparison (issue 16) on a user's data through parameters alone: `papermill nbs/08_compare.ipynb` on a CSV of
colour and grey images with a messy label column, two methods, two learning rates, two seeds and a tuned prompt for
each model; then `medvlp compare` with the same parameters reuses every run (no folder is trained again) and gives the
same table."""
import json, subprocess, sys
import pandas as pd
import yaml

from conftest import ROOT, env, leaks
from test_any_data import write_table, _options


def test_compare_on_a_csv_by_papermill_then_reused_by_the_cli(tmp_path):
    write_table(tmp_path)
    out = tmp_path / 'cmp'
    params = dict(methods=['clip', 'medclip'], seeds=[0, 1], lrs=[1e-3, 3e-3], max_steps=20, batch_size=12, image_size=32,
                  overrides=dict(emb_dim=32, warmup_steps=3, log_every=5), dataset='csv', data_root=str(tmp_path / 'meta.csv'),
                  data_options=_options(tmp_path), tasks=['multiclass', 'retrieval'], classes=['Pneumonia', 'COVID-19', 'Normal'],
                  probe_fractions=[1.0], tune_prompts=True, prompt_options=dict(n_ctx=4, init='', epochs=3), n_boot=200,
                  subgroups=['site'], output_dir=str(out))
    (tmp_path / 'p.yaml').write_text(yaml.safe_dump(params))
    r = subprocess.run([sys.executable, '-m', 'papermill', str(ROOT / 'nbs' / '08_compare.ipynb'), str(tmp_path / 'out.ipynb'),
                        '-f', str(tmp_path / 'p.yaml'), '--cwd', str(tmp_path)], capture_output=True, text=True, env=env())  # from anywhere
    assert r.returncode == 0, r.stderr[-4000:]
    t = pd.read_csv(out / 'results.csv')
    assert list(dict.fromkeys(t.method)) == ['clip', 'clip+prompt', 'medclip', 'medclip+prompt']
    base = {'multiclass AUROC', 'multiclass accuracy', 'retrieval R@1', 'retrieval R@5', 'retrieval R@10',
            'probe 100% AUROC', 'probe 100% accuracy'}
    assert set(t.metric) == base | {f'{m} worst site' for m in base}     # the table's site column: each metric's worst site
    worst = t.set_index(['method', 'metric']).value
    assert all(worst[(m, f'{k} worst site')] <= worst[(m, k)] + 1e-12 for m, k in worst.index
               if 'worst' not in k and 'AUROC' not in k)   # a mean's lowest group is at most the mean
    assert set(t[t.method.str.endswith('+prompt')].metric) == {'multiclass AUROC', 'multiclass accuracy',
                                                               'multiclass AUROC worst site', 'multiclass accuracy worst site'}
    assert set(t.bootstrap_unit) == {'patient'}
    assert ((t.ci_low <= t.value + 1e-12) & (t.value <= t.ci_high + 1e-12)).all() and (t.n_seeds == 2).all()
    runs = pd.read_csv(out / 'runs.csv')
    assert len(runs) == 6 and runs.chosen.sum() == 4          # 2 methods x (2 rates at seed 0 + seed 1 at the chosen rate)
    for m, d in runs[runs.seed == 0].groupby('method'):       # the chosen rate has the best validation retrieval
        assert sorted(d.lr) == [1e-3, 3e-3] and d.loc[d.valid_recall.idxmax(), 'chosen']
        assert runs[(runs.method == m) & (runs.seed == 1)].lr.item() == d[d.chosen].lr.item()
    for f in runs[runs.chosen].folder:                         # each chosen model has its tuned prompt, tuned with the run's seed
        pt = json.loads((out / f / 'prompt_tune' / 'manifest.json').read_text())
        assert (out / f / 'prompt_tune' / 'model' / 'prompt').is_dir() and pt['params']['n_ctx'] == 4
        assert pt['params']['seed'] == runs.set_index('folder').seed[f]
    man = json.loads((out / 'manifest.json').read_text())
    assert man['params']['dataset'] == 'csv' and man['recipes']['medclip']['label_temp'] == 0.1
    assert man['data']['multiclass']['n_studies'] == t[t.metric == 'multiclass accuracy'].n_images.iloc[0] > 0
    stamps = {f: (out / f / 'metrics.json').stat().st_mtime for f in runs.folder}
    from medvlp.cli import run
    again = run(['compare', '-f', str(tmp_path / 'p.yaml')])
    assert {f: (out / f / 'metrics.json').stat().st_mtime for f in again.runs.folder} == stamps
    pd.testing.assert_frame_equal(again.table.reset_index(drop=True), t, check_dtype=False)
    report = (out / 'report.md').read_text()
    assert '| clip |' in report and '## Paired difference from clip' in report and '[s1](runs/medclip-lr' in report
    assert (out / 'differences.png').stat().st_size > 1000
    assert leaks(out, str(tmp_path.parents[1])) == {}   # no path of this machine in any file of the comparison, params.yaml aside
