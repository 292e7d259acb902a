"""Every stage past pretraining on data that is not SynthCXR (issue 12): a pairs folder and a CSV with a categorical
label column and a row filter, both written here with colour and grey images. Pretrain on each, then evaluate (05 by
papermill parameters alone for the pairs folder) and prompt-tune (03) on the CSV."""
import json, os, subprocess, sys
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import ROOT, env, leaks
from medvlp.datasets import load_dataset
from medvlp.pretrain import pretrain

KINDS = {'left': ('left lung opacity.', 'opacity in the left lung.'), 'right': ('right lung opacity.', 'opacity in the right lung.'),
         'top': ('apical opacity.', 'opacity at the apex.')}
FINDING = {'left': 'Pneumonia', 'right': ' covid-19 ', 'top': 'normal'}   # messy categorical values, mapped below
NAME, MRN = 'Mr Vexmoor', '8841273'


def _image(kind, i, path):
    "A 40 px image, colour for odd i, with a bright region where `kind` says and noise elsewhere."
    rng = np.random.default_rng(i)
    a = rng.integers(0, 60, (40, 40, 3)).astype(np.uint8)
    sl = {'left': np.s_[:, :20], 'right': np.s_[:, 20:], 'top': np.s_[:20, :]}[kind]
    a[sl] = rng.integers(180, 255, a[sl].shape)
    Image.fromarray(a if i % 2 else a[..., 0]).save(path)


def _pretrain(tmp_path, **data):
    return pretrain(output_dir=str(tmp_path / 'run'), image_size=32, batch_size=12, max_steps=30, warmup_steps=3, lr=3e-3,
                    emb_dim=32, log_every=5, ckpt_every=100, zero_shot=False, **data)


@pytest.fixture(scope='module')
def pairs(tmp_path_factory):
    "A pairs folder: train (36) and valid (18) images with two phrasings per kind, so the 18 valid captions hold 6 texts."
    root = tmp_path_factory.mktemp('pairs')
    for split, n in (('train', 36), ('valid', 18)):
        (root / split / 'imgs').mkdir(parents=True)
        recs = []
        for i in range(n):
            kind = list(KINDS)[i % 3]
            _image(kind, i, root / split / 'imgs' / f'{split}{i}.png')
            recs.append(dict(img=f'{split}{i}.png', caption=KINDS[kind][(i // 3) % 2]))
        (root / split / 'img_text_pair.json').write_text(json.dumps(recs))
    return root


def test_eval_on_a_pairs_folder_by_papermill_parameters(pairs, tmp_path):
    res = _pretrain(tmp_path, dataset='pairs_folder', data_root=str(pairs))
    out = tmp_path / 'eval'
    args = ['-p', 'model_dir', str(res.model_dir), '-p', 'dataset', 'pairs_folder', '-p', 'data_root', str(pairs),
            '-p', 'split', 'valid', '-p', 'n_boot', '200', '-p', 'output_dir', str(out), '-y', 'tasks: [retrieval]\nks: [1, 10, 50]']
    r = subprocess.run([sys.executable, '-m', 'papermill', str(ROOT / 'nbs' / '05_eval.ipynb'), str(tmp_path / 'out.ipynb'), *args,
                        '--cwd', str(tmp_path)], capture_output=True, text=True, env=env())   # from a folder outside the checkout
    assert r.returncode == 0, r.stderr[-4000:]
    m = pd.read_csv(out / 'metrics.csv').set_index('metric')
    for k in ('image_to_text_R@1', 'image_to_text_R@10', 'image_to_text_R@50', 'text_to_image_R@1', 'image_to_text_mean_rank'):
        v = m.loc[k]
        assert v.ci_low <= v.value <= v.ci_high, (k, v)
    assert m.loc['image_to_text_R@10', 'value'] == 1.0   # 6 distinct captions: every image finds its own in the top 10
    man = json.loads((out / 'manifest.json').read_text())
    assert (man['data']['retrieval']['used'], man['data']['retrieval']['texts']) == (18, 6)
    assert man['tasks'][0] == dict(name='retrieval', kind='retrieval', dataset='pairs_folder', data_root=os.path.relpath(pairs, out),
                                   data_options={}, split='valid', classes=[])
    assert '6 distinct texts' in (out / 'metrics.md').read_text()
    card = (res.model_dir / 'README.md').read_text()   # the model card: written by pretraining, added to by the evaluation
    assert 'evaluation `eval`' in card and '- retrieval (retrieval, 18 studies of pairs_folder' in card, card
    assert str(pairs) not in card and str(tmp_path) not in card
    cb = json.loads((out / 'clip_benchmark_retrieval.json').read_text())
    assert cb['task'] == 'zeroshot_retrieval' and cb['metrics']['text_retrieval_recall@10'] == 1.0


def test_unknown_notebook_parameter_fails_naming_it(tmp_path):
    "Under papermill a misspelt parameter stops the run at the parameters, naming it and the valid names."
    # 03: the experiment notebook that reaches its parameters cell soonest (each notebook's is checked by
    # tests/test_notebook_params.py to be read through its config)
    r = subprocess.run([sys.executable, '-m', 'papermill', str(ROOT / 'nbs' / '03_prompt_tune.ipynb'), str(tmp_path / 'out.ipynb'),
                        '-p', 'no_such_param', '1', '--cwd', str(ROOT / 'nbs')], capture_output=True, text=True, env=env())
    assert r.returncode != 0
    assert "unknown parameter(s) ['no_such_param']; valid parameters: ['dataset', 'data_root'" in r.stderr + r.stdout


def write_table(root):
    "meta.csv under `root` with a categorical `finding` column (messy values), a `modality` filter and images in `root/images`."
    (root / 'images').mkdir()
    rows = []
    for i in range(72):
        kind = list(KINDS)[i % 3]
        _image(kind, i, root / 'images' / f'{i}.png')
        rows.append(dict(path=f'{i}.png', report=KINDS[kind][(i // 3) % 2], finding=FINDING[kind], patient=f'p{i // 2}',
                         modality='CT' if i % 12 == 11 else 'X-ray', sex='F' if i % 4 < 2 else 'M', site='AB'[i // 6 % 2]))
        if i in (6, 7): rows[-1]['report'] = f"{NAME}, MRN {MRN}: {rows[-1]['report']}"   # one patient's two reports name him
    pd.DataFrame(rows).to_csv(root / 'meta.csv', index=False)
    return root


@pytest.fixture(scope='module')
def table(tmp_path_factory):
    return write_table(tmp_path_factory.mktemp('table'))


def _options(root):
    return dict(image='path', text='report', patient='patient', image_root=str(root / 'images'), label_column='finding',
                label_map={'Pneumonia': 'Pneumonia', 'covid-19': 'COVID-19', 'normal': 'Normal'}, where={'modality': 'X-ray'})


def test_zero_shot_and_prompt_tuning_on_a_csv(table, tmp_path):
    from medvlp.evaluate import evaluate
    from medvlp.prompt_tune import prompt_tune
    data = dict(dataset='csv', data_root=str(table / 'meta.csv'), data_options=_options(table))
    res = _pretrain(tmp_path, **data)
    classes = ['Pneumonia', 'COVID-19', 'Normal']
    data_man = json.loads((tmp_path / 'run' / 'manifest.json').read_text())['data']   # the value -> class table is in the run folder
    assert data_man['rows']['filtered'] == 6 and data_man['rows']['rows_in'] == 72
    assert {(r['value'], r['class']) for r in data_man['label_table']} == {('Pneumonia', 'Pneumonia'), ('covid-19', 'COVID-19'), ('normal', 'Normal')}
    assert sum(data_man['splits'].values()) == 66
    r = evaluate(model_dir=res.model_dir, tasks=['multiclass', 'retrieval'], split='all', classes=classes, n_boot=100,
                 output_dir=str(tmp_path / 'eval'), **data)
    man = json.loads((tmp_path / 'eval' / 'manifest.json').read_text())
    assert man['data']['multiclass']['used'] == 66 and man['data']['multiclass']['dropped'] == 0   # 6 CT rows filtered out
    acc = r.tables['multiclass'].loc['accuracy']
    assert 0 <= acc.ci_low <= acc.value <= acc.ci_high <= 1
    sg = evaluate(model_dir=res.model_dir, tasks=['multiclass'], split='all', classes=classes, n_boot=100, compare=[],
                  subgroups=['sex', 'site'], output_dir=str(tmp_path / 'eval_sub'), embedding_map='none', **data)
    t = sg.tables['subgroups'].set_index(['attribute', 'group', 'metric'])
    assert t.loc[('sex', 'F', 'accuracy'), 'n'] + t.loc[('sex', 'M', 'accuracy'), 'n'] == 66   # the table's own columns
    assert tuple(t.loc[('site', 'gap: rest - worst', 'accuracy'), ['worst', 'chosen_on']]) in (('A', 'these data'), ('B', 'these data'))
    # on the test split the worst group is the validation split's lowest, not the test data's (which flatters the gap)
    v = evaluate(model_dir=res.model_dir, tasks=['multiclass'], split='test', classes=classes, n_boot=0, compare=[],
                 subgroups=['site'], output_dir=str(tmp_path / 'eval_sub_test'), embedding_map='none',
                 **{**data, 'data_options': {**data['data_options'], 'fracs': [0.4, 0.3, 0.3]}})   # both sites in valid
    gaps = v.tables['subgroups'].query("group == 'gap: rest - worst'")
    assert set(gaps.chosen_on) == {'validation'}, gaps
    assert 'chosen on validation' in (res.model_dir / 'README.md').read_text()
    assert json.loads((tmp_path / 'eval_sub' / 'manifest.json').read_text())['data']['multiclass']['bootstrap_unit'] == 'patient'
    with pytest.raises(ValueError, match=r"meta.csv: missing column\(s\) \['race'\]; the table has"):
        evaluate(model_dir=res.model_dir, tasks=['multiclass'], split='all', classes=classes, n_boot=0, subgroups=['race'],
                 output_dir=str(tmp_path / 'eval_bad'), **data)
    assert list(r.tables['confusion_multiclass'].index) == classes and r.tables['confusion_multiclass'].values.sum() == 66
    pt = prompt_tune(model_dir=res.model_dir, classes=classes, n_ctx=4, init='', epochs=3, n_boot=50, test_split='valid',
                     output_dir=str(tmp_path / 'pt'), progress=False, **data)
    n_train = len(load_dataset('csv', data['data_root'], 'train', **data['data_options']))
    assert pt.metrics['n_train'] == n_train and pt.metrics['test']['kind'] == 'multiclass' and pt.metrics['test']['split'] == 'valid'
    tab = pd.read_csv(tmp_path / 'pt' / 'zero_shot_multiclass.csv', index_col=[0, 1])
    assert tab.loc[('tuned', 'accuracy'), 'value'] == pt.metrics['tuned_accuracy']
    scored = evaluate(model_dir=pt.model_dir, tasks=['multiclass'], split='valid', classes=classes, prompts='tuned', compare=[],
                      n_boot=0, output_dir=str(tmp_path / 'eval_tuned'), embedding_map='none', **data)
    assert scored.tables['multiclass'].loc['accuracy', 'value'] == pytest.approx(pt.metrics['tuned_accuracy'], abs=1e-9)


def test_probe_and_adaptor_on_a_csv(table, tmp_path):
    "The linear probe (04) and the Adaptor (06) on the same CSV, through their configs, as their subcommands run them."
    from medvlp.probe import probe
    from medvlp.adaptor import run_adaptor
    data = dict(dataset='csv', data_root=str(table / 'meta.csv'), data_options=_options(table))
    classes = ['COVID-19', 'Normal', 'Pneumonia']
    res = _pretrain(tmp_path, **data)
    pr = probe(model_dir=str(res.model_dir), classes=classes, fractions=[0.5, 1.0], seeds=[0], test='test', fine_tune=False,
               n_boot=50, output_dir=str(tmp_path / 'probe'), **data)
    n_test = len(load_dataset('csv', data['data_root'], 'test', **data['data_options']))
    assert pr.results.attrs['n_test'] == n_test and pr.results.attrs['classes'] == classes
    auc = pr.results.xs(('linear_probe', 'auroc_macro'), level=('method', 'metric'))
    assert list(auc.index) == [0.5, 1.0] and ((auc.ci_low <= auc.value) & (auc.value <= auc.ci_high)).all()
    man = json.loads((tmp_path / 'probe' / 'manifest.json').read_text())
    assert man['data']['train']['rows']['filtered'] == 6 and man['params']['dataset'] == 'csv'
    ad = run_adaptor(model_dir=str(res.model_dir), classes=classes, epochs=2, batch_size=16, fractions=[1.0], seeds=[0],
                     n_boot=50, head_steps=20, cost=False, output_dir=str(tmp_path / 'adaptor'), **data)
    s = ad.summary
    assert set(s.method) == {'adaptor', 'clip', 'tower'} and (s.fraction == 1.0).all()
    assert (pd.read_csv(tmp_path / 'adaptor' / 'classification.csv').n_test == n_test).all()
    assert json.loads((tmp_path / 'adaptor' / 'manifest.json').read_text())['params']['data_options']['label_column'] == 'finding'


def test_every_stage_starts_from_a_transformers_clip_folder(table, synth_root, tmp_path):
    """model_dir takes a transformers CLIP folder (here `medvlp tiny-clip`'s, 3 channels at 32 px with CLIP's normalisation)
    in evaluation, prompt tuning, the probe, the Adaptor and segmentation, on colour and grey images."""
    import hashlib
    from medvlp.models import tiny_clip
    from medvlp.cache import image_input
    from medvlp.evaluate import evaluate
    from medvlp.prompt_tune import prompt_tune
    from medvlp.probe import probe
    from medvlp.adaptor import run_adaptor, load_towers
    from medvlp.segment import segment
    clip = str(tiny_clip(tmp_path / 'clip'))
    clip_input = dict(channels=3, mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711])
    data = dict(dataset='csv', data_root=str(table / 'meta.csv'), data_options=_options(table))
    classes = ['COVID-19', 'Normal', 'Pneumonia']
    r = evaluate(model_dir=clip, tasks=['multiclass', 'retrieval'], split='all', classes=classes, n_boot=50, output_dir=str(tmp_path / 'eval'),
                 embedding_map='none', **data)
    man = json.loads((tmp_path / 'eval' / 'manifest.json').read_text())
    assert man['model_sha256'] == hashlib.sha256((tmp_path / 'clip' / 'model.safetensors').read_bytes()).hexdigest()
    assert man['image_size'] == 32 and r.tables['confusion_multiclass'].values.sum() == 66
    pt = prompt_tune(model_dir=clip, classes=classes, n_ctx=2, init='', epochs=2, n_boot=20, test_split='valid',
                     output_dir=str(tmp_path / 'pt'), progress=False, **data)
    assert (pt.model_dir / 'prompt').is_dir() and (pt.model_dir / 'preprocessor_config.json').exists()   # the CLIP folder + prompt/
    scored = evaluate(model_dir=pt.model_dir, tasks=['multiclass'], split='valid', classes=classes, prompts='tuned', compare=[], n_boot=0,
                      output_dir=str(tmp_path / 'eval_tuned'), embedding_map='none', **data)
    assert scored.tables['multiclass'].loc['accuracy', 'value'] == pytest.approx(pt.metrics['tuned_accuracy'], abs=1e-9)
    pr = probe(model_dir=clip, classes=classes, fractions=[1.0], seeds=[0], test='test', fine_tune=True, ft_epochs=1, ft_min_steps=5, n_boot=20,
               output_dir=str(tmp_path / 'probe'), **data)
    assert set(pr.results.index.get_level_values('method')) == {'linear_probe', 'fine_tune'}
    image, text, specs = load_towers(model_dir=clip)
    assert image_input(image) == clip_input and specs['image_size'] == 32 and specs['image']['path'] == clip
    ad = run_adaptor(model_dir=clip, classes=classes, epochs=1, batch_size=16, fractions=[1.0], seeds=[0], n_boot=20, head_steps=10,
                     cost=False, output_dir=str(tmp_path / 'adaptor'), **data)
    assert set(ad.summary.method) == {'adaptor', 'clip', 'tower'}
    sg = segment(model_dir=clip, adaptor_dir='none', data_root=str(synth_root), fractions=[1.0], epochs=1, n_boot=20,
                 output_dir=str(tmp_path / 'seg'), progress=False)
    d = sg.dice.loc['segmenter']   # over ViT patch tokens of the CLIP tower (no class token), images in 3 channels
    assert sg.model.kind == 'tokens' and 0 <= d.ci_low <= d.dice <= d.ci_high <= 1 and d.n == 29
    # every run folder is shareable: no planted name or MRN, no path of this machine (params.yaml keeps them as given; the
    # Adaptor's and the head's files name the folders they reload their towers from relative to themselves)
    tmp, runs = str(tmp_path.parents[1]), ('eval', 'pt', 'eval_tuned', 'probe', 'adaptor', 'seg')
    assert NAME in (table / 'meta.csv').read_text() and str(table).startswith(tmp)
    found = {run: leaks(tmp_path / run, 'vexmoor', MRN) for run in runs}
    found |= {f'{run} (paths)': leaks(tmp_path / run, tmp) for run in runs}
    assert {k: v for k, v in found.items() if v} == {}
