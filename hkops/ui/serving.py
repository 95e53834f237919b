"""Serving the consoles with Voilà: the command ``hkops serve`` runs, and preheated kernels.

Voilà reads ``voila_config/voila.json`` next to this file (and no other voila.json):

- preheated kernels (a pool of kernels that have already run a console's notebook up
  to ``show``) for the consoles named in ``kernel_pools_config``; any other notebook
  gets a fresh kernel per visit, as Voilà does by default;
- the ``jupyterlab-plotly`` page extension is not loaded (it renders static plotly
  outputs; the consoles draw FigureWidgets, which do not need it).

The command also serves plotly's widget bundle under ``voila/labextensions/`` so that
the consoles' charts fetch it once per page (see :mod:`hkops.ui.charts`).

It runs Voilà behind the consoles' login (:mod:`hkops.ui.login`): every page needs a user
name and password, and each console acts as the user who logged in (:func:`show`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from hkops.config import shipped_path
from hkops.errors import HkopsError

#: The consoles' notebooks: notebooks/consoles of the checkout, or the installed package's copy.
CONSOLES_DIR = shipped_path("notebooks/consoles")
CONFIG_DIR = Path(__file__).resolve().parent / "voila_config"
CONFIG_FILE = CONFIG_DIR / "voila.json"


def voila_config(path: str | Path = CONFIG_FILE) -> dict:
    """The Voilà configuration the consoles are served with."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def preheated_notebooks(config_file: str | Path = CONFIG_FILE) -> dict[str, int]:
    """Notebook (relative to the served folder) -> kernels kept warm for it."""
    pools = voila_config(config_file).get("VoilaKernelManager", {}).get("kernel_pools_config", {})
    return {name: spec.get("pool_size", 0) for name, spec in pools.items() if name != "default"}


def plotly_bundle_dir() -> Path:
    """The folder holding plotly's widget bundle (found without importing plotly)."""
    from importlib.util import find_spec

    return Path(find_spec("plotly").origin).parent / "package_data"


def voila_command(port: int, *, root: str | Path | None = None, ip: str | None = None,
                  config_dir: str | Path | None = None) -> list[str]:
    """The argv that serves the consoles (``root``, default notebooks/consoles) on ``port``
    (``config_dir``: a folder with another voila.json, for benchmarks).

    The database is the one ``HKOPS_DATABASE_URL`` names when the command starts: kernels
    inherit Voilà's environment.
    """
    argv = [
        # Voilà with the consoles' login page, sessions and kernel owners (hkops.ui.login)
        sys.executable, "-m", "hkops.ui.login", str(Path(root) if root else CONSOLES_DIR),
        f"--port={int(port)}",
        "--no-browser",
        f"--Voila.config_file_paths={config_dir or CONFIG_DIR}",
        # plotly's widget code, fetched once per page by the consoles' charts (hkops.ui.charts)
        f"--VoilaConfiguration.extra_labextensions_path={plotly_bundle_dir()}",
    ]
    if ip:
        argv.append(f"--Voila.ip={ip}")
    return argv


def preheating() -> bool:
    """Whether this kernel was started by Voilà for its pool (before anyone asked for the page)."""
    return os.environ.get("VOILA_PREHEAT", "False") == "True"


def served() -> bool:
    """Whether this kernel serves a Voilà page (Voilà sets ``VOILA_PREHEAT`` in every kernel it starts)."""
    return "VOILA_PREHEAT" in os.environ


def show(console) -> None:
    """Display ``console`` for the logged-in user, with a line saying who that is.

    A preheated kernel runs the notebook when Voilà starts, before anyone asks for the
    page: its data would be as old as the kernel, and it does not know the visitor yet. So
    the last cell waits for the page request, sets the console's ``actor`` to the user who
    logged in (:func:`hkops.ui._common.current_actor`) and reloads the console
    (``console.refresh()``, if it has one) before showing it; a console built for someone
    else is refreshed too. If that refresh is refused (the visitor lacks a permission), the
    page shows the refusal and not the console: what it holds was read for someone else
    (the kernel's own user, when it was preheated). A console that has read nothing yet (``load_in_background()``,
    ``loaded`` false: the trends console) is shown at once on a Voilà page and reads as the visitor once the page
    has connected (:class:`hkops.ui._common.PageConnected`), its progress bar on the page; elsewhere it reads
    before it is shown. A preheated kernel first has it ``warm_up()`` (imports, no data) while it waits. Without a valid login the page says
    so and shows no console; any other failure is one readable line, never a traceback.
    """
    from IPython.display import display

    from hkops.ui._common import PageConnected, StatusLine, current_actor, login_required_message, user_line

    warm = preheating()
    if warm:
        from voila.utils import wait_for_request

        warm_up = getattr(console, "warm_up", None)
        if callable(warm_up):
            warm_up()  # before the visitor: imports and engines, no data
        wait_for_request()
    try:
        actor = current_actor(required=True)
    except HkopsError as refused:
        display(login_required_message(refused))
        return
    except Exception as error:  # noqa: BLE001 - the page must never show a traceback
        failed = StatusLine()
        failed.failure(error)
        display(failed)
        return
    stale = warm
    if hasattr(console, "actor"):
        stale = stale or repr(console.actor) != repr(actor)  # built for someone else (or nobody)
        console.actor = actor
    load_later = getattr(console, "load_in_background", None)
    if callable(load_later) and not getattr(console, "loaded", True):
        if served():
            # The frame now, the figures once the page has connected: widget changes sent while it is
            # still connecting would be lost (the page then waits for ever for a panel; seen in CI).
            display(user_line(actor), console, PageConnected(load_later))
        else:  # a notebook in JupyterLab, or run by nbval: read, then show
            load_later().join()
            display(user_line(actor), console)
        return
    refresh = getattr(console, "refresh", None)
    if stale and callable(refresh):
        from hkops.security.access import AccessDenied

        status = getattr(console, "status", None)
        if status is not None:
            status.last_error = None
        refresh()
        if status is not None and isinstance(status.last_error, AccessDenied):
            display(user_line(actor), status)  # the refusal, not what was read for someone else
            return
    display(user_line(actor), console)


#: Seconds the processes ``hkops serve`` started get to stop on their own before they are killed.
STOP_GRACE_S = 10.0


def stop_processes(processes, grace: float = STOP_GRACE_S) -> None:
    """End ``processes`` (Popen objects; None is skipped) and every process they started.

    Each gets SIGTERM, so that Voilà shuts its kernels down and the HLR simulator closes its
    journal; whatever of them or their descendants (Voilà's kernels run in sessions of their
    own, out of reach of a process-group signal) still runs after ``grace`` seconds is killed.
    """
    import psutil

    started = [process for process in processes if process is not None]
    family = []
    for process in started:
        try:
            parent = psutil.Process(process.pid)
            family += [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for process in started:
        if process.poll() is None:
            process.terminate()
    _, alive = psutil.wait_procs(family, timeout=grace)
    for straggler in alive:
        try:
            straggler.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    for process in started:
        process.poll()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VoilaServer:
    """Voilà serving the consoles in a subprocess, as ``hkops serve`` runs it (for tests and benchmarks).

    Use as a context manager; Voilà and its kernels are stopped on exit.
    """

    def __init__(self, database_url: str, *, root: str | Path | None = None, port: int | None = None,
                 log_path: str | Path | None = None, config_dir: str | Path | None = None):
        self.database_url = database_url
        self.config_dir = config_dir
        self.root = Path(root) if root else CONSOLES_DIR
        self.port = port or free_port()
        self.log_path = Path(log_path) if log_path else None
        self.process = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "VoilaServer":
        import subprocess
        import tempfile
        import time
        import urllib.error
        import urllib.request

        env = dict(os.environ, HKOPS_DATABASE_URL=self.database_url)
        env.pop("VOILA_PREHEAT", None)
        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix="hkops-voila-", suffix=".log")[1])
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(voila_command(self.port, root=self.root, config_dir=self.config_dir), env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"voila exited with {self.process.returncode}: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2):
                    pass
            except urllib.error.HTTPError:
                return self  # it answers: it is up
            except OSError:
                time.sleep(0.2)
                continue
            return self
        self.stop()
        raise RuntimeError(f"voila did not answer on {self.url} within {timeout:.0f} s: {self.log()[-2000:]}")

    def wait_for_pools(self, timeout: float = 60) -> None:
        """Wait until every preheated notebook's kernel pool has been started."""
        import time

        pools = preheated_notebooks(Path(self.config_dir) / "voila.json" if self.config_dir else CONFIG_FILE)
        wanted = [name for name, size in pools.items() if size and (self.root / name).exists()]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if all(f"Kernel pool of {name} is filled" in text for name in wanted):
                return
            time.sleep(0.2)
        raise RuntimeError(f"kernel pools not filled within {timeout:.0f} s: {self.log()[-2000:]}")

    def log(self) -> str:
        if self._log:
            self._log.flush()
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            stop_processes([self.process], grace=15)
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> "VoilaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
