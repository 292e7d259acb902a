"The installed console script and the module entry point: exit status 0 on success, one line on stderr on failure."
import os, shutil, subprocess, sys
import pytest
from conftest import ROOT, cli_args, env, tiny_params


def medvlp():
    exe = shutil.which('medvlp')
    assert exe, 'the medvlp console script is not on PATH: was the package installed with pip install -e .?'
    return [exe]


# The console script (`sys.exit(main())` in pip's wrapper) and `python -m medvlp.cli` (what torchrun -m starts).
ENTRIES = {'script': medvlp, 'module': lambda: [sys.executable, '-m', 'medvlp.cli']}


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, env=kw.pop('env', env()), **kw)


def main(args, capsys, debug=False):
    "`medvlp.cli.main(args)` in this process, as the console script runs it: (exit status, stdout, stderr)."
    from medvlp.cli import main as cli_main
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('MEDVLP_DEBUG', '1' if debug else '0')
        if debug:
            with pytest.raises(Exception) as e: cli_main(args)
            return e, '', ''
        code = cli_main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, start):
    "A non-zero exit whose stderr is exactly one line `medvlp: error: ...` starting with `start` (no traceback)."
    assert code != 0, code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith(start), lines[0]


def test_console_script_installed():
    r = run(medvlp() + ['--help'])
    assert r.returncode == 0 and 'pretrain' in r.stdout and 'synthcxr' in r.stdout
    r = run(medvlp() + ['synthcxr', '--help'])
    assert r.returncode == 0 and '--n-studies' in r.stdout, r.stderr


def test_print_config_exits_0_and_a_bad_one_exits_1():
    ("`python -m medvlp.cli` turns main's status into the process's: 0 for a good config, 1 and one line for a bad "
     "one. The console script is pip's `sys.exit(main())` wrapper of the same `main`: its exit 0 is "
     "test_successful_run_exits_0's, its one-line errors are main's (tested in-process below).")
    entry = 'module'
    r = run(ENTRIES[entry]() + ['pretrain', '-f', str(ROOT / 'params' / 'tiny' / 'cleft.yaml'), '-p', 'lr', '3e-4',
                                '--print-config'])
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'text_tower: tiny-gpt2' in r.stdout and 'lr: 0.0003' in r.stdout
    assert 'PretrainConfig(' not in r.stderr, r.stderr[-3000:]
    r = run(ENTRIES[entry]() + ['pretrain', '-p', 'lrate', '1', '--print-config'])
    assert r.returncode == 1
    assert_one_line_error(r.returncode, r.stderr, "medvlp: error: TypeError: unknown parameter(s) ['lrate']")


def test_missing_recipe_one_line(tmp_path, capsys):
    missing = tmp_path / 'no_such_recipe.yaml'
    code, _, err = main(['pretrain', '-f', str(missing)], capsys)
    assert_one_line_error(code, err, 'medvlp: error: FileNotFoundError:')
    assert str(missing) in err


def test_bad_recipe_and_missing_data_one_line(tmp_path, capsys):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('lr: [1\n')
    assert_one_line_error(*main(['pretrain', '-f', str(bad)], capsys)[::2], f'medvlp: error: ValueError: {bad}: not a YAML recipe')
    p = tiny_params(tmp_path / 'no_data', tmp_path / 'out', max_steps=1)
    assert_one_line_error(*main(['pretrain'] + cli_args(p), capsys)[::2], f'medvlp: error: DataError: {tmp_path / "no_data"}')


def test_debug_shows_traceback(capsys):
    "With MEDVLP_DEBUG=1 the exception propagates (Python prints its traceback) instead of the one-line error."
    e, _, _ = main(['pretrain', '-p', 'lrate', '1'], capsys, debug=True)
    assert e.type is TypeError and "['lrate']" in str(e.value)


def test_successful_run_exits_0(synth_root, tmp_path):
    "A real (tiny) pretraining run through the installed script: exit 0, not the returned `Result` as a status."
    out = tmp_path / 'run'
    r = run(medvlp() + ['pretrain'] + cli_args(tiny_params(synth_root, out, max_steps=2, ckpt_every=2)), timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert 'medvlp: error' not in r.stderr and 'Result(' not in r.stderr
    assert (out / 'metrics.json').exists() and (out / 'metrics.csv').exists()


def test_help_lists_every_parameter_with_its_comment(capsys):
    "`medvlp <command> --help` shows every field of the command's config with its type, default and its (non-empty) comment."
    import importlib
    from medvlp.cli import COMMANDS, run as cli_run
    undocumented = {}
    for name, (mod, conf, *_) in COMMANDS.items():
        with pytest.raises(SystemExit): cli_run([name, '--help'])
        out = ' '.join(capsys.readouterr().out.split())   # the comments are wrapped over lines
        fields = getattr(importlib.import_module(mod), conf).help()
        assert len(fields) > 5, name
        if bad := [n for n, t, d, c in fields if not c or f'{n} ({t}, default {d!r}): {" ".join(c.split())}' not in out]:
            undocumented[name] = bad
    assert undocumented == {}
