"""One shape for every experiment (issue 12): each runnable notebook's papermill parameters are fields of its typed
config, read through `from_cell` right after the parameters cell (so a misspelt `-p` fails naming the valid names),
every config field is read somewhere in the package (no parameter that changes nothing), and every experiment has a
console subcommand."""
import ast, importlib, json, re
from dataclasses import fields
from pathlib import Path
import papermill as pm
import pytest

from conftest import ROOT
from medvlp.cli import COMMANDS

NOTEBOOKS = {  # notebook: (module, config class, the notebook's own extra parameters)
    '02_pretrain': ('medvlp.pretrain', 'PretrainConfig', ()),
    '03_prompt_tune': ('medvlp.prompt_tune', 'PromptTuneConfig', ('grid',)),
    '04_linear_probe': ('medvlp.probe', 'ProbeConfig', ()),
    '05_eval': ('medvlp.evaluate', 'EvalConfig', ()),
    '06_adaptor': ('medvlp.adaptor', 'AdaptorRunConfig', ()),
    '07_segment': ('medvlp.segment', 'SegmentConfig', ('ablation',)),
    '08_compare': ('medvlp.compare', 'CompareConfig', ()),
}


def _src(c) -> str: return c['source'] if isinstance(c['source'], str) else ''.join(c['source'])

def _cells(nb) -> tuple:
    "The notebook's cells and the index of its parameters cell."
    cells = json.loads((ROOT / 'nbs' / f'{nb}.ipynb').read_text())['cells']
    return cells, next(i for i, c in enumerate(cells) if 'parameters' in c.get('metadata', {}).get('tags', []))


def _config(nb):
    mod, name, _ = NOTEBOOKS[nb]
    return getattr(importlib.import_module(mod), name)


@pytest.mark.parametrize('nb', NOTEBOOKS)
def test_parameters_are_config_fields(nb):
    params = pm.inspect_notebook(str(ROOT / 'nbs' / f'{nb}.ipynb'))
    cells, i = _cells(nb)
    assigned = re.findall(r'^(\w+)\s*=', _src(cells[i]), re.M)
    assert list(params) == assigned, set(assigned) - set(params)   # papermill parses every line (a comment with ' = ' defeats it)
    cls, extra = _config(nb), NOTEBOOKS[nb][2]
    names = [f.name for f in fields(cls)]
    assert set(params) - set(extra) <= set(names), set(params) - set(extra) - set(names)
    assert set(extra) <= set(params), extra
    defaults = {k: ast.literal_eval(v['default']) for k, v in params.items() if k not in extra}
    cfg = cls.make(**defaults)    # every default is a valid value of its field
    for k, v in defaults.items(): assert getattr(cfg, k) == (list(v) if isinstance(v, tuple) else v), k


@pytest.mark.parametrize('nb', NOTEBOOKS)
def test_parameters_cell_is_read_through_the_config(nb):
    cells, i = _cells(nb)
    assert '_before = set(globals())' in _src(cells[i - 1]), _src(cells[i - 1])
    name = NOTEBOOKS[nb][1]
    after = ''.join(_src(c) for c in cells[i + 1:i + 3] if c['cell_type'] == 'code')
    assert re.search(rf'\b{name}\.from_cell\(', after), after


def _package_source_without(cls) -> str:
    "Every module's source, minus the lines of `cls` that declare its fields (its methods stay)."
    out = []
    for p in sorted((ROOT / 'medvlp').glob('*.py')):
        if p.name == '_modidx.py': continue
        s = p.read_text()
        m = re.search(rf'^class {cls.__name__}\(.*?(?=^\S)', s, flags=re.M | re.S)
        out.append(s[:m.start()] + re.sub(r'^    \w+: .*$', '', m.group(), flags=re.M) + s[m.end():] if m else s)
    return '\n'.join(out)


@pytest.mark.parametrize('nb', NOTEBOOKS)
def test_every_field_is_read(nb):
    "A field no code reads would be a parameter that changes nothing (as `-p batch_size 32` was on 03)."
    cls = _config(nb)
    src = _package_source_without(cls)
    unread = [f.name for f in fields(cls) if not re.search(rf"(\.{f.name}\b|\b{f.name}=|'{f.name}')", src)]
    assert not unread, unread


def test_every_experiment_has_a_subcommand():
    assert {(m, c) for m, c, _ in NOTEBOOKS.values()} <= {(m, c) for m, c, _, _ in COMMANDS.values()}


def _bound(src: str) -> set:
    "Names a cell's code binds at top level (imports, definitions, assignments); nbdev's `#|` lines are comments."
    import ast
    try: tree = ast.parse(src)
    except SyntaxError: return set()   # IPython magics
    out = set()
    for n in tree.body:
        if isinstance(n, (ast.Import, ast.ImportFrom)): out |= {(a.asname or a.name).split('.')[0] for a in n.names}
        elif isinstance(n, (ast.FunctionDef, ast.ClassDef)): out.add(n.name)
        elif isinstance(n, (ast.Assign, ast.AnnAssign)):
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                out |= {x.id for x in ast.walk(t) if isinstance(x, ast.Name)}
    return out


@pytest.mark.parametrize('nb', NOTEBOOKS)
def test_no_parameter_shadows_an_earlier_name(nb):
    """`from_cell` reads only the names the parameters cell adds, so a parameter named like an earlier import or
    definition (08's `prompt_tune` parameter and function were one such pair) would be dropped without a word."""
    cells, i = _cells(nb)
    earlier = set().union(*(_bound(_src(c)) for c in cells[:i] if c['cell_type'] == 'code'))
    params = set(re.findall(r'^(\w+)\s*=', _src(cells[i]), re.M))
    assert not params & earlier, params & earlier
