"""The HLR simulator: command semantics, idempotent request ids, the registry on disk,
injected faults, and keys that never come back out."""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import subprocess
import sys

import pytest

from hkops.network import protocol as p
from hkops.network.protocol import ResultCode
from hkops.network.registry import JOURNAL, SNAPSHOT, Registry
from hkops.network.simulator import BackgroundServer, Faults, Simulator

KI = "000102030405060708090A0B0C0D0E0F"
OPC = "F0E0D0C0B0A090807060504030201000"
KI2 = "1111111111111111111111111111111F"
ISDN = "8613800138000"
IMSI = "460001234567890"


def add(isdn=ISDN, imsi=IMSI, req="a1", ki=KI):
    return f'ADD SUB: ISDN="{isdn}", IMSI="{imsi}", KI="{ki}", OPC="{OPC}", REQ="{req}";'


def run(sim, line) -> p.Reply:
    reply = sim.handle(line)
    assert reply is not None, "the simulator dropped the connection"
    return p.parse_reply(reply)


def code(sim, line) -> int:
    return run(sim, line).code


def lst(sim, isdn=ISDN) -> p.Reply:
    return run(sim, f'LST SUB: ISDN="{isdn}", REQ="q";')


# --------------------------------------------------------------------------- semantics


def test_adding_a_subscriber_twice_is_refused_as_already_existing():
    sim = Simulator()
    assert code(sim, add(req="a1")) == ResultCode.OK
    assert code(sim, add(req="a2", imsi="460001234567891")) == ResultCode.SUBSCRIBER_EXISTS
    assert lst(sim).fields["IMSI"] == IMSI


def test_an_imsi_serves_one_subscriber_only():
    sim = Simulator()
    run(sim, add())
    assert code(sim, add(isdn="8613800138001", req="a2")) == ResultCode.IMSI_IN_USE
    assert lst(sim, "8613800138001").code == ResultCode.SUBSCRIBER_NOT_FOUND


def test_barring_bars_all_services_with_its_reason_and_lifting_it_clears_the_reason():
    sim = Simulator()
    run(sim, add())
    assert run(sim, f'MOD ODB: ISDN="{ISDN}", ODBSS=1, ODBRSN="LOSS", REQ="b1";').fields["ODBRSN"] == "LOSS"
    assert (lst(sim).fields["ODBSS"], lst(sim).fields["ODBRSN"]) == (1, "LOSS")
    run(sim, f'MOD ODB: ISDN="{ISDN}", ODBSS=0, REQ="b2";')
    assert (lst(sim).fields["ODBSS"], lst(sim).fields["ODBRSN"]) == (0, "NONE")


def test_commands_on_an_unknown_subscriber_are_refused_as_not_found():
    sim = Simulator()
    for line in (f'MOD ODB: ISDN="{ISDN}", ODBSS=1, ODBRSN="LOSS", REQ="b";', f'RMV SUB: ISDN="{ISDN}", REQ="r";',
                 f'MOD IMSI: ISDN="{ISDN}", NEWIMSI="{IMSI}", KI="{KI}", OPC="{OPC}", REQ="m";'):
        assert code(sim, line) == ResultCode.SUBSCRIBER_NOT_FOUND


def test_an_imsi_change_points_the_number_at_the_new_imsi_and_frees_the_old_one():
    sim = Simulator()
    run(sim, add())
    new = "460001234567899"
    reply = run(sim, f'MOD IMSI: ISDN="{ISDN}", NEWIMSI="{new}", KI="{KI2}", OPC="{OPC}", REQ="m1";')
    assert (reply.fields["IMSI"], reply.fields["OLDIMSI"]) == (new, IMSI)
    assert run(sim, f'LST SUB: IMSI="{new}", REQ="q";').fields["ISDN"] == ISDN
    assert run(sim, f'LST SUB: IMSI="{IMSI}", REQ="q";').code == ResultCode.SUBSCRIBER_NOT_FOUND
    assert sim.registry.subscribers[ISDN].ki == KI2
    assert code(sim, add(isdn="8613800138001", imsi=IMSI, req="a2")) == ResultCode.OK


def test_an_imsi_change_to_an_imsi_in_use_is_refused_and_changes_nothing():
    sim = Simulator()
    run(sim, add())
    run(sim, add(isdn="8613800138001", imsi="460001234567891", req="a2"))
    line = f'MOD IMSI: ISDN="{ISDN}", NEWIMSI="460001234567891", KI="{KI2}", OPC="{OPC}", REQ="m1";'
    assert code(sim, line) == ResultCode.IMSI_IN_USE
    assert (lst(sim).fields["IMSI"], sim.registry.subscribers[ISDN].ki) == (IMSI, KI)


def test_a_removed_subscriber_is_gone_and_removing_it_again_is_refused():
    sim = Simulator()
    run(sim, add())
    assert run(sim, f'RMV SUB: ISDN="{ISDN}", REQ="r1";').fields["IMSI"] == IMSI
    assert lst(sim).code == ResultCode.SUBSCRIBER_NOT_FOUND
    assert code(sim, f'RMV SUB: ISDN="{ISDN}", REQ="r2";') == ResultCode.SUBSCRIBER_NOT_FOUND
    assert code(sim, 'PING: REQ="p";') == 0 and run(sim, 'PING: REQ="p";').fields["TOTAL"] == 0


def test_listing_all_pages_through_every_subscriber_in_number_order():
    sim = Simulator()
    wanted = [f"86138001380{i:02d}" for i in range(25)]
    for i, isdn in enumerate(reversed(wanted)):
        run(sim, add(isdn=isdn, imsi=f"4600012345678{i:02d}", req=f"a{i}"))
    seen, after, pages = [], None, 0
    while True:
        start = f'FROM="{after}", ' if after else ""
        reply = run(sim, f'LST ALL: {start}COUNT=10, REQ="l{pages}";')
        assert reply.fields["TOTAL"] == 25
        seen += [record[0] for record in p.parse_records(reply.fields["SUBS"])]
        pages += 1
        after = reply.fields.get("NEXT")
        if after is None:
            break
    assert seen == wanted and pages == 3


def test_bad_command_text_is_answered_with_its_code_and_changes_nothing():
    sim = Simulator()
    reply = run(sim, 'ADD SUB: ISDN="8613800138000", REQ="x1";')
    assert (reply.code, reply.req) == (ResultCode.BAD_PARAMETER, "x1") and "IMSI" in reply.fields["DETAIL"]
    assert code(sim, "hello") == ResultCode.SYNTAX_ERROR
    assert sim.registry.subscribers == {}


# --------------------------------------------------------------------------- request ids


def test_a_repeated_request_id_gets_the_first_reply_without_applying_again():
    sim = Simulator()
    first = sim.handle(add(req="act-7"))
    run(sim, f'RMV SUB: ISDN="{ISDN}", REQ="term-7";')
    assert sim.handle(add(req="act-7")) == first
    assert lst(sim).code == ResultCode.SUBSCRIBER_NOT_FOUND
    assert (sim.stats.executed, sim.stats.replayed) == (2, 1)


def test_a_repeated_refusal_is_answered_the_same_even_after_the_state_changed():
    sim = Simulator()
    refusal = sim.handle(f'RMV SUB: ISDN="{ISDN}", REQ="r1";')
    run(sim, add())
    assert sim.handle(f'RMV SUB: ISDN="{ISDN}", REQ="r1";') == refusal
    assert lst(sim).code == ResultCode.OK


def test_a_request_id_reused_for_another_command_is_refused():
    sim = Simulator()
    run(sim, add(req="same"))
    assert code(sim, f'RMV SUB: ISDN="{ISDN}", REQ="same";') == ResultCode.REQUEST_ID_REUSED
    assert lst(sim).code == ResultCode.OK


def test_a_repeat_written_differently_is_still_the_same_command():
    sim = Simulator()
    first = sim.handle(add(req="a1"))
    again = add(req="a1").replace(KI, KI.lower()).replace(", ", " ,  ").replace("ADD SUB", "add sub")
    assert sim.handle(again) == first and sim.stats.replayed == 1


# --------------------------------------------------------------------------- on disk


def test_the_registry_and_the_remembered_replies_survive_a_restart(tmp_path):
    with Simulator(tmp_path) as sim:
        first = sim.handle(add(req="act-1"))
        run(sim, f'MOD ODB: ISDN="{ISDN}", ODBSS=1, ODBRSN="SUSPEND", REQ="b1";')
        run(sim, add(isdn="8613800138001", imsi="460001234567891", req="act-2"))
        run(sim, f'RMV SUB: ISDN="8613800138001", REQ="t-2";')
    with Simulator(tmp_path) as again:
        assert list(again.registry.subscribers) == [ISDN]
        assert (lst(again).fields["ODBRSN"], again.registry.subscribers[ISDN].ki) == ("SUSPEND", KI)
        assert again.handle(add(req="act-1")) == first
        assert again.stats.executed == 0
        assert code(again, add(imsi="460001234567891", req="act-3")) == ResultCode.SUBSCRIBER_EXISTS


def test_a_restart_after_many_commands_reads_a_compacted_snapshot(tmp_path):
    registry = Registry(tmp_path, compact_after=50)
    for i in range(120):
        registry.execute(add(isdn=f"86138001{i:05d}", imsi=f"4600012345{i:05d}", req=f"a{i}"))
        registry.execute(f'MOD ODB: ISDN="86138001{i:05d}", ODBSS=1, ODBRSN="FRAUD", REQ="b{i}";')
        registry.commit()
    registry.close()
    journal_lines = (tmp_path / JOURNAL).read_bytes().count(b"\n")
    assert journal_lines < 240 and (tmp_path / SNAPSHOT).exists()
    again = Registry(tmp_path)
    assert len(again.subscribers) == 120 and all(s.barred for s in again.subscribers.values())
    assert again.execute(f'MOD ODB: ISDN="8613800100007", ODBSS=1, ODBRSN="FRAUD", REQ="b7";').startswith(
        "RETCODE = 0") and again.stats.replayed == 1


def test_a_torn_last_journal_line_is_ignored_on_restart(tmp_path):
    with Simulator(tmp_path) as sim:
        run(sim, add())
    with open(tmp_path / JOURNAL, "ab") as journal:
        journal.write(b'{"q":"a2","h":"00","r":"RETCODE = 0')
    with Simulator(tmp_path) as again:
        assert list(again.registry.subscribers) == [ISDN]


def test_uncommitted_commands_are_not_on_disk_and_committed_ones_are(tmp_path):
    sim = Simulator(tmp_path)
    sim.registry.execute(add())
    assert Registry(tmp_path / "copy").subscribers == {}  # a fresh folder is empty
    assert ISDN not in (tmp_path / JOURNAL).read_text()
    sim.commit()
    assert ISDN in (tmp_path / JOURNAL).read_text()
    sim.close()


def test_the_registry_files_are_readable_by_their_owner_only(tmp_path):
    with Simulator(tmp_path) as sim:
        run(sim, add())
    for name in (JOURNAL, SNAPSHOT):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600


# --------------------------------------------------------------------------- keys


def test_keys_never_appear_in_replies_or_in_the_log(caplog):
    caplog.set_level(logging.DEBUG, logger="hkops.network")
    sim = Simulator()
    replies = [
        sim.handle(add()),
        sim.handle(f'MOD IMSI: ISDN="{ISDN}", NEWIMSI="460001234567891", KI="{KI2}", OPC="{OPC}", REQ="m";'),
        sim.handle(f'LST SUB: ISDN="{ISDN}", REQ="q";'),
        sim.handle('LST ALL: REQ="l";'),
        sim.handle(add(isdn="8613800138009", ki=KI[:-1], req="bad")),
        sim.handle(f'ADD SUB: KI="{KI}", OPC="{OPC}"'),
        sim.handle(add()),
    ]
    shown = "\n".join(replies) + caplog.text + repr(sim.registry.subscribers)
    assert "<< ADD SUB" in caplog.text, "the commands were logged"
    for key in (KI, KI[:-1], KI2, OPC):
        assert key not in shown.upper()
    assert 'KI="***"' in replies[2]


# --------------------------------------------------------------------------- faults


def outcomes(sim: Simulator, n: int) -> list[str | None]:
    return [sim.handle(add(isdn=f"86138001{i:05d}", imsi=f"4600012345{i:05d}", req=f"a{i}")) for i in range(n)]


def test_the_same_seed_injects_the_same_faults():
    first = outcomes(Simulator(error_rate=0.3, drop_rate=0.2, seed=11), 200)
    assert outcomes(Simulator(error_rate=0.3, drop_rate=0.2, seed=11), 200) == first
    assert outcomes(Simulator(error_rate=0.3, drop_rate=0.2, seed=12), 200) != first


def test_a_busy_hlr_answers_5001_and_applies_nothing():
    sim = Simulator(error_rate=1.0)
    replies = outcomes(sim, 20)
    assert {p.parse_reply(r).code for r in replies} == {ResultCode.SYSTEM_BUSY}
    assert [p.parse_reply(r).req for r in replies] == [f"a{i}" for i in range(20)]
    assert sim.registry.subscribers == {}


def test_half_the_dropped_commands_were_applied_before_the_drop():
    sim = Simulator(drop_rate=1.0, seed=5)
    assert outcomes(sim, 200) == [None] * 200
    counts = sim.fault_counts
    assert counts.dropped_before + counts.dropped_after == 200
    assert len(sim.registry.subscribers) == counts.dropped_after and 60 < counts.dropped_after < 140


def test_fault_rates_outside_zero_to_one_are_refused():
    for bad in (dict(error_rate=1.5), dict(drop_rate=-0.1), dict(error_rate=0.6, drop_rate=0.6),
                dict(latency_ms=-1)):
        with pytest.raises(ValueError):
            Faults(**bad)


# --------------------------------------------------------------------------- over TCP


def tcp_exchange(address, lines: list[str]) -> list[str]:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(("\n".join(lines) + "\n").encode())
        data = b""
        while data.count(b"\n") < len(lines):
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection early"
            data += chunk
    return data.decode().splitlines()


def test_a_pipelined_batch_over_tcp_is_answered_in_order(tmp_path):
    with Simulator(tmp_path) as sim, BackgroundServer(sim) as server:
        lines = [add(isdn=f"86138001{i:05d}", imsi=f"4600012345{i:05d}", req=f"a{i}") for i in range(300)]
        replies = [p.parse_reply(r) for r in tcp_exchange(server.address, lines + ['PING: REQ="p";'])]
    assert [r.req for r in replies] == [f"a{i}" for i in range(300)] + ["p"]
    assert all(r.ok for r in replies) and replies[-1].fields["TOTAL"] == 300


def test_a_dropping_server_closes_the_connection_after_answering_the_commands_before(tmp_path):
    with Simulator(drop_rate=1.0, seed=1) as sim, BackgroundServer(sim) as server:
        with socket.create_connection(server.address, timeout=5) as sock:
            sock.sendall((add() + "\n").encode())
            assert sock.recv(100) == b""


def test_the_server_process_keeps_its_registry_across_a_restart(tmp_path):
    def start():
        proc = subprocess.Popen([sys.executable, "-m", "hkops.network.simulator", "--port", "0",
                                 "--data", str(tmp_path)], stdout=subprocess.PIPE, text=True)
        banner = proc.stdout.readline()
        assert "listening on" in banner, banner
        port = int(banner.split("listening on ")[1].split(",")[0].rsplit(":", 1)[1])
        return proc, ("127.0.0.1", port)

    proc, address = start()
    try:
        assert tcp_exchange(address, [add(req="act-1")])[0].startswith("RETCODE = 0")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    proc, address = start()
    try:
        replies = tcp_exchange(address, [f'LST SUB: ISDN="{ISDN}", REQ="q";', add(req="act-1")])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert p.parse_reply(replies[0]).fields["IMSI"] == IMSI
    assert p.parse_reply(replies[1]).ok, "the retry after the restart got the first reply"


def test_a_slow_hlr_still_answers_every_pipelined_command_in_order(tmp_path):
    with Simulator(tmp_path, latency_ms=2) as sim, BackgroundServer(sim) as server:
        lines = [add(isdn=f"86138001{i:05d}", imsi=f"4600012345{i:05d}", req=f"a{i}") for i in range(20)]
        replies = [p.parse_reply(r) for r in tcp_exchange(server.address, lines)]
    assert [r.req for r in replies] == [f"a{i}" for i in range(20)] and all(r.ok for r in replies)


def test_concurrent_connections_each_get_their_own_replies_and_all_commands_land(tmp_path):
    import threading

    results: dict[int, list[str]] = {}
    with Simulator(tmp_path) as sim, BackgroundServer(sim) as server:
        def work(t: int) -> None:
            results[t] = []
            for i in range(50):
                reply = tcp_exchange(server.address, [add(isdn=f"861380{t}{i:06d}", imsi=f"460001{t}{i:08d}",
                                                          req=f"c{t}-{i}")])
                results[t].append(p.parse_reply(reply[0]).req)
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert all(results[t] == [f"c{t}-{i}" for i in range(50)] for t in range(4))
    with Simulator(tmp_path) as again:
        assert len(again.registry.subscribers) == 200
