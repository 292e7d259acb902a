"""The package's layering (issue 12): data -> runs/datasets/models/cache -> zero-shot -> pretraining -> evaluation
(prompt tuning, probe, evaluate) -> Adaptor/segmentation -> the command line. A module imports only modules of its
own or lower layers, at its top or inside a function, and there is no import cycle (a lazy import inside a
function closes a cycle as surely as one at the top)."""
import ast
from pathlib import Path
from conftest import ROOT

LAYERS = [('data', 'losses', 'metrics'), ('runs', 'datasets', 'synthcxr', 'models', 'cache'), ('zeroshot',), ('pretrain',),
          ('evaluate', 'probe', 'prompt_tune'), ('adaptor', 'segment'), ('compare',), ('cli',)]
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
