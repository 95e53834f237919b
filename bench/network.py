"""SIM cards and the core network: ``python -m bench network --json``.

- ``sim_import_100k_s`` (goal ≤ 10): a 100,000-card vendor file received through
  ``import_sim_file`` on SQLite (parse, validate, encrypt 8 secrets a card, insert, audit).
- ``hlr_commands_per_s_tcp``: ADD SUB commands through the provisioning client to the
  HLR simulator running as its own process, one persistent pipelined connection, journal
  fsync on. The anchor for ``activations_per_s_tcp`` once the card lifecycle exists.
- ``activations_per_s_tcp`` (goal ≥ 2,000): pair + activate of 2,000 cards through the
  HLR simulator in its own process over TCP, on SQLite, audit included (``pair_many`` and
  ``activate_many``: pairing in one transaction, activation recorded in one, one pipelined
  exchange with the HLR, confirmations in one).
- ``usage_records_per_s`` (goal ≥ 1,000,000): see ``bench/usage.py``.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _card_file(path: Path, count: int) -> None:
    from hkops.ids import make_iccid

    key = secrets.token_hex(16).upper()
    lines = ["iccid,imsi,ki,opc,pin1,puk1,pin2,puk2,adm1"]
    lines += [f"{make_iccid(f'898600{n:013d}')},46000{n:010d},{key},{key},1234,12345678,5678,87654321,12345678"
              for n in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def bench_sim_import(work: Path, count: int = 100_000) -> float:
    from hkops import carriers
    from hkops.cards.batches import import_sim_file
    from hkops.security.crypto import Keyring
    from hkops.store import migrate
    from hkops.store.engine import Store

    path = work / "cards.csv"
    _card_file(path, count)
    store = Store(f"sqlite:///{work / 'sims.db'}")
    migrate.upgrade(store)
    with store.write() as conn:
        carriers.configure(conn, ["China Mobile"], actor="bench")
    started = time.perf_counter()
    summary = import_sim_file(store, path, carrier="China Mobile", actor="bench", keyring=Keyring.generate())
    seconds = time.perf_counter() - started
    assert summary.quantity == count
    store.dispose()
    return seconds


def bench_hlr_commands(work: Path, count: int = 20_000) -> float:
    from hkops.network import ProvisioningClient, TcpTransport, add_sub

    process = subprocess.Popen([sys.executable, "-m", "hkops", "hlr", "serve", "--port", "0", "--data", str(work / "hlr")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r":(\d+),", process.stdout.readline()).group(1))
        client = ProvisioningClient(TcpTransport("127.0.0.1", port))
        key = secrets.token_hex(16).upper()
        commands = [add_sub(f"1380013{n % 10_000:04d}" if n < 10_000 else f"1390013{n % 10_000:04d}",
                            f"46000{n:010d}", key, key) for n in range(count)]
        started = time.perf_counter()
        replies = client.run_many(commands)
        seconds = time.perf_counter() - started
        assert all(reply.code == 0 for reply in replies)
        return count / seconds
    finally:
        process.terminate()
        process.wait(timeout=30)


def _resident_id(n: int) -> str:
    from stdnum.cn import ric

    body = f"110105{19800101 + (n // 900) * 10_000}{100 + n % 900:03d}"
    return body + ric.calc_check_digit(body + "0")


def bench_activations(work: Path, count: int = 2_000) -> float:
    from hkops import carriers
    from hkops.cards import service as cards
    from hkops.cards.batches import import_sim_file
    from hkops.network import ProvisioningClient, TcpTransport
    from hkops.numbers import service as numbers
    from hkops.security.crypto import Keyring
    from hkops.store import migrate
    from hkops.store.engine import Store
    from hkops.subscribers import service as subscribers

    path = work / "activate.csv"
    _card_file(path, count)
    store = Store(f"sqlite:///{work / 'activate.db'}")
    migrate.upgrade(store)
    keyring = Keyring.generate()
    with store.write() as conn:
        carriers.configure(conn, ["China Mobile"], actor="bench")
    numbers.add_blocks(store, ["1380013"], actor="bench")
    import_sim_file(store, path, carrier="China Mobile", actor="bench", keyring=keyring)
    people = [subscribers.register(store, name=f"用户{n}", resident_id=_resident_id(n), contact="13900000000",
                                   actor="bench", keyring=keyring).id for n in range(count // 5)]
    iccids = [line.split(",")[0] for line in path.read_text().splitlines()[1:]]
    process = subprocess.Popen([sys.executable, "-m", "hkops", "hlr", "serve", "--port", "0", "--data", str(work / "hlr2")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r":(\d+),", process.stdout.readline()).group(1))
        client = ProvisioningClient(TcpTransport("127.0.0.1", port))
        started = time.perf_counter()
        cards.pair_many(store, [(iccid, f"1380013{n:04d}", people[n // 5]) for n, iccid in enumerate(iccids)],
                        actor="bench")
        report = cards.activate_many(store, iccids, actor="bench", network=client, keyring=keyring)
        seconds = time.perf_counter() - started
        assert len(report.confirmed) == count, report
        return count / seconds
    finally:
        process.terminate()
        process.wait(timeout=30)
        store.dispose()


def run(log=None) -> dict:
    from bench import usage

    say = log or (lambda *_: None)
    with tempfile.TemporaryDirectory(prefix="hkops-bench-network-") as folder:
        work = Path(folder)
        say("SIM import of 100,000 cards")
        result = {"sim_import_100k_s": round(bench_sim_import(work), 2)}
        say("HLR commands over TCP")
        result["hlr_commands_per_s_tcp"] = round(bench_hlr_commands(work), 1)
        say("pair + activate over TCP")
        result["activations_per_s_tcp"] = round(bench_activations(work), 1)
    say("usage records")
    result.update(usage.run(log=log))
    result["goals"] = {"activations_per_s_tcp": ">= 2000", "sim_import_100k_s": "<= 10",
                       "usage_records_per_s": ">= 1000000"}
    return result
