"""The package's layering (issue 12): data -> runs/datasets/models/cache -> zero-shot -> pretraining -> evaluation
(prompt tuning, probe, evaluate; the real-size rehearsals) -> Adaptor/segmentation -> the command line. A module imports only modules of its
own or lower layers, at its top or inside a function, and there is no import cycle (a lazy import inside a
function closes a cycle as surely as one at the top). Issue 25's rules: no function over 60 lines, and no private name
imported from another module (a name another module uses is public and documented)."""
import ast
from pathlib import Path
from conftest import ROOT

LAYERS = [('data', 'losses', 'metrics'), ('runs', 'datasets', 'synthcxr', 'models', 'cache'), ('zeroshot',), ('pretrain',),
          ('evaluate', 'probe', 'prompt_tune', 'real_size', 'mimic_scale'), ('adaptor', 'segment'), ('compare',), ('cli',)]
LAYER = {m: i for i, ms in enumerate(LAYERS) for m in ms}


def imports() -> dict:
    "module -> the medvlp modules it imports, anywhere in its source."
    out = {}
    for p in sorted((ROOT / 'medvlp').glob('*.py')):
        if p.stem in ('_modidx', '__init__'): continue
        deps = set()
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom):
                mod = n.module or ''
                if n.level == 1: deps |= {mod.split('.')[0]} if mod else {a.name for a in n.names}
                elif mod.startswith('medvlp.'): deps.add(mod.split('.')[1])
        out[p.stem] = deps - {p.stem}
    return out


def test_every_module_has_a_layer():
    assert set(imports()) == set(LAYER), set(imports()) ^ set(LAYER)


def test_imports_go_down_the_layers():
    bad = [(m, d) for m, ds in imports().items() for d in ds if LAYER[d] > LAYER[m]]
    assert not bad, bad


def test_no_import_cycle():
    g, done, path = imports(), set(), []
    def visit(m):
        assert m not in path, ' -> '.join(path[path.index(m):] + [m])
        if m in done: return
        path.append(m)
        for d in g[m]: visit(d)
        path.pop(); done.add(m)
    for m in g: visit(m)


def _trees():
    for p in sorted((ROOT / 'medvlp').glob('*.py')):
        if p.stem not in ('_modidx', '__init__'): yield p.stem, ast.parse(p.read_text())


def test_no_function_over_60_lines():
    long = sorted((n.end_lineno - n.lineno + 1, m, n.name) for m, t in _trees() for n in ast.walk(t)
                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60)
    assert not long, long


def test_no_private_name_imported_across_modules():
    private = sorted((m, n.module, a.name) for m, t in _trees() for n in ast.walk(t) if isinstance(n, ast.ImportFrom)
                     and (n.level == 1 or (n.module or '').startswith('medvlp')) for a in n.names if a.name.startswith('_'))
    assert not private, private
