"""The provisioning client: typed calls, retries with stable request ids, clear failures,
and — over real TCP with injected faults — every command applied exactly once."""

from __future__ import annotations

import random
import socket
import threading

import pytest

from hkops.errors import InvalidValue
from hkops.network import (
    BackgroundServer,
    BarringReason,
    ConnectionLost,
    InProcessTransport,
    ProvisioningClient,
    ProvisioningError,
    ProvisioningRefused,
    ProvisioningUnavailable,
    ResultCode,
    Simulator,
    TcpTransport,
    Transport,
    add_sub,
    mod_imsi,
    mod_odb,
    rmv_sub,
)
from hkops.network import protocol as p

KI = "000102030405060708090a0b0c0d0e0f"
OPC = "f0e0d0c0b0a090807060504030201000"
NUMBER = "13800138000"
IMSI = "460001234567890"


def no_sleep(_seconds):
    pass


def client_for(sim: Simulator, **options) -> ProvisioningClient:
    options.setdefault("sleep", no_sleep)
    return ProvisioningClient(InProcessTransport(sim), **options)


class Scripted(Transport):
    """Answers each exchange from a script of callables (lines -> replies), records the lines."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.sent: list[list[str]] = []
        self.closed = 0

    def exchange(self, lines, timeout):
        self.sent.append(list(lines))
        return self.steps.pop(0)(lines)

    def close(self):
        self.closed += 1


def answer(code: ResultCode):
    def step(lines):
        return [p.format_reply(p.make_reply(code, [("REQ", p.parse_command(line).req)])) for line in lines]
    return step


def drop(lines):
    raise ConnectionLost("dropped")


# --------------------------------------------------------------------------- typed calls


def test_a_subscriber_is_added_read_barred_moved_to_a_new_sim_and_removed():
    client = client_for(Simulator())
    assert client.add_subscriber(NUMBER, IMSI, KI, OPC).ok
    assert client.get(NUMBER).imsi == IMSI and client.get(imsi=IMSI).isdn == NUMBER
    client.set_barring(NUMBER, True, BarringReason.LOSS)
    record = client.get(NUMBER)
    assert (record.barred, record.barring_reason) == (True, BarringReason.LOSS)
    client.change_imsi(NUMBER, "460001234567891", KI, OPC)
    client.set_barring("+86 " + NUMBER[:3] + NUMBER[3:], False)
    assert client.get(NUMBER) == client.list_all()[0]
    assert (client.get(NUMBER).imsi, client.get(NUMBER).barred, client.ping()) == ("460001234567891", False, 1)
    client.remove_subscriber(NUMBER)
    assert client.get(NUMBER) is None and client.list_all() == [] and client.ping() == 0


def test_listing_all_follows_the_pages_to_the_end():
    sim = Simulator()
    client = client_for(sim)
    client.run_many([add_sub(f"1380013{i:04d}", f"46000123456{i:04d}", KI, OPC) for i in range(25)])
    assert [r.isdn for r in client.list_all(page_size=7)] == [f"1380013{i:04d}" for i in range(25)]


def test_a_permanent_error_is_raised_as_refused_and_not_retried():
    sim = Simulator()
    client = client_for(sim)
    client.add_subscriber(NUMBER, IMSI, KI, OPC)
    with pytest.raises(ProvisioningRefused) as caught:
        client.add_subscriber(NUMBER, "460001234567891", KI, OPC)
    assert caught.value.code == ResultCode.SUBSCRIBER_EXISTS and caught.value.retryable is False
    assert client.resent == 0 and isinstance(caught.value, ProvisioningError)


def test_bad_arguments_are_refused_before_sending_and_never_show_a_key():
    sim = Simulator()
    client = client_for(sim)
    with pytest.raises(InvalidValue) as caught:
        client.add_subscriber(NUMBER, IMSI, KI[:-1], OPC)
    assert caught.value.field == "ki" and KI[:-1] not in str(caught.value).lower()
    for call in (lambda: client.add_subscriber("23800138000", IMSI, KI, OPC),
                 lambda: client.set_barring(NUMBER, True),
                 lambda: client.set_barring(NUMBER, True, "BORED"),
                 lambda: client.change_imsi(NUMBER, "4600", KI, OPC)):
        with pytest.raises(InvalidValue):
            call()
    assert sim.stats.executed == 0 and sim.stats.reads == 0


# --------------------------------------------------------------------------- retries


def test_a_busy_reply_is_retried_with_the_same_request_id():
    transport = Scripted(answer(ResultCode.SYSTEM_BUSY), answer(ResultCode.OK))
    reply = ProvisioningClient(transport, sleep=no_sleep).add_subscriber(NUMBER, IMSI, KI, OPC, req="act-1")
    assert reply.ok and transport.sent[0] == transport.sent[1] and 'REQ="act-1"' in transport.sent[0][0]


def test_a_dropped_connection_is_retried_with_the_same_request_id():
    transport = Scripted(drop, drop, answer(ResultCode.OK))
    assert ProvisioningClient(transport, sleep=no_sleep).remove_subscriber(NUMBER).ok
    assert len({line for batch in transport.sent for line in batch}) == 1 and len(transport.sent) == 3


def test_a_reply_for_another_request_is_not_taken_and_the_link_is_reset():
    stale = p.format_reply(p.make_reply(ResultCode.OK, [("REQ", "someone-else")]))
    transport = Scripted(lambda lines: [stale], answer(ResultCode.SUBSCRIBER_NOT_FOUND))
    with pytest.raises(ProvisioningRefused) as caught:
        ProvisioningClient(transport, sleep=no_sleep).remove_subscriber(NUMBER)
    assert caught.value.code == ResultCode.SUBSCRIBER_NOT_FOUND and transport.closed == 1


def test_pauses_grow_while_the_hlr_gives_no_answer_and_stay_under_the_cap():
    pauses: list[float] = []
    transport = Scripted(*[answer(ResultCode.SYSTEM_BUSY)] * 9)
    client = ProvisioningClient(transport, retries=8, backoff=0.1, max_backoff=0.5, sleep=pauses.append)
    with pytest.raises(ProvisioningUnavailable):
        client.ping()
    assert len(pauses) == 8 and all(0 < s <= 0.5 for s in pauses) and pauses[-1] > pauses[0]


def test_when_retries_run_out_the_error_is_retryable_and_holds_the_commands_to_resend():
    transport = Scripted(*[drop] * 4)
    client = ProvisioningClient(transport, retries=3, sleep=no_sleep)
    with pytest.raises(ProvisioningUnavailable) as caught:
        client.add_subscriber(NUMBER, IMSI, KI, OPC, req="act-9")
    error = caught.value
    assert error.retryable and [c.req for c in error.commands] == ["act-9"] and "act-9" in str(error)
    assert KI.upper() not in str(error) + repr(error.commands)


def test_a_lost_reply_resent_later_with_the_same_request_id_is_applied_once():
    sim = Simulator(drop_rate=1.0, seed=2)
    client = client_for(sim, retries=0)
    command = add_sub(NUMBER, IMSI, KI, OPC, req="act-42")
    while sim.fault_counts.dropped_after == 0:  # until the HLR applied it and the reply was lost
        with pytest.raises(ProvisioningUnavailable) as caught:
            client.run_many([command])
    sim.faults.drop_rate = 0.0
    replies = client.run_many(caught.value.commands)
    assert replies[0].ok and client.get(NUMBER).imsi == IMSI
    assert sim.stats.executed == 1 and sim.stats.replayed == 1


def test_an_unreachable_hlr_is_reported_as_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ProvisioningClient(TcpTransport("127.0.0.1", port, connect_timeout=1), retries=1, sleep=no_sleep)
    with pytest.raises(ProvisioningUnavailable) as caught:
        client.ping()
    assert "cannot connect" in caught.value.cause


def test_an_hlr_that_never_answers_times_out_and_the_connection_is_replaced():
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except socket.timeout:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        transport = TcpTransport(*listener.getsockname())
        client = ProvisioningClient(transport, timeout=0.2, retries=2, sleep=no_sleep)
        with pytest.raises(ProvisioningUnavailable) as caught:
            client.remove_subscriber(NUMBER)
        assert "within 0.2 s" in caught.value.cause and transport.connects == 3
    finally:
        stop.set()
        thread.join()
        listener.close()
        for conn in accepted:
            conn.close()


def test_a_batch_keeps_commands_on_the_same_number_in_order_despite_busy_replies():
    sim = Simulator(error_rate=0.4, seed=9)
    client = client_for(sim, retries=30)
    commands = []
    for i in range(50):
        number = f"1380013{i:04d}"
        commands += [add_sub(number, f"46000123456{i:04d}", KI, OPC), mod_odb(number, True, "SUSPEND"),
                     mod_imsi(number, f"46000765432{i:04d}", KI, OPC), mod_odb(number, False)]
        if i % 2:
            commands.append(rmv_sub(number))
    replies = client.run_many(commands)
    assert all(r.ok for r in replies)
    registry = sim.registry.subscribers
    assert sorted(registry) == [f"861380013{i:04d}" for i in range(0, 50, 2)]
    assert all(s.imsi.startswith("46000765432") and not s.barred for s in registry.values())


# --------------------------------------------------------------------------- over TCP with faults


def intended_workload(seed: int, n: int = 1000):
    """n add / bar / unbar / change-IMSI / remove calls and the registry they must leave."""
    rng = random.Random(seed)
    state: dict[str, dict] = {}
    calls = []
    next_number = next_imsi = 0
    while len(calls) < n:
        action = rng.choice(["add", "add", "bar", "unbar", "imsi", "remove"]) if state else "add"
        if action == "add":
            number, next_number = f"1390000{next_number:04d}", next_number + 1
            imsi, next_imsi = f"46000{next_imsi:010d}", next_imsi + 1
            state[number] = {"imsi": imsi, "barred": False, "reason": "NONE"}
            calls.append(("add_subscriber", number, imsi, KI, OPC))
            continue
        number = rng.choice(sorted(state))
        if action == "bar":
            state[number].update(barred=True, reason="LOSS")
            calls.append(("set_barring", number, True, "LOSS"))
        elif action == "unbar":
            state[number].update(barred=False, reason="NONE")
            calls.append(("set_barring", number, False))
        elif action == "imsi":
            imsi, next_imsi = f"46000{next_imsi:010d}", next_imsi + 1
            state[number]["imsi"] = imsi
            calls.append(("change_imsi", number, imsi, KI, OPC))
        else:
            del state[number]
            calls.append(("remove_subscriber", number))
    expected = {"86" + k: (v["imsi"], v["barred"], v["reason"]) for k, v in state.items()}
    return calls, expected


def registry_state(sim: Simulator) -> dict:
    return {isdn: (s.imsi, s.barred, s.reason) for isdn, s in sim.registry.subscribers.items()}


def test_with_errors_and_drops_over_tcp_a_thousand_commands_are_each_applied_exactly_once(tmp_path):
    calls, expected = intended_workload(seed=1)
    with Simulator(tmp_path, error_rate=0.2, drop_rate=0.1, seed=7) as sim, BackgroundServer(sim) as server:
        transport = TcpTransport(*server.address)
        client = ProvisioningClient(transport, timeout=5, retries=40, backoff=0.001, max_backoff=0.01)
        for name, *args in calls:
            assert getattr(client, name)(*args).ok
        client.close()
        assert registry_state(sim) == expected
        assert sim.stats.executed == len(calls), "no command was applied twice"
        assert sim.fault_counts.dropped_after > 0 and sim.stats.replayed == sim.fault_counts.dropped_after
        assert transport.connects > 1
    with Simulator(tmp_path) as restarted:
        assert registry_state(restarted) == expected


def test_with_errors_and_drops_over_tcp_a_pipelined_batch_is_applied_exactly_once(tmp_path):
    calls, expected = intended_workload(seed=2)
    builders = {"add_subscriber": add_sub, "set_barring": mod_odb, "change_imsi": mod_imsi,
                "remove_subscriber": rmv_sub}
    commands = [builders[name](*args) for name, *args in calls]
    with Simulator(tmp_path, error_rate=0.2, drop_rate=0.1, seed=8) as sim, BackgroundServer(sim) as server:
        with ProvisioningClient(TcpTransport(*server.address), retries=40, backoff=0.001,
                                max_backoff=0.01) as client:
            replies = client.run_many(commands)
        assert all(r.ok for r in replies) and [r.req for r in replies] == [c.req for c in commands]
        assert registry_state(sim) == expected and sim.stats.executed == len(commands)
        assert sim.fault_counts.dropped_after > 0


def test_without_faults_one_connection_carries_every_command(tmp_path):
    with Simulator(tmp_path) as sim, BackgroundServer(sim) as server:
        transport = TcpTransport(*server.address, window=64)
        client = ProvisioningClient(transport)
        client.run_many([add_sub(f"1380013{i:04d}", f"46000123456{i:04d}", KI, OPC) for i in range(500)])
        for i in range(50):
            client.set_barring(f"1380013{i:04d}", True, "FRAUD")
        assert client.ping() == 500 and len(client.list_all()) == 500
        assert transport.connects == 1 and client.resent == 0
        client.close()
