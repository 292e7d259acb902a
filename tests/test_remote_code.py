"""No code runs from a folder or a recipe the kit reads (issue 24): a config that asks for a folder's own code
(`auto_map`, or `trust_remote_code` at any depth) is refused with an error naming the file or parameter and the key,
and the planted module, which writes a marker file when imported, never runs."""
import json, shutil, subprocess, sys
import pytest
from conftest import cli_args, env

EVIL = """open({marker!r}, 'w').write('ran')
from transformers import BertConfig, BertModel, BertTokenizerFast as EvilTokenizer
class EvilConfig(BertConfig): pass
class EvilModel(BertModel): config_class = EvilConfig
"""


@pytest.fixture
def evil(tmp_path):
    "(a tiny BERT folder whose config and tokenizer map their classes to its evil.py, the marker evil.py writes)."
    from medvlp.models import build_text_tower, DEFAULT_CORPUS
    d, marker = tmp_path / 'evil_bert', tmp_path / 'pwned'
    t = build_text_tower('tiny-bert', texts=DEFAULT_CORPUS)
    t.model.save_pretrained(d); t.tokenizer.save_pretrained(d)
    for f, amap in (('config.json', {'AutoConfig': 'evil.EvilConfig', 'AutoModel': 'evil.EvilModel'}),
                    ('tokenizer_config.json', {'AutoTokenizer': ['evil.EvilTokenizer', 'evil.EvilTokenizer']})):
        j = json.loads((d / f).read_text()); j['auto_map'] = amap; (d / f).write_text(json.dumps(j))
    (d / 'evil.py').write_text(EVIL.format(marker=str(marker)))
    yield d, marker
    assert not marker.exists(), 'the planted module ran'


def medvlp_folder(tmp_path, evil_dir):
    "A medvlp model folder whose config.json sends its text tower to `evil_dir` with trust_remote_code (and no text_config/)."
    from medvlp.models import create_model, DEFAULT_CORPUS
    d = tmp_path / 'model'
    create_model('tiny-resnet', 'tiny-bert', texts=DEFAULT_CORPUS, emb_dim=16).save_pretrained(d)
    shutil.rmtree(d / 'text_config')
    c = json.loads((d / 'config.json').read_text())
    c['text'].update(name=str(evil_dir), trust_remote_code=True); (d / 'config.json').write_text(json.dumps(c))
    return d


def test_recipe_text_config(evil, tmp_path):
    "A recipe's text_config with trust_remote_code, its text tower a folder with auto_map."
    from medvlp.pretrain import PretrainConfig, build_model
    cfg = PretrainConfig(text_pretrained=str(evil[0]), text_config={'trust_remote_code': True})
    with pytest.raises(ValueError, match="text config: key 'trust_remote_code'"): build_model(cfg)


def test_text_folder_auto_map(evil):
    "A text tower folder whose config maps its classes to its own code, loaded by name."
    from medvlp.models import build_text_tower
    with pytest.raises(ValueError, match=r"config\.json: key 'auto_map'"): build_text_tower(str(evil[0]))


def test_model_folder_config(evil, tmp_path):
    "`DualEncoder.from_pretrained` and `init_from` on a medvlp folder whose config.json's text dict asks for code."
    from medvlp.models import DualEncoder
    from medvlp.pretrain import PretrainConfig, build_model
    d = medvlp_folder(tmp_path, evil[0])
    with pytest.raises(ValueError, match=r"model/config\.json: key 'text\.trust_remote_code'"): DualEncoder.from_pretrained(d)
    with pytest.raises(ValueError, match="text.trust_remote_code"): build_model(PretrainConfig(init_from=str(d)))


def test_eval_on_the_model_folder(evil, tmp_path, synth_root):
    "`medvlp eval -p model_dir` on that folder exits non-zero with one line naming the file and the key."
    d = medvlp_folder(tmp_path, evil[0])
    p = dict(model_dir=str(d), data_root=str(synth_root), output_dir=str(tmp_path / 'eval'))
    r = subprocess.run([sys.executable, '-m', 'medvlp.cli', 'eval'] + cli_args(p), capture_output=True, text=True,
                       env=env(), timeout=300)
    assert r.returncode != 0 and "text.trust_remote_code" in r.stderr, r.stderr[-2000:]


def test_open_clip_tokenizer_kwargs(evil, tmp_path):
    "An open_clip folder with an HF tokenizer beside it that maps to its own code, and tokenizer_kwargs that trust it."
    from test_init_from import _open_clip_folder
    from medvlp.models import DualEncoder
    d = tmp_path / 'oc'
    _open_clip_folder(d, 'open_clip_model.safetensors')
    for f in ('tokenizer.json', 'tokenizer_config.json', 'evil.py'): shutil.copy(evil[0] / f, d / f)
    j = json.loads((d / 'open_clip_config.json').read_text())
    j['model_cfg']['text_cfg'].update(hf_tokenizer_name='bert', tokenizer_kwargs={'trust_remote_code': True})
    (d / 'open_clip_config.json').write_text(json.dumps(j))
    with pytest.raises(ValueError, match=r"open_clip_config\.json: key 'model_cfg\.text_cfg\.tokenizer_kwargs\.trust_remote_code'"):
        DualEncoder.from_pretrained(d)


def test_plain_folders_still_load(tmp_path):
    "A config with trust_remote_code false, and token ids named like the keys in a vocabulary, are not requests for code."
    from medvlp.models import refuse_code
    (tmp_path / 'm').mkdir()
    (tmp_path / 'm' / 'config.json').write_text(json.dumps(dict(trust_remote_code=False, model_type='bert')))
    (tmp_path / 'm' / 'vocab.json').write_text(json.dumps({'auto_map': 7, 'trust_remote_code': 8}))
    refuse_code(tmp_path / 'm')
    with pytest.raises(ValueError, match=r"bad\.json: cannot read it"):
        (tmp_path / 'm' / 'bad.json').write_text('{'); refuse_code(tmp_path / 'm')
