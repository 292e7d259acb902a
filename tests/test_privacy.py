"""Privacy: no identifying DICOM header field (nor a planted table date) reaches a run's outputs, logs or printed lines."""
import json
from pathlib import Path

from medvlp.datasets import PLANTED_PHI, load_dataset, preprocess, write_example

DICOM_SETS = ['rsna_pneumonia', 'siim_pneumothorax', 'vindr_cxr', 'cbis_ddsm', 'embed']


def planted(text): return [v for v in PLANTED_PHI.values() if v in text]


def scan(folder):
    "{file: planted strings found} for every file under `folder` (bytes read as latin-1, so binary files are scanned too)."
    return {str(p): planted(p.read_bytes().decode('latin-1')) for p in Path(folder).rglob('*') if p.is_file()}


def test_no_planted_identifiers_in_outputs(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv('MEDVLP_CACHE', str(tmp_path / 'cache'))
    data, out = tmp_path / 'data', tmp_path / 'out'
    for name in DICOM_SETS + ['mimic_cxr']:
        root = write_example(name, data / name)
        st = load_dataset(name, root, None, on_bad='skip', log=out / f'{name}_skipped.csv')
        if name == 'rsna_pneumonia':  # a corrupt DICOM whose header (with the planted fields) still parses
            f = Path(st[0].images[0]); b = f.read_bytes(); f.write_bytes(b[:len(b) - 300])
        pp = preprocess(st, size=16, workers=2, cache=out / 'prep', on_bad='skip', log=out / f'{name}_prep_skipped.csv')
        print(name, st, pp, pp.skipped)
        (out / f'{name}_studies.json').write_text(json.dumps([vars(s) for s in pp], default=str))
        if name == 'rsna_pneumonia': assert len(pp.skipped) == 1 and len(pp) == len(st) - 1
    printed = capfd.readouterr()
    # the fixtures do carry the planted fields (so the scan below can fail) ...
    assert set(sum(scan(data).values(), [])) == set(PLANTED_PHI.values())
    assert (out / 'rsna_pneumonia_prep_skipped.csv').exists()
    # ... and no output, cache file, log or printed line does
    assert {k: v for k, v in scan(out).items() if v} == {}
    assert {k: v for k, v in scan(tmp_path / 'cache').items() if v} == {}
    assert planted(printed.out + printed.err) == []
    assert len(list((out / 'prep').rglob('*.png'))) > 40
