"""Experiment trackers through Accelerate (`report_to`): mlflow gets the run's parameters, the metrics of its
metrics.csv and its figures, and a run that failed resumes into the same mlflow run; TensorBoard stays in the run
folder's tb/; wandb (offline) gets the same, and its resumed run continues under the same id; a tracker that is not installed fails before anything is written, naming
its package."""
import json, struct, time
from dataclasses import asdict
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_params


def _fail_at_step(P, monkeypatch, k):
    "Make pretraining's k-th loss call raise, as a crash would; returns the real loss to put back."
    real = P.compute_loss
    def fail(model, b, c, n=[0]):
        n[0] += 1
        if n[0] == k: raise RuntimeError('planted failure')
        return real(model, b, c)
    monkeypatch.setattr(P, 'compute_loss', fail)
    return real


def test_mlflow_gets_params_metrics_and_figures_and_a_resumed_run_continues_it(tmp_path, synth_root, monkeypatch):
    from mlflow.tracking import MlflowClient
    import medvlp.pretrain as P
    from medvlp.runs import shareable
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    monkeypatch.setenv('MLFLOW_TRACKING_URI', (tmp_path / 'mlruns').as_uri())   # a local file store
    monkeypatch.setenv('MLFLOW_ALLOW_FILE_STORE', 'true')                        # (mlflow >= 3.13 asks for it)
    out = tmp_path / 'run'
    cfg = P.PretrainConfig.make(**tiny_params(synth_root, out, max_steps=6, log_every=2, run_name='trk',
                                              report_to=['tensorboard', 'mlflow']))
    real = _fail_at_step(P, monkeypatch, 5)
    with pytest.raises(RuntimeError, match='planted failure'): P.pretrain(cfg)   # after the checkpoint of step 4
    client = MlflowClient()
    exp = client.get_experiment_by_name('trk').experiment_id
    [run] = client.search_runs([exp])
    assert run.info.status == 'FAILED'

    monkeypatch.setattr(P, 'compute_loss', real)
    P.pretrain(cfg)                                                              # resumes at step 4
    [run] = client.search_runs([exp])                                            # the same run, continued
    assert (run.info.status, run.info.run_name) == ('FINISHED', 'trk')
    assert run.data.params == {k: str(v) for k, v in P._flat(shareable(asdict(cfg), out)).items()}
    assert run.data.params['report_to'] == '["tensorboard", "mlflow"]' and run.data.params['output_dir'] == '.'
    h = pd.read_csv(out / 'metrics.csv')
    assert h.step.tolist() == [2, 4, 6]
    for col in h.columns.drop('step'):
        got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, f'train/{col}'))
        assert [s for s, _ in got] == [2, 4, 6], col
        np.testing.assert_allclose([v for _, v in got], h[col].values, rtol=1e-12, err_msg=col)
    assert [a.path for a in client.list_artifacts(run.info.run_id, 'figures')] == ['figures/curves.png']

    ea = EventAccumulator(str(out / 'tb')).Reload()                              # TensorBoard where it always was
    sc = ea.Scalars('train/loss')
    assert [s.step for s in sc] == [2, 4, 6]
    np.testing.assert_allclose([s.value for s in sc], h.loss.values, rtol=1e-6)  # (float32 in TensorBoard)
    assert ea.Tags()['images'] == ['figures/curves']
    assert len(list((out / 'tb').glob('*/hparams.yml'))) == 1                   # the parameters once, at the start


def test_a_tracker_not_installed_fails_at_once_naming_its_package(tmp_path, synth_root, monkeypatch):
    import accelerate.utils
    import medvlp.pretrain as P
    monkeypatch.setattr(accelerate.utils, 'is_mlflow_available', lambda: False)
    with pytest.raises(ModuleNotFoundError, match=r'mlflow not installed; pip install mlflow$'):
        P.pretrain(**tiny_params(synth_root, tmp_path / 'run', report_to=['tensorboard', 'mlflow']))
    assert not (tmp_path / 'run').exists()
    with pytest.raises(ValueError, match=r"report_to=\['mlfow'\]: \['mlfow'\] not among"):
        P.PretrainConfig(report_to=['mlfow'])


def _wandb_records(path, block=32768):
    "The records of an offline wandb run file (run-<id>.wandb): LevelDB-log blocks of 7-byte-headed chunks."
    from wandb.proto import wandb_internal_pb2 as pb
    data, pos, buf = Path(path).read_bytes(), 7, b''   # after the file's header, ':W&B' and its version
    assert data[:4] == b':W&B', data[:7]
    while pos + 7 <= len(data):
        if block - pos % block < 7: pos += block - pos % block; continue   # a block's padding
        _, n, kind = struct.unpack('<IHB', data[pos:pos + 7])
        buf += data[pos + 7:pos + 7 + n]; pos += 7 + n
        if kind in (1, 4):   # a full record, or the last chunk of one
            r = pb.Record(); r.ParseFromString(buf); buf = b''
            yield r


def test_wandb_offline_gets_params_metrics_and_figures_and_a_resumed_run_continues_it(tmp_path, synth_root, monkeypatch):
    pytest.importorskip('wandb')
    import medvlp.pretrain as P
    for k, v in dict(WANDB_MODE='offline', WANDB_DIR=str(tmp_path), WANDB_SILENT='true').items(): monkeypatch.setenv(k, v)
    out = tmp_path / 'run'
    cfg = P.PretrainConfig.make(**tiny_params(synth_root, out, max_steps=6, log_every=2, run_name='trkwb',
                                              report_to=['wandb']))
    real = _fail_at_step(P, monkeypatch, 5)
    with pytest.raises(RuntimeError, match='planted failure'): P.pretrain(cfg)   # after the checkpoint of step 4
    monkeypatch.setattr(P, 'compute_loss', real)
    time.sleep(1)                          # wandb names offline folders to the second: the resumed run's is another
    P.pretrain(cfg)                                                              # resumes at step 4
    assert not (out / 'tb').exists()
    files = sorted((tmp_path / 'wandb').glob('offline-run-*/run-*.wandb'))      # one per process, in time order
    assert len(files) == 2, files
    assert files[0].name == files[1].name                                        # run-<the same id>.wandb
    rs = [list(_wandb_records(f)) for f in files]
    runs = [[r.run for r in x if r.WhichOneof('record_type') == 'run'][0] for x in rs]
    assert [(r.project, r.display_name) for r in runs] == [('trkwb', 'trkwb')] * 2 and runs[0].run_id == runs[1].run_id
    rs = rs[0] + rs[1]
    config = {i.key: json.loads(i.value_json) for r in rs if r.WhichOneof('record_type') == 'config' for i in r.config.update}
    assert config['lr'] == cfg.lr and config['report_to'] == '["wandb"]' and config['output_dir'] == '.'
    hist = [{i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in r.history.item}   # ('train/loss': nested)
            for r in rs if r.WhichOneof('record_type') == 'history']
    h = pd.read_csv(out / 'metrics.csv')
    rows = [x for x in hist if 'train/loss' in x]
    assert [x['_step'] for x in rows] == h.step.tolist() == [2, 4, 6]
    for col in h.columns.drop('step'):
        np.testing.assert_allclose([x[f'train/{col}'] for x in rows], h[col].values, rtol=1e-12, err_msg=col)
    [fig] = [x for x in hist if 'figures/curves/filenames' in x]
    assert fig['_step'] == 6 and (files[1].parent / 'files' / fig['figures/curves/filenames'][0]).exists()
