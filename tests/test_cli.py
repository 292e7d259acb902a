"The installed console script and the module entry point."
import shutil, subprocess, sys
from conftest import ROOT


def test_console_script_installed():
    exe = shutil.which('medvlp')
    assert exe, 'the medvlp console script is not on PATH: was the package installed with pip install -e .?'
    r = subprocess.run([exe, '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and 'pretrain' in r.stdout and 'synthcxr' in r.stdout


def test_print_config_and_bad_parameter():
    r = subprocess.run([sys.executable, '-m', 'medvlp.cli', 'pretrain', '-f', str(ROOT / 'params' / 'tiny' / 'cleft.yaml'),
                        '-p', 'lr', '3e-4', '--print-config'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'text_tower: tiny-gpt2' in r.stdout and 'lr: 0.0003' in r.stdout
    r = subprocess.run([sys.executable, '-m', 'medvlp.cli', 'pretrain', '-p', 'lrate', '1', '--print-config'],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "unknown parameter(s) ['lrate']" in r.stderr
