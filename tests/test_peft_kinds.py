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


def test_lora_on_an_open_clip_start(tmp_path):
    "init_from an OpenAI-CLIP state dict (CheXzero's format), default LoRA on both towers: in the towers only the adapters move, the attention weights not even by rounding."
    import torch
    from safetensors.torch import load_file
    from medvlp.pretrain import pretrain
    from test_init_from import _colour_pairs
    from test_lora_open_clip import _openai_pt
    res = pretrain(init_from=str(_openai_pt(tmp_path/'src')), dataset='pairs_folder', data_root=str(_colour_pairs(tmp_path/'pairs')),
                   image_size=32, batch_size=12, max_steps=4, ckpt_every=2, warmup_steps=0, log_every=1, zero_shot=False,
                   peft='lora', image_peft='lora', output_dir=str(tmp_path/'run'))
    assert res.history.loss.notna().all()
    before = load_file(str(res.output_dir / 'checkpoints' / 'step_000002' / 'model.safetensors'))
    after = load_file(str(res.model_dir / 'model.safetensors'))
    moved = [k for k in after if not torch.equal(before[k], after[k])]
    assert any('.attn.' in k for k in moved), moved
    assert all(k == 'logit_scale' or 'lora_' in k for k in moved), moved
