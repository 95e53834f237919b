"""hkops installed from a wheel (``pip install .``, not editable) works from any folder: it finds
the consoles' notebooks and the default grading rules it ships, keeps its data in the user's
data folder (never inside site-packages), builds the demo and serves the consoles.

The wheel is built from a copy of the checkout's files and installed into a fresh venv
that borrows this environment's dependencies (a .pth file; no download)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from console_login import http_session
from hkops.security.users import demo_password
from hkops.ui.serving import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]} {done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv folder, environment for it): hkops installed from a wheel built from the checkout's files."""
    work = tmp_path_factory.mktemp("install")
    source = work / "clone"
    files = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT).stdout
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"),
          str(source)])
    [wheel] = (work / "dist").glob("hkops-*.whl")
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)])
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HKOPS_", "PYTHONPATH", "XDG_"))}
    env.update(HOME=str(work / "home"), JUPYTER_PATH=str(Path(sys.prefix) / "share" / "jupyter"),
               HKOPS_HLR=f"127.0.0.1:{free_port()}")
    (work / "elsewhere").mkdir()
    return venv, purelib, env, work / "elsewhere"


def test_an_installed_package_finds_its_notebooks_and_rules_and_keeps_data_out_of_site_packages(installed):
    venv, purelib, env, cwd = installed
    probe = ("import json, hkops, hkops.config as c; from hkops.ui.serving import CONSOLES_DIR;"
             "from hkops.numbers.grading import default_rules_path;"
             "print(json.dumps([hkops.__file__, c.CHECKOUT and str(c.CHECKOUT), str(c.DATA_DIR), str(CONSOLES_DIR),"
             " sorted(p.name for p in CONSOLES_DIR.glob('*.ipynb')), default_rules_path().read_text()]))")
    module, checkout, data_dir, consoles, notebooks, rules = json.loads(
        _run([str(venv / "bin" / "python"), "-c", probe], env=env, cwd=cwd).stdout)
    assert Path(module).is_relative_to(purelib) and checkout is None
    assert Path(data_dir) == Path(env["HOME"]) / ".local" / "share" / "hkops"
    assert not Path(data_dir).is_relative_to(venv)
    assert Path(consoles).is_relative_to(purelib)
    assert notebooks == sorted(p.name for p in (ROOT / "notebooks" / "consoles").glob("*.ipynb"))
    assert rules == (ROOT / "data" / "grading_rules.toml").read_text()


def test_an_installed_package_loads_its_alert_rules(installed):
    venv, purelib, env, cwd = installed
    probe = "from hkops.monitoring.rules import load_rules, rules_file; print(rules_file(), len(load_rules()))"
    where, count = _run([str(venv / "bin" / "python"), "-c", probe], env=env, cwd=cwd).stdout.split()
    assert Path(where).is_relative_to(purelib) and int(count) == 6


def test_an_installed_package_builds_the_demo_and_serves_the_consoles_from_any_folder(installed):
    venv, purelib, env, cwd = installed
    hkops = str(venv / "bin" / "hkops")
    _run([hkops, "demo", "--blocks-per-province", "1", "--orders", "20"], env=env, cwd=cwd)
    data_dir = Path(env["HOME"]) / ".local" / "share" / "hkops"
    assert (data_dir / "hkops.db").is_file()
    assert not list(purelib.glob("**/*.db")) and not (purelib / "data").exists()

    port = free_port()
    log = open(cwd / "serve.log", "wb")
    serve = subprocess.Popen([hkops, "serve", "--port", str(port)], env=env, cwd=cwd, stdout=log,
                             stderr=subprocess.STDOUT)
    try:
        deadline, page, browser = time.monotonic() + 180, "", None
        while time.monotonic() < deadline and "widget-view+json" not in page:
            assert serve.poll() is None, (cwd / "serve.log").read_text(errors="replace")[-3000:]
            try:  # the consoles are behind the login: the demo's ops user
                browser = browser or http_session(f"http://127.0.0.1:{port}", "ops", demo_password("ops"))
                page = browser.get(f"http://127.0.0.1:{port}/voila/render/index.ipynb", timeout=90).text
            except OSError:
                time.sleep(0.5)
        assert "widget-view+json" in page, (cwd / "serve.log").read_text(errors="replace")[-3000:]
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
        log.close()
