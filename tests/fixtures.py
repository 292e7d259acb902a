"""Tiny example folders in each dataset's published layout, for the tests and the notebooks' examples (not part of
the library): `write_example(name, root)` writes a few rows and 16-32 px images in exactly the layout the adapter in
`medvlp.datasets` expects; with `phi=True` every DICOM header carries `PLANTED_PHI` (and the tables' date columns a
planted date), so that tests can check none of it reaches any output. Notebooks import it with `tests/` on the path."""
import hashlib, json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from medvlp.data import CHEXPERT5, CHEXPERT_LABELS, write_test_dicom
from medvlp.datasets import VINDR_LABELS, _ROCO, DATASETS, rle_encode


PLANTED_PHI = dict(PatientName='PLANTED^NAME', PatientID='PLANTED-ID-123', PatientBirthDate='19010203',
                   InstitutionName='PLANTED GENERAL HOSPITAL', StudyDate='19990909', AccessionNumber='PLANTEDACC77',
                   ReferringPhysicianName='PLANTED^DOCTOR')

def _pixels(i, h=24, w=20) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((np.sin(x / 3 + i) + np.cos(y / 4 - i) + 2) * 16000).astype(np.uint16)

def _jpg(path, i, h=24, w=20, rgb=False):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    a = (_pixels(i, h, w) >> 8).astype(np.uint8)
    Image.fromarray(np.stack([a, 255 - a, a // 2], -1) if rgb else a).save(path)

def _dcm(path, i, phi, h=32, w=32):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_test_dicom(path, _pixels(i, h, w), **(PLANTED_PHI if phi else {}))

def _uid(*k): return str(int(hashlib.sha256(repr(k).encode()).hexdigest()[:12], 16))

def _ex_mimic_cxr(root, phi):
    date = PLANTED_PHI['StudyDate'] if phi else '21800506'
    studies = [  # subject, study, [(dicom, view)], split, labels, report
        ('10000032', '50414267', [('LATERAL', 1), ('PA', 0)], 'train', {'Cardiomegaly': '1.0', 'Edema': '-1.0', 'Pneumothorax': '0.0'},
         ' FINAL REPORT\n INDICATION: ___ with dyspnea.\n\n FINDINGS:\n The heart is enlarged. Possible mild\n edema.\n'
         ' No pneumothorax.\n\n IMPRESSION: Cardiomegaly.\n'),
        ('10000032', '53189527', [('AP', 2)], 'train', {'No Finding': '1.0'},
         ' FINAL REPORT\n COMPARISON: None.\n\n IMPRESSION: No acute cardiopulmonary process.\n'),
        ('10000764', '57375967', [('PA', 3), ('LL', 4)], 'validate', {'Pleural Effusion': '1.0', 'Pneumothorax': '0.0'},
         ' FINAL REPORT\n FINDINGS: Small right pleural effusion. No pneumothorax.\n'),
        ('10000898', '50771383', [('PA', 5)], 'test', {'Edema': '1.0'},
         ' FINAL REPORT\n INDICATION: cough\n REPORT: Mild pulmonary edema. Small bilateral effusions.\n')]
    meta, lab, spl = [], [], []
    for sub, sid, views, split, labels, report in studies:
        d = root/'files'/f'p{sub[:2]}'/f'p{sub}'/f's{sid}'
        for view, i in views:
            dic = '-'.join(_uid(sub, sid, i, k)[:8] for k in range(5))
            _jpg(d/f'{dic}.jpg', i)
            meta.append(dict(dicom_id=dic, subject_id=sub, study_id=sid, PerformedProcedureStepDescription='CHEST (PA AND LAT)',
                             ViewPosition=view, Rows=24, Columns=20, StudyDate=date, StudyTime='120000.000',
                             ProcedureCodeSequence_CodeMeaning='CHEST (PA AND LAT)',
                             ViewCodeSequence_CodeMeaning='postero-anterior', PatientOrientationCodeSequence_CodeMeaning='Erect'))
            spl.append(dict(dicom_id=dic, study_id=sid, subject_id=sub, split=split))
        lab.append(dict(subject_id=sub, study_id=sid, **{k: labels.get(k, '') for k in sorted(CHEXPERT_LABELS)}))
        (d.parent/f's{sid}.txt').write_text(report)
    pd.DataFrame(meta).to_csv(root/'mimic-cxr-2.0.0-metadata.csv.gz', index=False)
    pd.DataFrame(lab).to_csv(root/'mimic-cxr-2.0.0-chexpert.csv', index=False)
    pd.DataFrame(spl).to_csv(root/'mimic-cxr-2.0.0-split.csv', index=False)

def _ex_chexpert(root, phi):
    rows = {'train': [  # patient, study, views, labels
        (1, 1, ['frontal', 'lateral'], {'Cardiomegaly': '1.0', 'Edema': '0.0'}),
        (1, 2, ['frontal'], {'No Finding': '1.0'}),
        (2, 1, ['frontal'], {'Edema': '1.0', 'Pleural Effusion': '1.0'}),
        (3, 1, ['frontal'], {'Atelectasis': '1.0', 'Support Devices': '1.0'}),
        (4, 1, ['frontal'], {'Consolidation': '-1.0', 'Pneumonia': '1.0'}),
        (5, 1, ['frontal'], {'Pleural Effusion': '1.0', 'Cardiomegaly': '0.0'}),
        (6, 1, ['frontal', 'lateral'], {'Edema': '1.0'}),
        (7, 1, ['frontal'], {'Consolidation': '1.0', 'Atelectasis': ''}),
        (8, 1, ['lateral'], {'Cardiomegaly': '1.0'}),
        (9, 1, ['frontal'], {'Cardiomegaly': '1.0', 'Lung Opacity': '-1.0'})],
        'valid': [(64541, 1, ['frontal'], {'Cardiomegaly': '1.0', **{k: '0.0' for k in CHEXPERT5[2:]}}),
                  (64542, 1, ['frontal', 'lateral'], {'No Finding': '1.0'})]}
    for split, rs in rows.items():
        recs = []
        for pat, st, views, labels in rs:
            for v, view in enumerate(views, 1):
                rel = f'{split}/patient{pat:05d}/study{st}/view{v}_{view}.jpg'
                _jpg(root/rel, pat + v)
                recs.append({'Path': f'CheXpert-v1.0/{rel}', 'Sex': 'Female', 'Age': 60 + pat,
                             'Frontal/Lateral': view.capitalize(), 'AP/PA': 'AP' if view == 'frontal' else '',
                             **{k: labels.get(k, '') for k in CHEXPERT_LABELS}})
        pd.DataFrame(recs).to_csv(root/f'{split}.csv', index=False)

def _rsna_ids(n): return [f'{_uid("rsna", i)[:8]}-{_uid("rsna", i, 1)[:4]}-4e49-80ba-{_uid("rsna", i, 2)[:12]}' for i in range(n)]

def _ex_rsna_pneumonia(root, phi):
    recs = []
    for i, pid in enumerate(_rsna_ids(40)):
        _dcm(root/'stage_2_train_images'/f'{pid}.dcm', i, phi)
        boxes = [] if i % 4 else [(4.0, 6.0, 8.0, 10.0)] + ([(18.0, 2.0, 6.0, 5.0)] if i % 8 == 0 else [])
        recs += [dict(patientId=pid, x=x, y=y, width=w, height=h, Target=1) for x, y, w, h in boxes] or \
                [dict(patientId=pid, x='', y='', width='', height='', Target=0)]
    pd.DataFrame(recs).to_csv(root/'stage_2_train_labels.csv', index=False)

def _siim_mask(i, h=32, w=32, region=0):
    m = np.zeros((h, w), np.uint8)
    if region == 0: m[3 + i % 5:12, 2:7] = 1
    else: m[20:26, 22:30] = 1
    return m

def _ex_siim_pneumothorax(root, phi):
    lines = ['ImageId, EncodedPixels']  # the published header has a space before EncodedPixels
    for i in range(12):
        iid = f'1.2.276.0.7230010.3.1.4.8323329.{1000 + i}.1517875{i:03d}.{_uid("siim", i)[:6]}'
        study, series = (f'1.2.276.0.7230010.3.1.{k}.8323329.{1000 + i}.1517875{i:03d}.{_uid("siim", i, k)[:6]}' for k in (2, 3))
        _dcm(root/'dicom-images-train'/study/series/f'{iid}.dcm', i, phi)
        if i % 3: lines.append(f'{iid}, -1')
        else: lines += [f'{iid}, {rle_encode(_siim_mask(i, region=r))}' for r in ((0, 1) if i == 0 else (0,))]
    (root/'train-rle.csv').write_text('\n'.join(lines) + '\n')

def _ex_vindr_cxr(root, phi):
    def row(iid, pos, **kw): return dict(image_id=iid, **kw, **{k: int(k in pos) for k in VINDR_LABELS})
    reads = [  # per train image: the positive labels of radiologists R1..R3
        [['Cardiomegaly'], ['Cardiomegaly', 'Aortic enlargement'], ['No finding']],
        [['No finding'], ['No finding'], ['No finding']],
        [['Pleural effusion'], ['No finding'], ['No finding']],
        [['Nodule/Mass', 'Lung tumor'], ['Nodule/Mass'], ['Nodule/Mass']]]
    tr = []
    for i, rads in enumerate(reads):
        iid = _uid('vindr', i) + 'a' * 4
        _dcm(root/'train'/f'{iid}.dicom', i, phi)
        tr += [row(iid, pos, rad_id=f'R{8 + r}') for r, pos in enumerate(rads)]
    (root/'annotations').mkdir(parents=True, exist_ok=True)
    pd.DataFrame(tr).to_csv(root/'annotations'/'image_labels_train.csv', index=False)
    te = []
    for i, pos in enumerate([['Pneumothorax'], ['No finding']]):
        iid = _uid('vindr-test', i) + 'b' * 4
        _dcm(root/'test'/f'{iid}.dicom', 10 + i, phi)
        te.append(row(iid, pos))
    pd.DataFrame(te).rename(columns={'Other diseases': 'Other disease'}).to_csv(root/'annotations'/'image_labels_test.csv', index=False)

def _ex_covidx(root, phi):
    files = {'train': [('101', 'positive', 'sirm'), ('101', 'positive', 'sirm'), ('102', 'negative', 'rsna'),
                       ('103', 'negative', 'rsna'), ('104', 'positive', 'bimcv'), ('105', 'negative', 'ricord')],
             'val': [('201', 'positive', 'bimcv'), ('202', 'negative', 'rsna')],
             'test': [('301', 'positive', 'ricord'), ('302', 'negative', 'rsna')]}
    for split, rs in files.items():
        lines = []
        for k, (pid, cls, src) in enumerate(rs):
            fn = f'{src}-{pid}-{k}.png'
            _jpg(root/split/fn, int(pid) + k)
            lines.append(f'{pid} {fn} {cls} {src}')
        (root/f'{split}.txt').write_text('\n'.join(lines) + '\n')

def _ex_roco(root, phi):
    caps = {'train': ['CT scan of the abdomen showing a large hepatic mass.', 'Chest X-ray with right upper lobe consolidation.',
                      'Axial MRI showing a ring-enhancing lesion.'],
            'valid': ['Ultrasound of the gallbladder with stones.'], 'test': ['Plain film of the knee, no fracture.']}
    n = 0
    for split, cs in caps.items():
        folder, csv = _ROCO[split]
        d = root/'data'/folder/'radiology'; recs = []
        for c in cs:
            n += 1; name = f'PMC{4000000 + n}_fig{n}.jpg'
            _jpg(d/'images'/name, n, rgb=True)
            recs.append(dict(id=f'ROCO_{n:05d}', name=name, caption=c))
        pd.DataFrame(recs).to_csv(d/csv, index=False)

def _ex_cbis_ddsm(root, phi):
    rows = {  # (file kind, split): [(patient, side, view, pathology, abnormality id, tcia layout?)]
        ('mass', 'train'): [('P_00001', 'LEFT', 'CC', 'MALIGNANT', 1, True), ('P_00001', 'LEFT', 'CC', 'BENIGN', 2, True),
                            ('P_00004', 'LEFT', 'MLO', 'BENIGN', 1, False)],
        ('calc', 'train'): [('P_00005', 'RIGHT', 'CC', 'BENIGN_WITHOUT_CALLBACK', 1, True)],
        ('mass', 'test'): [('P_00016', 'LEFT', 'CC', 'MALIGNANT', 1, True)],
        ('calc', 'test'): [('P_00038', 'LEFT', 'CC', 'BENIGN', 1, False)]}
    for (kind, split), rs in rows.items():
        recs = []
        for k, (pat, side, view, path, ab, tcia) in enumerate(rs):
            subj = f'{kind.capitalize()}-{"Training" if split == "train" else "Test"}_{pat}_{side}_{view}'
            u1, u2 = (f'1.3.6.1.4.1.9590.100.1.2.{_uid(subj, j)}' for j in (1, 2))
            rel = f'{subj}/{u1}/{u2}/000000.dcm'
            f = root/'CBIS-DDSM'/subj/'07-20-2016-DDSM-74994'/'1.000000-full mammogram images-24515'/'1-1.dcm' if tcia else root/rel
            if not f.exists(): _dcm(f, k + len(subj), phi)
            r = {'patient_id': pat, 'breast_density' if kind == 'mass' else 'breast density': 3, 'left or right breast': side,
                 'image view': view, 'abnormality id': ab, 'abnormality type': 'mass' if kind == 'mass' else 'calcification'}
            r.update({'mass shape': 'IRREGULAR', 'mass margins': 'SPICULATED'} if kind == 'mass'
                     else {'calc type': 'PLEOMORPHIC', 'calc distribution': 'CLUSTERED'})
            r.update({'assessment': 4, 'pathology': path, 'subtlety': 3, 'image file path': rel,
                      'cropped image file path': f'{subj}_{ab}/{u1}/{u2}/000000.dcm',
                      'ROI mask file path': f'{subj}_{ab}/{u1}/{u2}/000001.dcm\n'})
            recs.append(r)
        pd.DataFrame(recs).to_csv(root/f'{kind}_case_description_{split}_set.csv', index=False)

def _ex_embed(root, phi):
    date = PLANTED_PHI['StudyDate'] if phi else '2016-03-04'
    clin = [  # empi, acc, side, asses, tissueden
        ('11111111', '90000001', 'L', 'N', '2'), ('11111111', '90000001', 'R', 'B', '2'),
        ('22222222', '90000002', 'B', 'S', '4'), ('33333333', '90000003', 'B', 'A', '5')]
    (root/'tables').mkdir(parents=True, exist_ok=True)
    pd.DataFrame([dict(empi_anon=e, acc_anon=a, study_date_anon=date, desc='MG Screen Bilat w/CAD', side=s, asses=b,
                       tissueden=t, path_severity='') for e, a, s, b, t in clin]).to_csv(root/'tables'/'EMBED_OpenData_clinical.csv', index=False)
    imgs = [('11111111', '90000001', 'L', 'CC', '2D'), ('11111111', '90000001', 'L', 'MLO', '2D'),
            ('11111111', '90000001', 'R', 'CC', '2D'), ('11111111', '90000001', 'R', 'CC', 'cview'),
            ('22222222', '90000002', 'L', 'CC', '2D'), ('22222222', '90000002', 'R', 'MLO', '2D'),
            ('33333333', '90000003', 'L', 'MLO', '2D')]
    meta = []
    for k, (e, a, lat, view, typ) in enumerate(imgs):
        rel = f'cohort_1/{e}/{a}/1.2.845.113683.{_uid(e, a, k)}.dcm'
        _dcm(root/'images'/rel, k, phi)
        meta.append(dict(empi_anon=e, acc_anon=a, study_date_anon=date, anon_dicom_path=f'/mnt/NAS2/mammo/anon_dicom/{rel}',
                         ImageLateralityFinal=lat, ViewPosition=view, FinalImageType=typ, spot_mag=''))
    pd.DataFrame(meta).to_csv(root/'tables'/'EMBED_OpenData_metadata.csv', index=False)

def _ex_chestxray14(root, phi):
    rows = [('00000001_000.png', 'Cardiomegaly', 1), ('00000001_001.png', 'Cardiomegaly|Emphysema', 1),
            ('00000002_000.png', 'No Finding', 2), ('00000003_000.png', 'Effusion|Pleural_Thickening', 3),
            ('00000004_000.png', 'Hernia', 4), ('00000004_001.png', 'No Finding', 4)]
    lines = ['Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,'
             'OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],']
    for k, (name, f, pid) in enumerate(rows):
        _jpg(root/f'images_00{1 + k // 4}'/'images'/name, k)
        lines.append(f'{name},{f},{int(name[9:12])},{pid},{50 + pid},M,PA,2500,2048,0.168,0.168,')
    (root/'Data_Entry_2017_v2020.csv').write_text('\n'.join(lines) + '\n')
    (root/'train_val_list.txt').write_text('\n'.join(r[0] for r in rows[:4]) + '\n')
    (root/'test_list.txt').write_text('\n'.join(r[0] for r in rows[4:]) + '\n')

def _ex_csv(root, phi):
    recs = []
    for k in range(6):
        _jpg(root/'images'/f'img{k}.png', k)
        recs.append(dict(image=f'images/img{k}.png', report=['Heart is enlarged.', 'No acute disease.'][k % 2],
                         Cardiomegaly=['1', '0'][k % 2], patient=f'pt{k // 2}', split=['train', 'val', 'test'][k // 2]))
    pd.DataFrame(recs).to_csv(root/'studies.csv', index=False)

def _ex_pairs_folder(root, phi):
    for split, n in (('train', 3), ('val', 1)):
        recs = []
        for k in range(n):
            _jpg(root/split/'imgs'/f'{split}{k}.jpg', k, rgb=True)
            recs.append({'img': f'{split}{k}.jpg', 'caption': f'Cluster of atypical cells, case {k}.'})
        (root/split/'img_text_pair.json').write_text(json.dumps(recs))

def write_example(name, root, phi=True) -> Path:
    "Write a tiny example of dataset `name` in its published layout under `root` (DICOM headers carry `PLANTED_PHI` if `phi`)."
    f = globals().get(f'_ex_{name}')
    if f is None: raise ValueError(f'name={name!r}: expected one of {sorted(n for n in DATASETS if f"_ex_{n}" in globals())}')
    root = Path(root); root.mkdir(parents=True, exist_ok=True)
    f(root, phi)
    return root
