"DualEncoder.from_pretrained from published dual encoders (HF CLIP, HF SigLIP, open_clip), saved to local folders: same embeddings and logits as the source."
import json, math
import pytest, torch
import torch.nn.functional as F
from safetensors.torch import save_file
from medvlp.models import DualEncoder, clip_tokenizer, count_parameters, source_kind, dual_encoder_folder, tiny_clip, DEFAULT_CORPUS
from medvlp.data import train_tokenizer
from medvlp.losses import clip_loss

torch.set_num_threads(1)
TEXTS = ['No acute cardiopulmonary process.', 'Small left pleural effusion with adjacent atelectasis.', 'Mild cardiomegaly.',
         'Right lower lobe consolidation concerning for pneumonia, cannot exclude aspiration.']
TOL = 1e-5
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
MAX_DIFF = {}

def _pooled(o): return o.pooler_output if hasattr(o, 'pooler_output') else o

def _ours(m, x, enc):
    "Our embeddings and logits through the training path (`model(batch)`)."
    with torch.no_grad(): out = m(dict(image=x, **enc))
    logits = out['logit_scale'] * out['image_emb'] @ out['text_emb'].T + out.get('logit_bias', 0)
    return out['image_emb'], out['text_emb'], logits

def _check(name, ours, ref):
    "Each tensor within TOL of the source's, relative to its largest value where that exceeds 1."
    # logits at scale 120 are rounded to 120 * 2**-23 = 1.4e-5 in float32: 1e-5 absolute failed on rounding alone
    # (under ATEN_CPU_CAPABILITY=default)
    d = max(((a - b).abs().max() / b.abs().max().clamp(min=1)).item() for a, b in zip(ours, ref))
    MAX_DIFF[name] = d
    assert d < TOL, f'{name}: max difference {d} (relative where values exceed 1)'

def _fit(m, batch, steps, lr=1e-2):
    "CLIP loss of `m` on `batch` (in eval mode) before and after `steps` AdamW steps of its trainable parameters."
    def loss():
        out = m(batch); return clip_loss(out['image_emb'], out['text_emb'], out['logit_scale'])
    m.eval()
    with torch.no_grad(): before = loss().item()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=lr)
    m.train()
    for _ in range(steps): opt.zero_grad(); loss().backward(); opt.step()
    m.eval()
    with torch.no_grad(): return before, loss().item()

def _roundtrip(m, x, enc, tmp_path):
    "save_pretrained then from_pretrained gives identical embeddings."
    m.save_pretrained(tmp_path/'rt')
    m2 = DualEncoder.from_pretrained(tmp_path/'rt')
    assert source_kind(tmp_path/'rt') == 'medvlp' and m2.config == m.config
    a, b = _ours(m, x, enc), _ours(m2, x, enc)
    for u, v in zip(a, b): assert torch.equal(u, v)
    assert torch.equal(m.encode_texts(TEXTS), m2.encode_texts(TEXTS))
    return m2

def make_hf_clip(d):
    "A tiny random CLIPModel in folder `d` (`tiny_clip`, with its own normalisation and logit scale 3.2): (folder, the CLIPModel)."
    from transformers import CLIPModel
    tiny_clip(d, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    hf = CLIPModel.from_pretrained(d).eval()
    with torch.no_grad(): hf.logit_scale.fill_(3.2)
    hf.save_pretrained(d)
    return d, hf

@pytest.fixture(scope='module')
def hf_clip(tmp_path_factory): return make_hf_clip(tmp_path_factory.mktemp('hf_clip'))

def test_hf_clip(hf_clip, tmp_path):
    d, hf = hf_clip
    assert source_kind(d) == 'hf'
    m = DualEncoder.from_pretrained(d)
    x = torch.randn(3, 3, 32, 32)
    enc = m.text.tokenize(TEXTS)
    assert enc['input_ids'].shape[1] < 77 and (enc['input_ids'][:, 0] == 49406).all()  # padded to the longest, BOS first
    with torch.no_grad():
        ref = (F.normalize(_pooled(hf.get_image_features(pixel_values=x)), dim=-1),
               F.normalize(_pooled(hf.get_text_features(**enc)), dim=-1),
               hf(pixel_values=x, **enc).logits_per_image)
    _check('hf_clip', _ours(m, x, enc), ref)
    assert (m.image.image_size, m.image.in_chans, m.image.mean, m.image.std) == (32, 3, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    assert m.config.init_from == str(d) and m.config.image['image_size'] == 32 and m.logit_bias is None
    assert m.image_proj.bias is None and torch.equal(m.image_proj.weight, hf.visual_projection.weight)
    m2 = _roundtrip(m, x, enc, tmp_path)
    assert m2.image.mean == [0.5, 0.4, 0.3]

def test_hf_clip_defaults_and_legacy_eos(tmp_path):
    "No preprocessor_config.json: CLIP's mean/std; an old config (eos_token_id=2) pools at the argmax id, as HF does."
    from transformers import CLIPConfig, CLIPModel
    torch.manual_seed(1)
    tok = clip_tokenizer()
    cfg = CLIPConfig(text_config=dict(TINY, vocab_size=len(tok), max_position_embeddings=77, eos_token_id=2),
                     vision_config=dict(TINY, image_size=32, patch_size=8), projection_dim=16)
    hf = CLIPModel(cfg).eval(); hf.save_pretrained(tmp_path/'c'); tok.save_pretrained(tmp_path/'c')
    m = DualEncoder.from_pretrained(tmp_path/'c')
    x, enc = torch.randn(2, 3, 32, 32), m.text.tokenize(TEXTS)
    with torch.no_grad():
        ref = (F.normalize(_pooled(hf.get_image_features(pixel_values=x)), dim=-1),
               F.normalize(_pooled(hf.get_text_features(**enc)), dim=-1), hf(pixel_values=x, **enc).logits_per_image)
    _check('hf_clip_legacy', _ours(m, x, enc), ref)
    assert m.image.mean == pytest.approx([0.48145466, 0.4578275, 0.40821073])

def test_hf_siglip(tmp_path):
    from transformers import SiglipConfig, SiglipModel
    torch.manual_seed(0)
    tok = train_tokenizer(DEFAULT_CORPUS + TEXTS, 'bpe', 300, model_max_length=16)
    cfg = SiglipConfig(text_config=dict(TINY, vocab_size=len(tok), max_position_embeddings=16),
                       vision_config=dict(TINY, image_size=32, patch_size=8))
    hf = SiglipModel(cfg).eval()
    with torch.no_grad(): hf.logit_scale.fill_(math.log(120.0)); hf.logit_bias.fill_(-3.5)  # above ln 100: must not be clamped
    hf.save_pretrained(tmp_path/'s'); tok.save_pretrained(tmp_path/'s')
    m = DualEncoder.from_pretrained(tmp_path/'s')
    x = torch.randn(3, 3, 32, 32)
    enc = m.text.tokenize(TEXTS)
    assert enc['input_ids'].shape == (4, 16)  # SigLIP pads to max_length
    with torch.no_grad():
        ref = (F.normalize(_pooled(hf.get_image_features(pixel_values=x)), dim=-1),
               F.normalize(_pooled(hf.get_text_features(input_ids=enc['input_ids'])), dim=-1),
               hf(pixel_values=x, input_ids=enc['input_ids']).logits_per_image)
    enc = dict(input_ids=enc['input_ids'])  # SiglipModel is called without a mask
    _check('hf_siglip', _ours(m, x, enc), ref)
    assert m.config.proj == 'none' and m.logit_bias is not None and m.logit_bias.item() == -3.5
    _roundtrip(m, x, enc, tmp_path)
    # LoRA with the family's default targets (MedSigLIP's and siglip-base's path): adapters only, trains, reloads
    for tower in ('image', 'text'): m.apply_peft(tower, 'lora', r=8)
    m.logit_scale.requires_grad_(False); m.logit_bias.requires_grad_(False)
    peft_count = sum(getattr(m, t).model.get_nb_trainable_parameters()[0] for t in ('image', 'text'))
    assert count_parameters(m)['trainable'] == peft_count == 2 * 2 * 3 * 8 * 64   # towers x layers x q, k, v x r x (32 + 32)
    batch = dict(image=torch.randn(4, 3, 32, 32), **enc)
    before, after = _fit(m, batch, 20)
    assert after < before - 0.05, (before, after)
    _roundtrip(m, x, enc, tmp_path/'lora')

def _open_clip_folder(d, weights):
    import open_clip
    torch.manual_seed(0)
    mc = dict(embed_dim=24, vision_cfg=dict(image_size=32, layers=2, width=32, head_width=16, patch_size=8, mlp_ratio=2.0),
              text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2, mlp_ratio=2.0))
    oc = open_clip.CLIP(**mc).eval()
    with torch.no_grad():
        oc.logit_scale.fill_(2.9)
        for p in oc.parameters(): p.add_(torch.randn_like(p) * 0.02)  # off the zero/identity inits
    d.mkdir()
    pre = dict(size=32, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    (d/'open_clip_config.json').write_text(json.dumps(dict(model_cfg=mc, preprocess_cfg=pre)))
    sd = {k: v.contiguous() for k, v in oc.state_dict().items()}
    if weights.endswith('.safetensors'): save_file(sd, str(d/weights))
    else: torch.save(sd, d/weights)
    return oc

@pytest.mark.parametrize('weights', ['open_clip_model.safetensors', 'open_clip_pytorch_model.bin'])
def test_open_clip(tmp_path, weights):
    import open_clip
    d = tmp_path/'oc'
    oc = _open_clip_folder(d, weights)
    assert source_kind(d) == 'open_clip'
    m = DualEncoder.from_pretrained(d)
    x = torch.randn(3, 3, 32, 32)
    enc = m.text.tokenize(TEXTS)
    ids = open_clip.get_tokenizer(f'local-dir:{d}')(TEXTS)
    assert torch.equal(enc['input_ids'], ids)  # our tokenizer gives open_clip's ids
    with torch.no_grad():
        i, t = oc.encode_image(x, normalize=True), oc.encode_text(ids, normalize=True)
    _check('open_clip', _ours(m, x, enc), (i, t, oc.logit_scale.exp() * i @ t.T))
    assert (m.image.image_size, m.image.mean, m.image.std) == (32, [0.5] * 3, [0.5] * 3)
    _roundtrip(m, x, enc, tmp_path)

def test_bad_sources(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc
    monkeypatch.setenv('HF_HUB_OFFLINE', '1'); monkeypatch.setattr(hc, 'HF_HUB_OFFLINE', True)  # fail at once, no retries
    (tmp_path/'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='no config.json or open_clip_config.json'): DualEncoder.from_pretrained(tmp_path/'empty')
    with pytest.raises(FileNotFoundError, match='no such model folder'): DualEncoder.from_pretrained(tmp_path/'missing')
    with pytest.raises(ConnectionError, match='download the repository'): DualEncoder.from_pretrained('hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224')
    with pytest.raises(ValueError, match='not loadable as a Hugging Face'): DualEncoder.from_pretrained('openai/clip-vit-base-patch16')
    (tmp_path/'w').mkdir(); (tmp_path/'w'/'open_clip_config.json').write_text(json.dumps(dict(model_cfg={})))
    with pytest.raises(FileNotFoundError, match='open_clip_model.safetensors'): DualEncoder.from_pretrained(tmp_path/'w')
    (tmp_path/'bert').mkdir(); (tmp_path/'bert'/'config.json').write_text(json.dumps(dict(model_type='bert')))
    with pytest.raises(ValueError, match="model_type='bert'; expected one of"): DualEncoder.from_pretrained(tmp_path/'bert')
    assert [dual_encoder_folder(tmp_path/d) for d in ('bert', 'empty', 'missing', 'w')] == [False, False, False, True]

def test_lora_on_hf_clip(hf_clip, tmp_path):
    "LoRA r=8 on q,k,v of both towers: only the adapters train (peft's own count), a few steps lower the CLIP loss, and it reloads equal."
    d, _ = hf_clip
    m = DualEncoder.from_pretrained(d).train()
    for tower in ('image', 'text'): m.apply_peft(tower, 'lora', r=8, target_modules=['q_proj', 'k_proj', 'v_proj'])
    for p in (*m.image_proj.parameters(), *m.text_proj.parameters(), m.logit_scale): p.requires_grad_(False)
    peft_count = sum(getattr(m, t).model.get_nb_trainable_parameters()[0] for t in ('image', 'text'))
    assert count_parameters(m)['trainable'] == peft_count > 0
    assert all('lora_' in n for n, p in m.named_parameters() if p.requires_grad)
    # 2 towers x 2 layers x 3 matrices x r=8 x (32 + 32)
    assert peft_count == 2 * 2 * 3 * 8 * 64
    torch.manual_seed(0)
    batch = dict(image=torch.randn(4, 3, 32, 32), **m.text.tokenize(TEXTS))
    before, after = _fit(m, batch, 5)
    assert after < before - 0.05, (before, after)
    _roundtrip(m, batch['image'], {k: v for k, v in batch.items() if k != 'image'}, tmp_path)

def test_report_max_diff():
    print({k: f'{v:.2e}' for k, v in MAX_DIFF.items()})


def _colour_pairs(root, n=24):
    "A pairs folder of colour images: red, green or blue squares, each with its own caption."
    from PIL import Image
    import numpy as np
    (root/'train'/'imgs').mkdir(parents=True)
    rng, recs = np.random.default_rng(0), []
    for i in range(n):
        a = rng.integers(0, 40, (32, 32, 3)).astype(np.uint8)
        a[8:24, 8:24, i % 3] = 230
        Image.fromarray(a).save(root/'train'/'imgs'/f'{i}.png')
        recs.append(dict(img=f'{i}.png', caption=['a red square.', 'a green square.', 'a blue square.'][i % 3]))
    (root/'train'/'img_text_pair.json').write_text(json.dumps(recs))
    return root


def test_pretrain_init_from_hf_clip_lora_on_colour_images(hf_clip, tmp_path):
    "init_from a local CLIPModel folder, LoRA on q, k, v of both towers, 20 steps on colour pairs: the loss falls, images stay RGB"
    # with CLIP's own normalisation, and in the towers only the adapters train (peft's own count)
    from medvlp.pretrain import PretrainConfig, pretrain, build_model, make_dataset
    from medvlp.cache import in_channels, image_input
    folder, _ = hf_clip
    p = dict(init_from=str(folder), dataset='pairs_folder', data_root=str(_colour_pairs(tmp_path/'pairs')), image_size=32,
             batch_size=12, max_steps=20, lr=3e-3, warmup_steps=2, log_every=1, zero_shot=False, peft='lora', image_peft='lora',
             lora_targets='q_proj,k_proj,v_proj', lora_r=8, lora_alpha=8, lora_dropout=0.0, output_dir=str(tmp_path/'run'))
    cfg = PretrainConfig.make(**p)
    m = build_model(cfg)
    assert image_input(m.image) == dict(channels=3, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])   # preprocessor_config.json's
    img = torch.rand(3, 32, 32)
    assert make_dataset(cfg, [], m.image, train=False).transform(img).shape == (3, 32, 32)
    n = lambda mod: sum(q.numel() for q in mod.parameters() if q.requires_grad)
    for t in (m.image, m.text): assert n(t) == t.model.get_nb_trainable_parameters()[0] > 0   # in the towers, the adapters only
    assert n(m) - n(m.image) - n(m.text) == n(m.image_proj) + n(m.text_proj) + 1   # and the projections and the logit scale
    res = pretrain(**p)
    h = res.history.loss
    assert h.iloc[-5:].mean() < h.iloc[:5].mean(), h.tolist()
    back = DualEncoder.from_pretrained(res.model_dir)
    assert in_channels(back.image) == 3 and back.config.image['mean'] == [0.5, 0.4, 0.3]
    man = json.loads((tmp_path/'run'/'manifest.json').read_text())
    assert man['image_input'] == dict(size=32, channels=3, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])


def test_pretrain_init_from_an_earlier_run_continues_where_it_left_off(synth_root, tmp_path):
    "A model built with init_from an earlier run's folder scores that run's final zero-shot figure exactly."
    from conftest import tiny_params
    from medvlp.pretrain import PretrainConfig, pretrain, build_model, zero_shot_5x200
    first = pretrain(**tiny_params(synth_root, tmp_path/'first', zero_shot=True, max_steps=12))
    cfg = PretrainConfig.make(**tiny_params(synth_root, tmp_path/'second', init_from=str(first.model_dir)))
    acc, *_ = zero_shot_5x200(build_model(cfg).eval(), cfg)
    assert acc == first.metrics['zero_shot_5x200_acc']


def test_kit_tower_in_colour(synth_root, tmp_path):
    "image_config: {in_chans: 3} trains a kit tower on 3-channel images (grey repeated), saved so that a reload scores the same."
    from conftest import tiny_params
    from medvlp.pretrain import PretrainConfig, pretrain, zero_shot_5x200, frozen_model
    from medvlp.cache import image_input
    p = tiny_params(synth_root, tmp_path/'run', image_tower='tiny-vit', image_config={'in_chans': 3}, zero_shot=True, max_steps=6)
    res = pretrain(**p)
    model, tfm = frozen_model(res.model_dir)
    assert image_input(model.image) == dict(channels=3, mean=0.5, std=0.5) and model.image_size == 32
    assert model.image.trunk.patch_embed.proj.in_channels == 3
    man = json.loads((tmp_path/'run'/'manifest.json').read_text())
    assert man['image_input'] == dict(size=32, channels=3, mean=0.5, std=0.5)
    acc, *_ = zero_shot_5x200(model, PretrainConfig.make(**p))
    assert acc == res.metrics['zero_shot_5x200_acc']


def test_a_registry_name_from_its_placed_file(tmp_path, monkeypatch, capsys):
    "CheXzero by name (issue 28), its .pt placed by hand: evaluate prints the published figure beside its own, init_from fine-tunes from it"
    from open_clip.model import CLIP, CLIPVisionCfg, CLIPTextCfg
    from medvlp.models import checkpoint_folder
    from medvlp.evaluate import evaluate
    from medvlp.pretrain import pretrain
    monkeypatch.setenv('MEDVLP_CACHE', str(tmp_path/'cache'))
    torch.manual_seed(0)
    oa = CLIP(32, CLIPVisionCfg(layers=1, width=64, patch_size=8, image_size=32),
              CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1), quick_gelu=True)
    checkpoint_folder('chexzero').mkdir(parents=True)
    torch.save(oa.state_dict(), checkpoint_folder('chexzero')/'best_64_5e-05_original_22000_0.864.pt')
    pairs = _colour_pairs(tmp_path/'pairs')
    res = evaluate(model_dir='chexzero', dataset='pairs_folder', data_root=str(pairs), split='train', tasks=['retrieval'],
                   n_boot=0, output_dir=str(tmp_path/'eval'))
    assert 'Published figure of `chexzero`' in capsys.readouterr().out
    md = (tmp_path/'eval'/'metrics.md').read_text()
    assert md.startswith('# Evaluation of `chexzero`') and 'mean AUROC of 5 findings 0.889' in md, md[:400]
    assert 0 <= res.metrics['retrieval']['image_to_text_R@1'] <= 1
    run = pretrain(init_from='chexzero', dataset='pairs_folder', data_root=str(pairs), image_size=32, batch_size=12, max_steps=3,
                   warmup_steps=1, zero_shot=False, output_dir=str(tmp_path/'run'))
    assert run.metrics['steps'] == 3 and DualEncoder.from_pretrained(run.model_dir).image.mean[0] == pytest.approx(0.398)
    assert 'license: mit' in (run.model_dir/'README.md').read_text()


def test_towers_by_name_from_placed_files(tmp_path, monkeypatch):
    "A TOWERS name (issue 28: CLEFT's recipe starts from them) loads the files placed in its folder, offline; with nothing placed the error says where; a dual encoder's parameters refuse it."
    import timm
    from transformers import GPT2Config, GPT2Model
    from safetensors.torch import save_file
    import medvlp.models as M
    from medvlp.pretrain import PretrainConfig, build_model
    monkeypatch.setenv('MEDVLP_CACHE', str(tmp_path/'cache')); monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setitem(M.TOWERS, 'test-vit', M.Checkpoint('timm/test_vit.r160_in1k', 'timm', 'Apache-2.0', '', ''))
    torch.manual_seed(0)
    vit = timm.create_model('test_vit', pretrained=False)                   # a timm hub repository's files
    d = M.checkpoint_folder('test-vit'); d.mkdir(parents=True)
    (d/'config.json').write_text(json.dumps(dict(architecture='test_vit', num_classes=vit.num_classes)))
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(d/'model.safetensors'))
    tok = train_tokenizer(DEFAULT_CORPUS, 'bpe', 300, model_max_length=32)
    lm = GPT2Model(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=32))
    lm.save_pretrained(M.checkpoint_folder('biomedlm')); tok.save_pretrained(M.checkpoint_folder('biomedlm'))
    cfg = PretrainConfig(image_tower='test_vit', image_pretrained='test-vit', image_pool='mean', image_size=160,
                         text_tower='stanford-crfm/BioMedLM', text_pretrained='biomedlm', text_pool='eos', max_length=32)
    m = build_model(cfg)
    sd = m.image.trunk.state_dict()
    ref = vit.state_dict()   # every weight the placed one (the first conv's summed over colour: a grey tower)
    assert all(torch.equal(v, ref[k]) for k, v in sd.items() if k != 'patch_embed.proj.weight') and len(sd) > 30
    assert torch.allclose(sd['patch_embed.proj.weight'], ref['patch_embed.proj.weight'].sum(1, keepdim=True))
    assert all(torch.equal(v, lm.state_dict()[k]) for k, v in m.text.trunk.state_dict().items())
    assert m.text.name == 'biomedlm'
    with pytest.raises(FileNotFoundError, match=f"bioclinicalbert: no local copy .*--local-dir {M.checkpoint_folder('bioclinicalbert')}"):
        build_model(PretrainConfig(text_tower='emilyalsentzer/Bio_ClinicalBERT', text_pretrained='bioclinicalbert'))
    with pytest.raises(ValueError, match="'biomedlm' is a single pretrained tower, not a dual encoder: pass it as text_pretrained"):
        DualEncoder.from_pretrained('biomedlm')


def test_the_readme_lists_every_starting_point():
    "The README's table of starting points is the registry's (issue 28)."
    from conftest import ROOT
    from medvlp.models import checkpoints_table
    from medvlp.runs import markdown_table
    assert markdown_table(checkpoints_table().drop(columns='source')) in (ROOT/'README.md').read_text()
