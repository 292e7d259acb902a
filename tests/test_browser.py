"""The notebooks open showing their results (issue 15): JupyterLab serves 02_pretrain and 05_eval to headless Chromium,
whose rendered page must hold the saved figures and no error output. Skipped where no Chromium is installed
(Debian/Ubuntu: `apt-get install chromium`), except under `MEDVLP_REQUIRE_BROWSER=1`, which `.ci/run` sets after
installing it: there a missing browser fails. Run alone with `pytest -q tests/test_browser.py`."""
import json, os, re, shutil, subprocess, sys, time, urllib.request
import pytest
from conftest import ROOT, free_port

BROWSER = next((b for b in ('chromium', 'chromium-browser', 'google-chrome') if shutil.which(b)), None)
if BROWSER is None and os.environ.get('MEDVLP_REQUIRE_BROWSER') == '1':
    raise RuntimeError('MEDVLP_REQUIRE_BROWSER=1 but no Chromium is installed (apt-get install chromium)')
pytestmark = pytest.mark.skipif(BROWSER is None, reason='no Chromium installed (apt-get install chromium)')
TOKEN = 'medvlp-test'



@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "JupyterLab on a free local port, serving copies of the notebooks (and one with its outputs stripped)."
    root = tmp_path_factory.mktemp('lab')
    for name in ('02_pretrain', '05_eval'): shutil.copy(ROOT / 'nbs' / f'{name}.ipynb', root)
    nb = json.loads((root / '02_pretrain.ipynb').read_text())
    for c in nb['cells']:
        if c['cell_type'] == 'code': c['outputs'] = []
    (root / 'stripped.ipynb').write_text(json.dumps(nb))
    port = free_port()
    settings = root / '.settings' / '@jupyterlab' / 'notebook-extension'   # render every cell, not only those in view
    settings.mkdir(parents=True)
    (settings / 'tracker.jupyterlab-settings').write_text(json.dumps(dict(windowingMode='none')))
    env = dict(os.environ, JUPYTERLAB_WORKSPACES_DIR=str(root / '.ws'), JUPYTER_RUNTIME_DIR=str(root / '.rt'),
               JUPYTERLAB_SETTINGS_DIR=str(root / '.settings'))
    p = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', f'--port={port}', '--ip=127.0.0.1', '--allow-root',
                          f'--IdentityProvider.token={TOKEN}', f'--ServerApp.root_dir={root}'],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f'http://127.0.0.1:{port}'
    for _ in range(120):
        try: urllib.request.urlopen(f'{url}/api/status?token={TOKEN}', timeout=1); break
        except OSError: time.sleep(0.5)
    else: p.kill(); pytest.fail('JupyterLab did not start')
    yield url
    p.terminate(); p.wait(10)


def _rendered(url, name) -> str:
    "The page of notebook `name` (alone: `reset` drops the tabs a workspace would restore) as headless Chromium renders it."
    r = subprocess.run([BROWSER, '--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=30000', '--dump-dom',
                        f'{url}/lab/tree/{name}.ipynb?reset&token={TOKEN}'], capture_output=True, text=True, timeout=180)
    return r.stdout


def _outputs(dom):
    "(output areas, images in them, error outputs) on a rendered page."
    areas = re.findall(r'<div[^>]*class="[^"]*jp-OutputArea-output[^"]*".*?</div>', dom, re.S)
    imgs = len(re.findall(r"<img[^>]*src=\"data:image/(?:png|jpeg)", dom))
    errors = dom.count("Traceback (most recent call last)")
    return len(areas), imgs, errors


def _saved(name):
    "(outputs, figures) saved in notebook `name`."
    outs = [o for c in json.loads((ROOT / 'nbs' / f'{name}.ipynb').read_text())['cells'] for o in c.get('outputs', [])]
    return len(outs), sum(1 for o in outs if {'image/png', 'image/jpeg'} & set(o.get('data', {})))


@pytest.mark.parametrize('name', ['02_pretrain', '05_eval'])
def test_notebook_opens_with_its_figures(lab, name):
    "Every saved output renders, every saved figure as an image, and none is an error."
    n_out, n_fig = _saved(name)
    areas, imgs, errors = _outputs(_rendered(lab, name))
    assert n_fig >= 2 and (areas, imgs, errors) == (n_out, n_fig, 0), ((areas, imgs, errors), (n_out, n_fig))


def test_a_notebook_without_outputs_shows_none(lab):
    "The check can fail: the same notebook with its outputs stripped renders no figure."
    areas, imgs, _ = _outputs(_rendered(lab, 'stripped'))
    assert imgs == 0 and areas == 0
