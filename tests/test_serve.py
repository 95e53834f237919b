"""``hkops serve`` stopped by SIGTERM (systemd, a container stop) or SIGINT (Ctrl+C) ends every
process it started: Voilà, the kernels Voilà started, the HLR simulator; their ports are free.

A real ``hkops serve`` on free ports against a small prebuilt database (no demo build)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest

from hkops.security import users
from hkops.store.engine import Store
from hkops.ui.serving import free_port

pytestmark = pytest.mark.slow


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernels(family: list[psutil.Process]) -> list[psutil.Process]:
    found = []
    for process in family:
        try:
            if "ipykernel" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
@pytest.mark.parametrize("stop_signal,voila_hangs", [(signal.SIGTERM, False), (signal.SIGINT, False),
                                                     (signal.SIGTERM, True)],
                         ids=["SIGTERM", "SIGINT", "SIGTERM-voila-hangs"])
def test_serve_ends_every_process_it_started(world, tmp_path, stop_signal, voila_hangs):
    """With ``voila_hangs``, Voilà is frozen (SIGSTOP) before the stop: it cannot shut its kernels
    down, so serve must end it, its kernels and the HLR itself after its grace period."""
    port, hlr_port = free_port(), free_port()
    env = {**os.environ, "HKOPS_DATABASE_URL": world.url, "HKOPS_DATA_DIR": str(tmp_path),
           "HKOPS_HLR": f"127.0.0.1:{hlr_port}", "HKOPS_ACTOR": "tester"}
    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen([sys.executable, "-m", "hkops", "serve", "--port", str(port)], env=env,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    family: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")
            family = psutil.Process(serve.pid).children(recursive=True)
            if _answers(f"http://127.0.0.1:{port}/") and not _port_free(hlr_port) and _kernels(family):
                break
            time.sleep(0.5)
        else:
            pytest.fail("hkops serve did not come up: " + (tmp_path / "serve.log").read_text(errors="replace")[-2000:])
        family = psutil.Process(serve.pid).children(recursive=True)
        assert len(family) >= 3  # Voilà, a kernel, the HLR simulator
        warned = "the database has no users" in (tmp_path / "serve.log").read_text(errors="replace")
        assert warned == (not users.any_user(Store(world.url)))

        if voila_hangs:
            [voila] = [p for p in family if "voila" in " ".join(p.cmdline()) and "ipykernel" not in " ".join(p.cmdline())]
            voila.suspend()
        os.kill(serve.pid, stop_signal)  # to hkops serve alone, not to its process group
        assert serve.wait(timeout=90) == 0, (tmp_path / "serve.log").read_text(errors="replace")[-2000:]
        _, alive = psutil.wait_procs(family, timeout=5)
        left = [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in alive if p.is_running() and p.status() != "zombie"]
        assert left == [], f"processes left behind by hkops serve: {left}"
        assert _port_free(port) and _port_free(hlr_port)
    finally:
        for process in [*family, psutil.Process(serve.pid) if serve.poll() is None else None]:
            if process is not None:
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass
        log.close()
