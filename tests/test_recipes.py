"""Every recipe in params/ is a valid configuration, and every tiny recipe trains a few steps offline (that MedCLIP's and
SigLIP's whole tiny recipes learn is a `#| slow` cell of nbs/02_pretrain.ipynb)."""
from pathlib import Path
import json, math
import pytest
from conftest import ROOT, tiny_params

RECIPES = sorted((ROOT / 'params').rglob('*.yaml'))
CONFIGS = {'compare.yaml': ('medvlp.compare', 'CompareConfig')}   # recipes of other experiments; the rest are pretraining's
TINY = sorted((ROOT / 'params' / 'tiny').glob('*.yaml'))


def test_there_are_recipes():
    names = {p.stem for p in RECIPES}
    assert {'cleft', 'medslip', 'cxr_clip', 'clip_finetune_full', 'clip_finetune_lora', 'biomedclip_lora', 'clip'} <= names
    assert {'clip', 'siglip', 'slip', 'cxr_clip', 'medclip', 'cleft', 'clip_lora', 'clip_finetune_full', 'clip_finetune_lora',
            'biomedclip_lora'} <= {p.stem for p in TINY}


@pytest.mark.parametrize('path', RECIPES, ids=lambda p: str(p.relative_to(ROOT / 'params')))
def test_recipe_is_valid(path):
    import importlib
    mod, name = CONFIGS.get(path.name, ('medvlp.pretrain', 'PretrainConfig'))
    cfg = getattr(importlib.import_module(mod), name).load(path)
    assert cfg.run_name


@pytest.mark.parametrize('path', TINY, ids=lambda p: p.stem)
def test_tiny_recipe_trains(path, tmp_path, synth_root, monkeypatch):
    "Run as the recipe says, from a folder where `medvlp tiny-clip [--like biomedclip]` wrote the tiny model the fine-tuning recipes start from."
    from medvlp.pretrain import PretrainConfig, pretrain
    from medvlp.cli import run
    monkeypatch.chdir(tmp_path)
    like = 'biomedclip' if path.stem.startswith('biomedclip') else 'clip'
    run(['tiny-clip', '--like', like])
    p = tiny_params(synth_root, tmp_path, max_steps=3, ckpt_every=100)
    cfg = PretrainConfig.load(path, **{k: v for k, v in p.items() if k != 'image_size'})
    res = pretrain(cfg)
    assert res.metrics['steps'] == 3
    assert math.isfinite(res.metrics['final_loss'])
    assert (tmp_path / 'model' / 'config.json').exists()
    if cfg.init_from:   # the tiny model's own input: 3 channels at its size (32 px, 160 px), its normalisation
        from medvlp.models import DualEncoder
        from medvlp.cache import image_input
        m = DualEncoder.from_pretrained(tmp_path / 'model')
        assert (m.image.image_size, image_input(m.image)['channels'], round(m.image.mean[0], 4)) == \
            {'clip': (32, 3, 0.4815), 'biomedclip': (160, 3, 0.5)}[like]
        assert bool(m.config.text.get('peft')) == (cfg.peft == 'lora')

