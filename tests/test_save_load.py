"""One save/load convention (issue 25): every trainable artefact (the dual encoder, the Adaptor, the segmentation head,
the tuned prompt) has `save_pretrained(dir)` and `cls.from_pretrained(dir, ...)`, written atomically, and comes back
giving the same outputs."""
import torch
from medvlp.adaptor import Adaptor, AdaptorConfig, load_towers
from medvlp.models import DEFAULT_CORPUS, DualEncoder, create_model
from medvlp.segment import Segmenter
from medvlp.zeroshot import PromptLearner


def _leftovers(folder) -> list:
    "Temporary or replaced folders that a save left behind."
    return [p.name for p in folder.rglob('.*') if '.tmp-' in p.name or '.old-' in p.name]


def test_every_artefact_round_trips(tmp_path):
    torch.manual_seed(0)
    model = create_model('tiny-resnet', 'tiny-bert', texts=DEFAULT_CORPUS, emb_dim=16).eval()
    x = torch.rand(2, 1, 64, 64)                                   # the tiny towers read one channel
    model.save_pretrained(tmp_path / 'model')
    model.save_pretrained(tmp_path / 'model')                      # over an existing folder, as a resumed run does
    back = DualEncoder.from_pretrained(tmp_path / 'model').eval()
    with torch.no_grad(): assert torch.equal(back.encode_image(x), model.encode_image(x))

    image, text, specs = load_towers(AdaptorConfig(model_dir=str(tmp_path / 'model'), dim=32, num_layers=1, num_heads=2))
    ad = Adaptor(AdaptorConfig(dim=32, num_layers=1, num_heads=2), image.out_dim, text.out_dim, image, text, specs).eval()
    ad.save_pretrained(tmp_path / 'adaptor')
    ad2 = Adaptor.from_pretrained(tmp_path / 'adaptor')
    with torch.no_grad(): torch.testing.assert_close(ad2.encode_image(x), ad.encode_image(x), rtol=0, atol=1e-6)

    seg = Segmenter(image, ad.fusion, kind='unet', image_size=64).eval()
    seg.save_pretrained(tmp_path / 'head', dict(adaptor_dir=str(tmp_path / 'adaptor')))
    seg2 = Segmenter.from_pretrained(tmp_path / 'head')             # its tower rebuilt from the adaptor folder it names
    with torch.no_grad(): torch.testing.assert_close(seg2(x), seg(x), rtol=0, atol=1e-6)

    pl = PromptLearner(model, ['Edema', 'Cardiomegaly'], n_ctx=4, init='')
    with torch.no_grad(): pl.ctx.add_(1.0)                          # not the initial context
    pl.save_pretrained(tmp_path / 'model', note='test')
    pl2 = PromptLearner.from_pretrained(tmp_path / 'model', back)
    with torch.no_grad(): assert torch.equal(pl2(), pl())
    assert _leftovers(tmp_path) == []
