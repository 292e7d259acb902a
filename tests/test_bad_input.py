"""Bad input: undecodable images are skipped (row, path, reason) when asked and named in the error otherwise; the
counts of every reader add up (rows_in = used + skipped + held_out); unparsable tables name the file."""
import io, json, shutil, struct, zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from medvlp.data import DataError, Studies, Study, load_image, read_pairs_folder, read_table, subsample, write_test_dicom
from medvlp.datasets import load_dataset

# file name -> a phrase the reason must hold
BAD = {'empty.png': 'UnidentifiedImageError', 'half.jpg': 'image file is truncated', 'text.dcm': 'InvalidDicomError',
       'nopix.dcm': 'DICOM without pixel data', 'bomb.png': 'decompression bomb'}
GOOD = ['grey.png', 'colour.jpg', 'ok.dcm']


def bomb_png(path, w, h):
    "A valid 1x1 PNG whose header (IHDR, CRC fixed) claims `w` x `h` pixels."
    b = io.BytesIO(); Image.fromarray(np.zeros((1, 1), np.uint8)).save(b, 'PNG'); b = bytearray(b.getvalue())
    b[16:24] = struct.pack('>II', w, h); b[29:33] = struct.pack('>I', zlib.crc32(bytes(b[12:29])))
    Path(path).write_bytes(bytes(b))


def write_images(d: Path):
    "The good (grey PNG, colour JPEG, DICOM) and bad images, written into `d`."
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 32), dtype=np.uint8)).save(d / 'grey.png')
    Image.fromarray(rng.integers(0, 255, (40, 32, 3), dtype=np.uint8)).save(d / 'colour.jpg', quality=90)
    write_test_dicom(d / 'ok.dcm', rng.integers(0, 4000, (32, 32)))
    (d / 'empty.png').write_bytes(b'')
    b = (d / 'colour.jpg').read_bytes(); (d / 'half.jpg').write_bytes(b[:len(b) // 2])
    (d / 'text.dcm').write_text('Patient report, not a DICOM file.\n')
    ds = pydicom.dcmread(write_test_dicom(d / 'nopix.dcm', np.zeros((16, 16))))
    del ds.PixelData; ds.save_as(d / 'nopix.dcm')
    bomb_png(d / 'bomb.png', 100_000, 100_000)
    return d


def check_identity(st):
    c = st.counts()
    assert c['rows_in'] == c['used'] + c['skipped'] + c['held_out'], c
    return c


@pytest.fixture
def table(tmp_path):
    "A CSV whose rows (2, 3, ... as a person counts lines) alternate good and bad images."
    write_images(tmp_path / 'img')
    names = [n for pair in zip(GOOD + GOOD[:2], BAD) for n in pair]  # good, bad, good, bad, ...
    pd.DataFrame({'image': [f'img/{n}' for n in names], 'text': [f'Report {i}.' for i in range(len(names))],
                  'patient': [f'p{i}' for i in range(len(names))]}).to_csv(tmp_path / 't.csv', index=False)
    return tmp_path / 't.csv', names


def test_table_skips_bad_images_with_row_path_reason(table, tmp_path):
    path, names = table
    st = read_table(path, on_bad='skip', log=tmp_path / 'skipped.csv')
    want = [(i + 2, str(tmp_path / 'img' / n)) for i, n in enumerate(names) if n in BAD]
    assert [(r, p) for r, p, _ in st.skipped] == want
    for (_, p, reason), n in zip(st.skipped, [n for n in names if n in BAD]):
        assert BAD[n] in reason and f'{path}: row ' in reason and p in reason, (n, reason)
    assert sorted(Path(s.images[0]).name for s in st) == sorted(GOOD + GOOD[:2])
    assert check_identity(st) == dict(rows_in=10, used=5, skipped=5, held_out=0)
    log = pd.read_csv(tmp_path / 'skipped.csv')
    assert list(log.columns) == ['row', 'path', 'reason'] and log.row.tolist() == [r for r, _ in want]
    for s in st: load_image(s.images[0])  # what was kept decodes


@pytest.mark.parametrize('bad', list(BAD))
def test_table_error_names_file_row_and_path(tmp_path, bad):
    write_images(tmp_path / 'img')
    pd.DataFrame({'image': ['img/grey.png', f'img/{bad}'], 'text': ['a', 'b']}).to_csv(tmp_path / 't.csv', index=False)
    if bad == 'half.jpg':  # its header reads: without on_bad='skip' only the header is checked (cheap) ...
        st = read_table(tmp_path / 't.csv')
        assert len(st) == 2
        with pytest.raises(DataError, match='half.jpg: cannot read image'): load_image(st[1].images[0])  # ... and training names it
        return
    with pytest.raises(DataError) as e: read_table(tmp_path / 't.csv')
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 't.csv'}: row 3: {tmp_path / 'img' / bad}: ") and BAD[bad] in msg, msg
    assert e.value.path == str(tmp_path / 'img' / bad)


def test_check_files_off_reads_without_opening(table):
    path, names = table
    assert len(read_table(path, check_files=False)) == len(names)


def test_pairs_folder_skips_bad_images(tmp_path):
    root = tmp_path / 'pairs'
    for sp, files in [('train', GOOD[:2] + list(BAD)), ('valid', ['grey.png', 'half.jpg'])]:
        write_images(root / sp / 'imgs')
        (root / sp / 'img_text_pair.json').write_text(json.dumps([{'img': f, 'caption': f'Caption {f}.'} for f in files]))
    st = read_pairs_folder(root, 'train', on_bad='skip')
    assert [(r, Path(p).name) for r, p, _ in st.skipped] == [(i + 2, n) for i, n in enumerate(BAD)]
    assert all(BAD[Path(p).name] in reason for _, p, reason in st.skipped)
    assert check_identity(st) == dict(rows_in=7, used=2, skipped=5, held_out=0)
    with pytest.raises(DataError, match=r"img_text_pair.json: item 2: .*empty.png: cannot read image"):
        read_pairs_folder(root, 'train')
    st = load_dataset('pairs_folder', root, None, on_bad='skip', log=tmp_path / 'skipped.csv')
    assert check_identity(st) == dict(rows_in=9, used=3, skipped=6, held_out=0)
    assert {s.split for s in st} == {'train', 'valid'}
    assert len(pd.read_csv(tmp_path / 'skipped.csv')) == 6
    st = load_dataset('pairs_folder', root, 'valid', on_bad='skip')
    assert check_identity(st) == dict(rows_in=2, used=1, skipped=1, held_out=0)


def test_csv_table_automatic_split_counts(table):
    path, names = table
    st = load_dataset('csv', path, 'train', patient='patient', fracs=(0.5, 0.5, 0), on_bad='skip')
    c = check_identity(st)
    assert c['rows_in'] == len(names) and c['skipped'] == len(BAD) and c['held_out'] > 0 and c['used'] > 0, c
    everything = load_dataset('csv', path, None, patient='patient', fracs=(0.5, 0.5, 0), on_bad='skip')
    assert c['held_out'] == sum(s.split != 'train' for s in everything)
    assert check_identity(subsample(st, 0.5, seed=0))['rows_in'] == len(names)


def test_synthcxr_counts(synth_root):
    st = load_dataset('synthcxr', synth_root, 'train')
    c = check_identity(st)
    n = len(pd.read_csv(synth_root / 'studies.csv'))
    assert c['rows_in'] == n and c['skipped'] == 0 and 0 < c['held_out'] < n and c['used'] == len(st), c
    assert check_identity(load_dataset('synthcxr', synth_root, None)) == dict(rows_in=n, used=n, skipped=0, held_out=0)


def test_unparsable_tables_name_the_file(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / 'a.png')
    df = pd.DataFrame({'image': ['a.png'], 'text': ['Éffusion, pleural.']})
    df.to_csv(tmp_path / 'semi.csv', index=False, sep=';')
    with pytest.raises(DataError, match=r"semi.csv: missing column\(s\).*is the separator ';'"): read_table(tmp_path / 'semi.csv')
    assert read_table(tmp_path / 'semi.csv', sep=';')[0].text == 'Éffusion, pleural.'
    assert load_dataset('csv', tmp_path / 'semi.csv', None, sep=';')[0].text == 'Éffusion, pleural.'
    (tmp_path / 'latin.csv').write_bytes(df.to_csv(index=False).encode('latin-1'))
    with pytest.raises(DataError, match=r"latin.csv: not utf-8 text"): read_table(tmp_path / 'latin.csv')
    with pytest.raises(DataError, match=r"latin.csv: not utf-8 text"): load_dataset('csv', tmp_path / 'latin.csv', None)
    assert load_dataset('csv', tmp_path / 'latin.csv', None, encoding='latin-1')[0].text == 'Éffusion, pleural.'
    (tmp_path / 'bad.jsonl').write_text('{"image": "a.png", "text": \n')
    with pytest.raises(DataError, match='bad.jsonl: cannot parse the table'): read_table(tmp_path / 'bad.jsonl')
    (tmp_path / 'img_text_pair.json').write_text('[{"img": ')
    (tmp_path / 'p' / 'train').mkdir(parents=True); shutil.move(tmp_path / 'img_text_pair.json', tmp_path / 'p' / 'train')
    with pytest.raises(DataError, match='img_text_pair.json: not a JSON file'): read_pairs_folder(tmp_path / 'p')


def test_no_pickle_read(tmp_path):
    pd.DataFrame({'image': ['a.png'], 'text': ['t']}).to_pickle(tmp_path / 't.pkl')
    with pytest.raises(DataError, match="unsupported table type '.pkl'"): read_table(tmp_path / 't.pkl')


def test_studies_counts_default():
    st = Studies([Study(['a.png'], ['t']), Study(['b.png'], ['u'])], [(3, 'x', 'bad')], held_out=4)
    assert st.counts() == dict(rows_in=7, used=2, skipped=1, held_out=4)
    assert Studies([*st, st[0]]).counts() == dict(rows_in=3, used=3, skipped=0, held_out=0, duplicates=1)
