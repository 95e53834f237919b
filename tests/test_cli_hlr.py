"""``hkops hlr serve``: the simulator as its own process, reached over TCP."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

from hkops.network import ProvisioningClient, TcpTransport

KEY = "00112233445566778899AABBCCDDEEFF"


def start(data_dir) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, "-m", "hkops", "hlr", "serve", "--port", "0", "--data", str(data_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    port = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert port, line + process.stderr.read()
    return process, int(port.group(1))


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def test_the_hlr_served_from_the_cli_keeps_its_subscribers_across_a_restart(tmp_path):
    process, port = start(tmp_path / "hlr")
    try:
        client = ProvisioningClient(TcpTransport("127.0.0.1", port))
        assert client.add_subscriber("13800138000", "460001234567890", KEY, KEY).code == 0
    finally:
        stop(process)
    process, port = start(tmp_path / "hlr")
    try:
        record = ProvisioningClient(TcpTransport("127.0.0.1", port)).get("13800138000")
        assert record is not None and record.imsi == "460001234567890"
    finally:
        stop(process)


def test_a_fault_rate_outside_0_to_1_is_refused_with_exit_status_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hkops", "hlr", "serve", "--drop-rate", "1.5",
                             "--data", str(tmp_path / "hlr")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "drop-rate 1.5: must be a share from 0 to 1" in result.stderr
    assert not (tmp_path / "hlr").exists()


def test_the_hlr_registry_keeps_no_key_in_clear_on_disk(tmp_path):
    process, port = start(tmp_path / "hlr")
    try:
        client = ProvisioningClient(TcpTransport("127.0.0.1", port))
        assert client.add_subscriber("13800138001", "460001234567891", KEY, KEY).code == 0
    finally:
        stop(process)
    stored = b"".join(path.read_bytes() for path in (tmp_path / "hlr").iterdir())
    assert b"460001234567891" in stored
    assert KEY.encode() not in stored and KEY.lower().encode() not in stored
