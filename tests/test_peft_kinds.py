"Every PEFT kind trains a few steps inside `pretrain()` (not only standalone): finite losses, and in the tower only its adapters move."
import pytest
from conftest import tiny_params

ADAPTER = ('lora_', 'ia3_', 'prompt_encoder')
KINDS = [('text', k) for k in ('frozen', 'lora', 'ia3', 'prefix', 'prompt', 'adalora')] + \
        [('image', k) for k in ('frozen', 'lora', 'ia3', 'adalora')]


@pytest.mark.parametrize('tower,kind', KINDS, ids=lambda x: str(x))
def test_peft_kind_trains(tmp_path, synth_root, tower, kind):
    import torch
    from safetensors.torch import load_file
    from medvlp.pretrain import pretrain, PretrainConfig
    p = tiny_params(synth_root, tmp_path / 'run', max_steps=4, ckpt_every=2, warmup_steps=0, **{'peft' if tower == 'text' else 'image_peft': kind})
    res = pretrain(PretrainConfig.make(**p))
    assert res.history.step.tolist() == [1, 2, 3, 4] and res.history.loss.notna().all()
    before = load_file(str(res.output_dir / 'checkpoints' / 'step_000002' / 'model.safetensors'))
    after = load_file(str(res.model_dir / 'model.safetensors'))
    keys = [k for k in after if k.startswith(tower + '.') and 'running_' not in k and 'num_batches' not in k]
    moved = [k for k in keys if not torch.equal(before[k], after[k])]
    if kind == 'frozen': assert moved == []
    else: assert moved and all(any(a in k for a in ADAPTER) for k in moved), moved
    assert not torch.equal(before['text_proj.weight'], after['text_proj.weight'])  # the projections train in every kind
