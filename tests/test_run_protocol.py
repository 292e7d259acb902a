"""One run-folder protocol (runs.start_run) for every subcommand: a busy folder, and a folder holding another command's run,
are refused, naming the folder, before anything in it changes."""
import json
import pytest
from medvlp.cli import COMMANDS, main, run
from medvlp.models import tiny_clip
from medvlp.runs import run_lock
from conftest import tiny_params, cli_args


def files(d):
    "Every file under `d` (the lock's own files aside) with its bytes."
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob('*')) if p.is_file() and not p.name.startswith('.run.')}


@pytest.fixture(scope='module')
def params(synth_root, tmp_path_factory):
    "Each subcommand's parameters on the small corpus (a tiny CLIP folder where it needs a model), whatever it loads before its folder is taken."
    model = str(tiny_clip(tmp_path_factory.mktemp('tiny') / 'clip'))
    data = dict(data_root=str(synth_root))
    return {'pretrain': data, 'prompt-tune': dict(data, model_dir=model), 'probe': {}, 'eval': dict(data, model_dir=model),
            'adaptor': {}, 'segment': {}, 'compare': data}


def argv(command, params, out):
    return [command, '-p', 'output_dir', str(out)] + [a for k, v in params[command].items() for a in ('-p', k, v)]


def test_every_subcommand_is_covered(params):
    assert sorted(params) == sorted(COMMANDS)


@pytest.mark.parametrize('command', list(COMMANDS))
def test_a_subcommand_refuses_another_commands_run(command, params, tmp_path):
    out, other = tmp_path / 'run', 'eval' if command == 'pretrain' else 'pretrain'
    out.mkdir()
    (out / 'run.json').write_text(json.dumps(dict(command=other)))
    (out / 'metrics.csv').write_text('step,loss\n1,0.5\n')
    before = files(out)
    with pytest.raises(RuntimeError, match=f"{out} holds a '{other}' run \\(run.json\\), which a '{command}' run would overwrite"):
        run(argv(command, params, out))
    assert files(out) == before


@pytest.mark.parametrize('command', list(COMMANDS))
def test_a_subcommand_refuses_a_busy_folder(command, params, tmp_path):
    out = tmp_path / 'run'
    with run_lock(out):
        (out / 'params.yaml').write_text('lr: 0.1\n')
        before = files(out)
        with pytest.raises(RuntimeError, match=f'{out} is in use by another run'): run(argv(command, params, out))
        assert files(out) == before


def test_eval_into_a_pretraining_run_leaves_it_whole(synth_root, tmp_path, params, capsys):
    "The probe that lost data: `medvlp eval -p output_dir <a pretraining run>` replaced its metrics and manifest, and exited 0."
    out = tmp_path / 'pre'
    p = tiny_params(synth_root, out, max_steps=2, ckpt_every=1)
    assert main(['pretrain'] + cli_args(p)) == 0
    before = files(out)
    assert main(['eval', '-p', 'model_dir', str(out / 'model'), '-p', 'output_dir', str(out), '-p', 'data_root', str(synth_root)]) == 1
    assert f"holds a 'pretrain' run (run.json), which a 'eval' run would overwrite" in capsys.readouterr().err
    assert files(out) == before
    assert main(['pretrain'] + cli_args(p)) == 0    # and it still resumes
    assert 'resumed from' in capsys.readouterr().out and json.loads((out / 'metrics.json').read_text())['steps'] == 2
