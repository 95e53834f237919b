"""Serial stock: part of ``python -m bench distribution --json``.

- ``receive_100k_s`` (goal ≤ 5): a 100,000-card vendor file received against a confirmed
  purchase order on SQLite, fresh database (import, PO figures, one ledger row per card).
- ``import_100k_s``: the anchor, the same file through ``import_sim_file`` alone (no PO, no ledger).
- ``transfer_100k_s`` (goal ≤ 5): those 100,000 serials, listed one by one, moved
  warehouse → agent location in one transfer (checked, ledger rows, locations, one audit event).
- ``transfer_naive_5k_s``: the anchor, 5,000 serials moved one transaction per serial through
  ``move_units``, as Odoo does per-serial work (Odoo issue 142905: 242 s to deliver 5,000).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

COUNT = 100_000
NAIVE = 5_000


def _world(path: Path):
    from hkops import carriers
    from hkops.catalogue.service import add_product
    from hkops.procurement import service as procurement
    from hkops.stock import service as stock
    from hkops.store import migrate
    from hkops.store.engine import Store

    store = Store(f"sqlite:///{path}")
    migrate.upgrade(store)
    with store.write() as conn:
        carriers.configure(conn, ["China Mobile"], actor="bench")
    add_product(store, "CM-NANO", "China Mobile nano SIM", "China Mobile", "nano", actor="bench")
    procurement.add_vendor(store, "ACME", "Acme Cards", actor="bench")
    stock.add_location(store, "WH-BJ", "Beijing warehouse", actor="bench")
    stock.add_location(store, "AG-001", "Agent one", "agent", actor="bench")
    stock.add_location(store, "AG-002", "Agent two", "agent", actor="bench")
    return store


def bench_import(work: Path, cards: Path, keyring) -> float:
    from hkops.cards.batches import import_sim_file

    store = _world(work / "import.db")
    started = time.perf_counter()
    summary = import_sim_file(store, cards, carrier="China Mobile", actor="bench", keyring=keyring)
    seconds = time.perf_counter() - started
    assert summary.quantity == COUNT
    store.dispose()
    return seconds


def bench_receive_and_transfer(work: Path, cards: Path, keyring) -> dict:
    from hkops.procurement import service as procurement
    from hkops.stock import service as stock
    from hkops.stock.model import MoveKind

    store = _world(work / "stock.db")
    number = procurement.create_po(store, "ACME", "WH-BJ", [("CM-NANO", COUNT, 350)], extra_cost_fen=100_000,
                                   actor="bench")
    procurement.confirm(store, number, actor="bench")
    started = time.perf_counter()
    receipt = procurement.receive(store, number, cards, actor="bench", keyring=keyring)
    received = time.perf_counter() - started
    assert (receipt.quantity, receipt.state) == (COUNT, "received")

    iccids = [line.split(",")[0] for line in cards.read_text().splitlines()[1:]]
    started = time.perf_counter()
    moved = stock.transfer(store, "WH-BJ", "AG-001", iccids=iccids, actor="bench")
    transferred = time.perf_counter() - started
    assert moved.count == COUNT

    started = time.perf_counter()
    for iccid in iccids[:NAIVE]:
        with store.write() as conn:
            stock.move_units(conn, [iccid], "AG-001", "AG-002", MoveKind.TRANSFER, f"N-{iccid[-8:]}", actor="bench")
    naive = time.perf_counter() - started
    assert stock.on_hand(store, location="AG-002")[0]["quantity"] == NAIVE
    store.dispose()
    return {"receive_100k_s": round(received, 2), "transfer_100k_s": round(transferred, 2),
            "transfer_naive_5k_s": round(naive, 2)}


def run(log=None) -> dict:
    from bench.network import _card_file
    from hkops.security.crypto import Keyring

    say = log or (lambda *_: None)
    keyring = Keyring.generate()
    with tempfile.TemporaryDirectory(prefix="hkops-bench-stock-") as folder:
        work = Path(folder)
        cards = work / "delivery.csv"
        _card_file(cards, COUNT)
        say("import of 100,000 cards (anchor)")
        result = {"import_100k_s": round(bench_import(work, cards, keyring), 2)}
        say("receive 100,000 cards against a PO, transfer them, move 5,000 one by one")
        result.update(bench_receive_and_transfer(work, cards, keyring))
    return result
