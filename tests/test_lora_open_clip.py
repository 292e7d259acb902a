"LoRA on open_clip towers (nn.MultiheadAttention), in both open_clip formats the kit loads: an open_clip folder and an OpenAI-CLIP state dict (CheXzero's)."
import copy
import pytest, torch
from medvlp.models import DualEncoder, count_parameters, tiny_biomedclip
from test_init_from import _open_clip_folder, _fit, TEXTS

torch.set_num_threads(1)


def _openai_pt(d):
    "A tiny OpenAI-CLIP state dict saved as CheXzero saves its weights (64-wide heads, QuickGELU)."
    from open_clip.model import CLIP, CLIPVisionCfg, CLIPTextCfg
    torch.manual_seed(0)
    oa = CLIP(16, CLIPVisionCfg(layers=2, width=64, patch_size=8, image_size=32),
              CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=2), quick_gelu=True)
    with torch.no_grad():
        for p in oa.parameters(): p.add_(torch.randn_like(p) * 0.02)  # off the zero/identity inits
    d.mkdir(); torch.save(oa.state_dict(), d/'tiny.pt')
    return d/'tiny.pt'


SOURCES = {'open_clip': (lambda d: (_open_clip_folder(d, 'open_clip_model.safetensors'), d)[1], 32),   # width 32
           'openai': (_openai_pt, 64)}                                                            # width 64


def _embed(m, batch):
    with torch.no_grad(): out = m(batch)
    return out['image_emb'], out['text_emb']


@pytest.mark.parametrize('fmt', list(SOURCES))
def test_lora_on_open_clip_towers(tmp_path, fmt):
    "Default LoRA targets every block's attention; only adapters (and the logit scale) train, peft's own count; exact at init; trains; saves and loads."
    from peft.tuners.lora.layer import MultiheadAttention as LoraMHA
    make, width = SOURCES[fmt]
    src = make(tmp_path/'src')
    base = DualEncoder.from_pretrained(src)
    m = copy.deepcopy(base)
    for tower in ('image', 'text'): m.apply_peft(tower, 'lora', r=8, alpha=8, dropout=0.0)

    # the targets: each block's nn.MultiheadAttention (q, k, v and out_proj), nothing else
    for t in (m.image, m.text):
        assert t.model.peft_config['default'].target_modules == {'attn'}
        adapted = [n for n, mod in t.trunk.named_modules() if isinstance(mod, LoraMHA)]
        assert adapted == [f'transformer.resblocks.{i}.attn' for i in range(2)], adapted
    # trainable: the adapters, peft's own count, and the logit scale (open_clip's projections sit in the towers: proj='none')
    peft_count = sum(t.model.get_nb_trainable_parameters()[0] for t in (m.image, m.text))
    assert peft_count == 2 * 2 * 6 * 8 * width   # 2 towers x 2 blocks x (in_proj A, B + out_proj A, B) at r=8
    for t in (m.image, m.text): assert count_parameters(t)['trainable'] == t.model.get_nb_trainable_parameters()[0]
    assert count_parameters(m)['trainable'] == peft_count + 1
    assert all('lora_' in n for n, p in m.named_parameters() if p.requires_grad and n != 'logit_scale')

    torch.manual_seed(0)
    batch = dict(image=torch.randn(4, 3, 32, 32), **m.text.tokenize(TEXTS))
    # the base frozen too: PyTorch's matmul takes another path (other rounding) for weights that require grad
    m.eval(); base.eval().requires_grad_(False)
    for a, b in zip(_embed(m, batch), _embed(base, batch)): assert torch.equal(a, b)   # LoRA's B = 0: the base model exactly

    frozen = {k: v.clone() for k, v in m.state_dict().items() if 'lora_' not in k and k != 'logit_scale'}
    before, after = _fit(m, batch, 20)
    assert after < before - 0.1, (before, after)
    # the base weights did not move, not even by rounding (peft merges LoRA into them around each call and subtracts it
    # after, which moves them by an ulp here and there: `_ExactLoraMHA` puts the originals back)
    moved = [k for k, v in frozen.items() if not torch.equal(m.state_dict()[k], v)]
    assert moved == [], moved

    m.save_pretrained(tmp_path/'rt')
    m2 = DualEncoder.from_pretrained(tmp_path/'rt')
    assert m2.config == m.config and [s['method'] for s in m2.config.image['peft']] == ['lora']
    for a, b in zip(_embed(m2, batch), _embed(m, batch)): assert torch.equal(a, b)
    # the adapter folder loads with peft itself onto the source's tower
    from peft import PeftModel
    pm = PeftModel.from_pretrained(copy.deepcopy(base.image.model), tmp_path/'rt'/'image_adapter').eval()
    with torch.no_grad(): assert torch.allclose(pm(batch['image']), m.image(batch['image']), atol=1e-6)


def test_open_clip_targets_and_errors(tmp_path):
    "The MLP joins LoRA on request (dropout reaches it, not the attention: said); AdaLoRA and IA3 default to the MLP; out_proj alone and IA3 on attention are refused, naming what works."
    m = DualEncoder.from_pretrained(_openai_pt(tmp_path/'src'))
    with pytest.warns(UserWarning, match=r"lora_dropout=0.1 does not reach its nn.MultiheadAttention targets"):
        m.apply_peft('image', 'lora', r=4, target_modules=['attn', 'c_fc', 'c_proj'])
    assert m.image.model.peft_config['default'].target_modules == {'attn', 'c_fc', 'c_proj'}
    # per block: attention 6 x r x 64, c_fc (64 -> 256) and c_proj (256 -> 64) r x (64 + 256) each
    assert m.image.model.get_nb_trainable_parameters()[0] == 2 * (6 * 4 * 64 + 2 * 4 * 320)
    m.apply_peft('text', 'ia3')
    assert m.text.model.peft_config['default'].target_modules == {'mlp.c_proj'}
    assert m.text.model.get_nb_trainable_parameters()[0] == 2 * 256   # one scale per c_proj input
    m = DualEncoder.from_pretrained(tmp_path/'src'/'tiny.pt')
    m.apply_peft('image', 'adalora', r=4, total_step=10)
    assert m.image.model.peft_config['default'].target_modules == {'c_fc', 'c_proj'}
    with pytest.raises(ValueError, match=r"never calls its 'out_proj': target the attention module \['attn'\]"):
        m.apply_peft('text', 'lora', target_modules=['out_proj'])
    with pytest.raises(ValueError, match="with LoRA only, not ia3"):
        m.apply_peft('text', 'ia3', target_modules=['attn'])


def test_lora_reaches_biomedclip_shaped_towers(tmp_path):
    "BiomedCLIP's towers are open_clip's wrappers of a timm ViT and a transformers BERT: embeds as open_clip does; LoRA's defaults are those models' own (qkv; query, value); trains, base unmoved; reloads."
    import open_clip
    src = tiny_biomedclip(tmp_path/'bm')
    base = DualEncoder.from_pretrained(src).eval().requires_grad_(False)
    assert (type(base.image.trunk).__name__, type(base.text.trunk).__name__) == ('TimmModel', 'HFTextEncoder')
    torch.manual_seed(0)
    batch = dict(image=torch.randn(4, 3, 160, 160), **base.text.tokenize(TEXTS))
    oc, _ = open_clip.create_model_from_pretrained(f'local-dir:{src}')
    with torch.no_grad():
        ref = (oc.eval().encode_image(batch['image'], normalize=True), oc.encode_text(batch['input_ids'], normalize=True))
    for a, b in zip(_embed(base, batch), ref): torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    m = copy.deepcopy(base)
    for tower in ('image', 'text'): m.apply_peft(tower, 'lora', r=8)
    assert m.image.model.peft_config['default'].target_modules == {'qkv'}
    assert m.text.model.peft_config['default'].target_modules == {'query', 'value'}
    assert m.image.model.get_nb_trainable_parameters()[0] == 6 * 8 * (64 + 192)      # test_vit: 6 blocks, qkv 64 -> 192
    assert m.text.model.get_nb_trainable_parameters()[0] == 2 * 2 * 8 * (32 + 32)    # BERT: 2 layers, query and value 32 -> 32
    assert count_parameters(m)['trainable'] == sum(t.model.get_nb_trainable_parameters()[0] for t in (m.image, m.text))  # scale frozen with the base
    m.eval()
    for a, b in zip(_embed(m, batch), _embed(base, batch)): assert torch.equal(a, b)
    frozen = {k: v.clone() for k, v in m.state_dict().items() if 'lora_' not in k and k != 'logit_scale'}
    before, after = _fit(m, batch, 20)
    assert after < before - 0.1, (before, after)
    assert [k for k, v in frozen.items() if not torch.equal(m.state_dict()[k], v)] == []
    m.save_pretrained(tmp_path/'rt')
    m2 = DualEncoder.from_pretrained(tmp_path/'rt')
    for a, b in zip(_embed(m2, batch), _embed(m, batch)): assert torch.equal(a, b)
