"""A CSV that real data fits (issue 12 item 4): a categorical label column mapped to one-hot classes (with a value ->
class table), a row filter counted in `filtered`, images under an `image_root`, and the automatic patient-level
split recorded on the studies."""
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medvlp.data import DataError, read_table
from medvlp.datasets import SPLITS, hash_split, load_dataset

MAP = {'COVID-19': 'COVID-19', 'covid-19': 'COVID-19', 'Pneumonia': 'Pneumonia', 'normal': 'No Finding'}
ALLOWED = "allowed values: ['COVID-19', 'covid-19', 'Pneumonia', 'normal']"


@pytest.fixture
def table(tmp_path):
    "tables/meta.csv (rows 2-9 as a person counts lines) with its images in imgs/; row 9's path is absolute."
    imgs, tab = tmp_path / 'imgs', tmp_path / 'tables'
    imgs.mkdir(); tab.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        shape = (12, 10, 3) if i % 2 else (12, 10)  # colour and grey
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(imgs / f'r{i}.png')
    pd.DataFrame({
        'image': [f'r{i}.png' for i in range(7)] + [str(imgs / 'r7.png')],
        'text': [f'Report {i}.' for i in range(8)],
        'patient': ['p0', 'p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6'],
        'finding': ['COVID-19', ' covid-19 ', 'Pneumonia', 'normal', '', 'Pneumonia', 'normal', 'normal'],
        'modality': ['X-ray'] * 5 + ['CT', 'CT', ' X-ray '],  # compared stripped
    }).to_csv(tab / 'meta.csv', index=False)
    return tab / 'meta.csv', imgs


def opts(imgs, **kw):
    "The data_options a notebook would pass: categorical labels through MAP, X-rays only, images under `imgs`."
    return {**dict(image_root=imgs, patient='patient', label_column='finding', label_map=MAP,
                   where={'modality': 'X-ray'}), **kw}


def test_labels_one_hot_per_row(table):
    csv, imgs = table
    st = load_dataset('csv', csv, None, on_bad='skip', **opts(imgs))
    assert [s.text for s in st] == ['Report 0.', 'Report 1.', 'Report 2.', 'Report 3.', 'Report 7.']
    one = {'COVID-19': 0.0, 'No Finding': 0.0, 'Pneumonia': 0.0}
    want = ['COVID-19', 'COVID-19', 'Pneumonia', 'No Finding', 'No Finding']
    assert [s.labels for s in st] == [{**one, c: 1.0} for c in want]


def test_label_table(table):
    csv, imgs = table
    st = load_dataset('csv', csv, None, on_bad='skip', **opts(imgs))
    t = st.label_table
    assert list(t.columns) == ['value', 'class', 'n']
    # the map's values first (with the rows after the filter that hold them), then the value it lacks
    assert t.values.tolist() == [['COVID-19', 'COVID-19', 1], ['covid-19', 'COVID-19', 1], ['Pneumonia', 'Pneumonia', 1],
                                 ['normal', 'No Finding', 2], ['', '', 1]]
    st = read_table(csv, root=imgs, label_column='finding', on_bad='skip')  # no map: each distinct value is a class
    assert st.label_table.values.tolist() == [['COVID-19', 'COVID-19', 1], ['Pneumonia', 'Pneumonia', 2],
                                              ['covid-19', 'covid-19', 1], ['normal', 'normal', 3], ['', '', 1]]


def test_filter_counts_and_invariant(table):
    csv, imgs = table
    st = load_dataset('csv', csv, None, on_bad='skip', **opts(imgs))
    c = st.counts()
    assert c == dict(rows_in=8, used=5, skipped=1, held_out=0, filtered=2)
    tr = load_dataset('csv', csv, 'train', on_bad='skip', **opts(imgs))
    c = tr.counts()
    assert c['filtered'] == 2 and c['held_out'] == 5 - len(tr) and c['used'] == len(tr)
    assert c['rows_in'] == c['used'] + c['skipped'] + c['held_out'] + c['filtered'] == 8
    both = read_table(csv, root=imgs, where={'modality': ['X-ray', ' CT ']})
    assert both.counts() == dict(rows_in=8, used=8, skipped=0, held_out=0, filtered=0)
    assert 'filtered' not in read_table(csv, root=imgs).counts()  # no filter, no filtered count
    ct = read_table(csv, root=imgs, where={'modality': 'CT', 'finding': 'normal'})
    assert [s.text for s in ct] == ['Report 6.'] and ct.counts()['filtered'] == 7


def test_image_root(table, tmp_path):
    csv, imgs = table
    st = read_table(csv, root=imgs)
    assert [s.images for s in st] == [[str(imgs / f'r{i}.png')] for i in range(8)]  # row 9 was absolute already
    st = load_dataset('csv', csv, None, image_root=imgs, masks={'lesion': 'image'}, check_files=False)
    assert st[1].masks == {'lesion': str(imgs / 'r1.png')}
    with pytest.raises(DataError) as e: read_table(csv)  # default: the table's folder
    assert str(e.value) == f"{csv}: row 2: {tmp_path / 'tables' / 'r0.png'}: image file not found"
    assert e.value.path == str(tmp_path / 'tables' / 'r0.png')


def test_unknown_filter_column(table):
    csv, imgs = table
    with pytest.raises(DataError) as e: load_dataset('csv', csv, None, image_root=imgs, where={'site': 'A'})
    assert "missing column(s) ['site']; the table has ['image', 'text', 'patient', 'finding', 'modality']" in str(e.value)


def test_unmapped_value_names_row_and_allowed_values(table):
    csv, imgs = table
    with pytest.raises(DataError) as e: load_dataset('csv', csv, None, **opts(imgs))
    assert str(e.value) == f"{csv}: row 6, column 'finding': no label (blank or NaN); {ALLOWED}"
    with pytest.raises(DataError) as e:  # a value the map sends to None names no class either
        load_dataset('csv', csv, None, **opts(imgs, label_map={**MAP, 'normal': None, '': 'No Finding'}))
    assert str(e.value) == (f"{csv}: row 5, column 'finding': value 'normal' maps to no class; "
                            "allowed values: ['COVID-19', 'covid-19', 'Pneumonia', '']")
    with pytest.raises(DataError) as e: read_table(csv, root=imgs, label_column='finding')  # no map: blank is no class
    assert str(e.value) == (f"{csv}: row 6, column 'finding': no label (blank or NaN); "
                            "allowed values: ['COVID-19', 'Pneumonia', 'covid-19', 'normal']")


def test_skip_records_the_reason(table, tmp_path):
    csv, imgs = table
    st = load_dataset('csv', csv, None, on_bad='skip', log=tmp_path / 'skipped.csv', **opts(imgs))
    reason = f"{csv}: row 6, column 'finding': no label (blank or NaN); {ALLOWED}"
    assert st.skipped == [(6, str(csv), reason)]
    assert pd.read_csv(tmp_path / 'skipped.csv', keep_default_na=False).values.tolist() == [[6, str(csv), reason]]


def test_label_sep_several_classes_in_a_cell(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / 'a.png')
    pd.DataFrame({'image': ['a.png'] * 4, 'text': list('abcd'),
                  'Finding Labels': ['Atelectasis|Effusion', 'Effusion', 'No Finding', ' Atelectasis | Effusion|'],
                  'No Finding': ['0', '0', '1', '0']}
                 ).to_csv(tmp_path / 'cx14.csv', index=False)
    st = read_table(tmp_path / 'cx14.csv', label_column='Finding Labels', label_sep='|')
    assert [s.labels for s in st] == [{'Atelectasis': 1.0, 'Effusion': 1.0, 'No Finding': 0.0},
                                      {'Atelectasis': 0.0, 'Effusion': 1.0, 'No Finding': 0.0},
                                      {'Atelectasis': 0.0, 'Effusion': 0.0, 'No Finding': 1.0},
                                      {'Atelectasis': 1.0, 'Effusion': 1.0, 'No Finding': 0.0}]
    assert st.label_table.values.tolist() == [['Atelectasis', 'Atelectasis', 2], ['Effusion', 'Effusion', 3],
                                              ['No Finding', 'No Finding', 1]]
    mapped = read_table(tmp_path / 'cx14.csv', label_column='Finding Labels', label_sep='|',
                        label_map={'Atelectasis': 'Atelectasis', ' Effusion ': 'Pleural Effusion', 'No Finding': 'No Finding'})
    assert mapped[0].labels == {'Atelectasis': 1.0, 'No Finding': 0.0, 'Pleural Effusion': 1.0}  # map keys stripped too
    with pytest.raises(DataError, match=r"'Finding Labels' has classes \['No Finding'\] that are also label columns"):
        read_table(tmp_path / 'cx14.csv', labels=['No Finding'], label_column='Finding Labels', label_sep='|')
    whole = read_table(tmp_path / 'cx14.csv', label_column='Finding Labels')  # no sep: the cell is one class
    assert whole[0].labels['Atelectasis|Effusion'] == 1.0 and sum(whole[0].labels.values()) == 1.0


def test_split_counts_sum_to_rows_used(table):
    csv, imgs = table
    st = load_dataset('csv', csv, None, on_bad='skip', fracs=(0.5, 0.25, 0.25), **opts(imgs))
    expect = Counter(hash_split(p, (0.5, 0.25, 0.25)) for p in ['p0', 'p0', 'p1', 'p2', 'p6'])
    assert st.split_counts == {sp: expect[sp] for sp in SPLITS}
    assert sum(st.split_counts.values()) == len(st) == st.counts()['used'] == 5
    assert st.split_counts == {sp: sum(s.split == sp for s in st) for sp in SPLITS}
    for sp in (sp for sp in SPLITS if expect[sp]):  # one split read alone: the same report, and as many rows as it says
        one = load_dataset('csv', csv, sp, on_bad='skip', fracs=(0.5, 0.25, 0.25), **opts(imgs))
        assert one.split_counts == st.split_counts and len(one) == st.split_counts[sp]
    df = pd.read_csv(csv, dtype=str, keep_default_na=False).assign(split=['train', 'val', 'test', 'train'] * 2)
    df.to_csv(csv.parent / 'with_split.csv', index=False)
    st = load_dataset('csv', csv.parent / 'with_split.csv', None, image_root=imgs)
    assert st.split_counts == {'train': 4, 'valid': 2, 'test': 2}
