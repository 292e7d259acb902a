"One run per folder: a second run into a folder that a running run holds fails at once, naming the folder and the holder."
import json, subprocess, sys, time
from conftest import tiny_params, cli_args, env


def test_second_run_into_a_busy_folder_fails(tmp_path, synth_root):
    out = tmp_path / 'run'
    first = tiny_params(synth_root, out, max_steps=2000, log_every=500, ckpt_every=1000)
    log = open(tmp_path / 'first.log', 'w')  # a file, not an unread pipe that fills and stalls the first run
    a = subprocess.Popen([sys.executable, '-m', 'medvlp.cli', 'pretrain'] + cli_args(first), env=env(),
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        t0 = time.time()
        while not (out / 'params.yaml').exists() and a.poll() is None and time.time() - t0 < 300: time.sleep(0.1)
        assert a.poll() is None, (tmp_path / 'first.log').read_text()[-3000:]
        params = (out / 'params.yaml').read_text()
        second = dict(first, lr=0.5)  # other parameters: without the lock it would overwrite params.yaml
        b = subprocess.run([sys.executable, '-m', 'medvlp.cli', 'pretrain'] + cli_args(second), env=env(),
                           capture_output=True, text=True, timeout=600)
        assert b.returncode != 0
        assert f'{out} is in use by another run (pid {a.pid} on ' in b.stderr, b.stderr[-3000:]
        assert a.poll() is None, 'the first run died'
        assert (out / 'params.yaml').read_text() == params
        assert json.loads((out / '.run.owner.json').read_text())['pid'] == a.pid
    finally:
        a.kill(); a.wait(); log.close()
