"Every recipe in params/ is a valid configuration, and every tiny recipe trains a few steps offline."
from pathlib import Path
import json, math
import pytest
from conftest import ROOT, tiny_params

RECIPES = sorted((ROOT / 'params').rglob('*.yaml'))
TINY = sorted((ROOT / 'params' / 'tiny').glob('*.yaml'))


def test_there_are_recipes():
    names = {p.stem for p in RECIPES}
    assert {'cleft', 'medslip', 'cxr_clip', 'clip_finetune_full', 'clip_finetune_lora', 'clip'} <= names
    assert {'clip', 'siglip', 'slip', 'cxr_clip', 'medclip', 'cleft', 'clip_lora'} <= {p.stem for p in TINY}


@pytest.mark.parametrize('path', RECIPES, ids=lambda p: str(p.relative_to(ROOT / 'params')))
def test_recipe_is_valid(path):
    from medvlp.pretrain import load_config
    cfg = load_config(path)
    assert cfg.run_name


@pytest.mark.parametrize('path', TINY, ids=lambda p: p.stem)
def test_tiny_recipe_trains(path, tmp_path, synth_root):
    from medvlp.pretrain import load_config, pretrain
    p = tiny_params(synth_root, tmp_path, max_steps=3, ckpt_every=100)
    res = pretrain(load_config(path, **p))
    assert res.metrics['steps'] == 3
    assert math.isfinite(res.metrics['final_loss'])
    assert (tmp_path / 'model' / 'config.json').exists()
