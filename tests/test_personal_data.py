"""Personal data that cannot be rebuilt (issue 8, item 6).

A small world holds people with known resident IDs: one whose order went all the way to an
active card, one with an approved order, one registered at the desk with a card paired to
them, one blacklisted and then refused an order. Every output path is then taken (the CLI
with and without --json, look-up of every kind, ``as_dict``, order detail, the audit rows,
what the tables hold in clear, the sales frames, the orders and lifecycle consoles) and the
test tries to rebuild each ID from what they show: every mask consistent with the ID is
merged into the characters an onlooker knows, the birth year and gender (stored in clear)
are taken as known too, and the valid IDs that fit are counted. The ID must never be pinned
down: the full ID, its first 17 characters and the birth date never appear, and at least
10,000 valid IDs fit, even for someone who also knows the whole area code.

Resident IDs are never taken as command-line arguments: ``--id VALUE`` is refused with exit
status 2 and a hint to use ``--id -``; ``--id -``, ``--id-file`` and ``hkops lookup -`` read it.
"""

from __future__ import annotations

import json
import os
import pty
import re
import sys
import uuid
from collections import Counter
from datetime import date, timedelta
from select import select as readable

import pytest
from sqlalchemy import create_engine, select, text
from stdnum.cn import ric

from postgres import POSTGRES_ADMIN_URL, postgres_reachable as _postgres_reachable
from distribution_world import advance, distribution, place_order, rid  # noqa: F401  (fixture)
from hkops.audit import audit_log
from hkops.errors import InvalidValues
from hkops.ids import mask_resident_id
from hkops.lookup import lookup
from hkops.orders import service as orders
from hkops.store import migrate
from hkops.store.engine import Store
from hkops.subscribers import service as subscribers
from strategies import hkops_cli  # noqa: F401  (fixture)
from test_cards_lifecycle import hlr  # noqa: F401  (fixture)
from test_subscribers import _all_stored_text
from test_ui_orders import fill, open_order, shown

#: The people of the world, by what happens to them.
ORDERED = rid(21, birth="19850614", area="110105")     # order to an active card: subscriber, shipment, card
APPROVED = rid(22, birth="19921103", area="310104")    # an approved, unpaid order
PAIRED = rid(23, birth="19950321", area="510104")      # registered at the desk, a warehouse card paired
BLACKLISTED = rid(24, birth="19880909", area="440305")  # blacklisted, then refused an order
PEOPLE = (ORDERED, APPROVED, PAIRED, BLACKLISTED)
PAIRED_NUMBER = "13800130127"
CUSTOMER = ("--plan", "CM-58", "--contact", "13900000000", "--province", "北京", "--address", "北京市朝阳区建国路 1 号")

# ISO 7064 MOD 11-2 as stdnum computes it: S = sum(d_i * 13^(16-i)) mod 11, check = (1 - 2S) mod 11.
_WEIGHTS = [pow(13, 16 - i, 11) for i in range(17)]
_MASK_TOKEN = re.compile(r"(?<![0-9Xx*])[0-9Xx*]{18}(?![0-9Xx*])")


def masked(clear: str) -> str:
    """The one screen form: the province (2 characters) and the check character."""
    return clear[:2] + "*" * 15 + clear[-1]


# ---------------------------------------------------------------- the onlooker's arithmetic


def _areas(known: dict[int, str], year: int) -> list[str]:
    """Area codes in use in ``year`` that fit the known characters of positions 0-5."""
    fixed = "".join(known.get(i, "?") for i in range(6))
    free = [i for i in range(6) if fixed[i] == "?"]
    found = []
    for n in range(10 ** len(free)):
        digits = iter(f"{n:0{len(free)}d}") if free else iter(())
        code = "".join(c if c != "?" else next(digits) for c in fixed)
        try:
            ric.get_birth_place(f"{code}{year}01010000")
        except Exception:  # stdnum: not an area code, or not in use that year
            continue
        found.append(code)
    return found


def _residues(strings: list[str], offset: int) -> Counter:
    return Counter(sum(int(c) * _WEIGHTS[offset + i] for i, c in enumerate(s)) % 11 for s in strings)


def candidates(known: dict[int, str], birth_year: int, gender: str) -> int:
    """How many valid resident IDs show the characters ``known`` (position -> character), were
    born in ``birth_year`` (not after today) and have ``gender``'s sequence parity."""
    def fits(part: str, offset: int) -> bool:
        return all(known.get(offset + i, c) == c for i, c in enumerate(part))

    areas = _areas(known, birth_year)
    day, days = date(birth_year, 1, 1), []
    while day.year == birth_year and day <= date.today():
        if fits(day.strftime("%Y%m%d"), 6):
            days.append(day.strftime("%Y%m%d"))
        day += timedelta(days=1)
    sequences = [f"{n:03d}" for n in range(1000) if n % 2 == (gender == "male") and fits(f"{n:03d}", 14)]
    a, d, s = _residues(areas, 0), _residues(days, 6), _residues(sequences, 14)
    total = 0
    for (ra, na) in a.items():
        for (rd, nd) in d.items():
            for (rs, ns) in s.items():
                check = (1 - 2 * (ra + rd + rs)) % 11
                shown_check = "X" if check == 10 else str(check)
                if known.get(17, shown_check) == shown_check:
                    total += na * nd * ns
    return total


def visible(rid_: str, seen: str) -> tuple[dict[int, str], list[str]]:
    """The characters of ``rid_`` an onlooker learns from every mask in ``seen`` that fits it."""
    masks = [m.upper() for m in _MASK_TOKEN.findall(seen)
             if "*" in m and all(c == "*" or c == r for c, r in zip(m.upper(), rid_))]
    known = {i: c for m in masks for i, c in enumerate(m) if c != "*"}
    return known, masks


def test_the_onlookers_arithmetic_counts_what_it_should():
    wang = "11010519491231002X"
    assert candidates({i: c for i, c in enumerate(wang)}, 1949, "female") == 1
    # The old mask (area, sequence and check shown) with the birth year: a few dozen days.
    old = {i: c for i, c in enumerate(wang) if not 6 <= i < 14}
    assert 20 < candidates(old, 1949, "female") < 40
    every = [f"110105{d:%Y%m%d}002" for d in (date(1949, 1, 1) + timedelta(n) for n in range(365))]
    assert candidates(old, 1949, "female") == sum(ric.calc_check_digit(b + "0") == "X" for b in every)
    # The new mask, even with the whole area code known: counted one by one, as the sums count it.
    area_and_check = {i: c for i, c in enumerate(wang) if i < 6 or i == 17}
    bodies = [f"110105{d:%Y%m%d}{n:03d}" for d in (date(1949, 1, 1) + timedelta(k) for k in range(365))
              for n in range(0, 1000, 2)]
    one_by_one = sum(ric.calc_check_digit(b + "0") == "X" for b in bodies)
    assert candidates(area_and_check, 1949, "female") == one_by_one > 10_000
    assert visible(wang, f"ID {masked(wang)}, another 12***************X") == (
        {0: "1", 1: "1", 17: "X"}, ["11***************X"])


# ---------------------------------------------------------------- the world and every output path


@pytest.fixture
def cli(distribution, hkops_cli, hlr, monkeypatch):
    """``hkops ...`` in this process; --hlr reaches the in-process simulator."""
    monkeypatch.setattr("hkops.cli.orders.network", lambda address: hlr[1])
    monkeypatch.setattr("hkops.cli.cards.network", lambda address: hlr[1])
    return lambda *args, stdin="": hkops_cli(distribution.db, *args, stdin=stdin)


def ok(result) -> str:
    status, out, err = result
    assert status == 0, err
    return out + err


def refused(result) -> str:
    status, out, err = result
    assert status == 2 and out == "", (status, out, err)
    return err


def test_no_output_lets_anyone_rebuild_a_resident_id(distribution, cli, hlr):
    db, seen = distribution.db, []
    # The world, built the way operators build it.
    ordered = place_order(db, 21, resident_id=ORDERED, customer_name="赵一")
    advance(db, ordered.number, "activated", network=hlr[1])
    approved = place_order(db, 22, resident_id=APPROVED, customer_name="钱二")
    desk = subscribers.register(db, name="孙三", resident_id=PAIRED, contact="13900000003", actor="desk")
    seen.append(ok(cli("cards", "pair", distribution.warehouse_iccids[-1], PAIRED_NUMBER, "--subscriber",
                       str(desk.id), "--json")))
    seen.append(subscribers.blacklist_add(db, BLACKLISTED, "fraud report", "risk"))
    with pytest.raises(InvalidValues) as caught:
        place_order(db, 24, resident_id=BLACKLISTED, customer_name="李四")
    seen.append(str(caught.value))
    ordered, approved = orders.get_order(db, ordered.number), orders.get_order(db, approved.number)
    people = [subscribers.get(db, ordered.subscriber_id), subscribers.get(db, desk.id)]

    # The CLI, text and JSON.
    for person in people:
        for fmt in ((), ("--json",)):
            seen.append(ok(cli("subscribers", "show", "--subscriber", str(person.id), *fmt)))
    for number in (ordered.number, approved.number):
        for fmt in ((), ("--json",)):
            seen.append(ok(cli("orders", "show", number, *fmt)))
    for fmt in ((), ("--json",)):
        seen.append(ok(cli("orders", "list", *fmt)))
        seen.append(ok(cli("cards", "show", PAIRED_NUMBER, *fmt)))
        seen.append(ok(cli("cards", "show", str(ordered.msisdn), *fmt)))
        seen.append(ok(cli("audit", "--limit", "10000", *fmt)))
    # Look-up of every kind, and by resident ID from standard input.
    values = [ordered.number, approved.number, str(ordered.msisdn), ordered.iccid, PAIRED_NUMBER,
              distribution.warehouse_iccids[-1], f"S{people[0].id}", f"S{people[1].id}", "A1"]
    for value in values:
        for fmt in ((), ("--json",)):
            seen.append(ok(cli("lookup", value, *fmt)))
            seen.append(json.dumps(lookup(db, value), default=str, ensure_ascii=False))
    # The services' own views.
    seen += [json.dumps(p.as_dict(), default=str, ensure_ascii=False) for p in people]
    seen += [json.dumps(orders.order_detail(db, o.number), default=str, ensure_ascii=False)
             for o in (ordered, approved)]
    # What is stored in clear, and the audit trail.
    seen.append(_all_stored_text(db))
    with db.read() as conn:
        seen += [json.dumps(dict(r), default=str, ensure_ascii=False)
                 for r in conn.execute(select(audit_log)).mappings()]
    # The sales frames, as a CSV export would write them.
    from hkops.analytics import sales

    frame = sales.orders_frame(db)
    seen += [frame.to_csv(), sales.funnel(db).to_csv(), sales.daily_orders(frame).to_csv()]
    # The analyses over the Ibis tables, and what the trends console exports.
    seen += [sales.funnel_report(db, by).to_csv() for by in sales.DIMENSIONS]
    seen += [sales.league_report(db).to_csv(), sales.trends_report(db).to_csv(), sales.rates_report(db).to_csv()]
    # The consoles' pages.
    from hkops.ui import lifecycle_console, orders_console

    console = orders_console(db, actor="desk", network=hlr[1])
    fill(console, APPROVED, customer_name="钱二")
    seen.append(shown(console))
    for number in (ordered.number, approved.number):
        open_order(console, number)
        seen.append(shown(console))
    desk_console = lifecycle_console(db, network=hlr[1], actor="desk")
    for query in (PAIRED_NUMBER, str(ordered.msisdn), mask_resident_id(ORDERED), mask_resident_id(PAIRED)):
        desk_console.query.value = query
        desk_console.find_button.click()
        assert desk_console.card is not None, query
        seen.append(shown(desk_console))
    desk_console.query.value = APPROVED  # a whole ID typed into the search box: not echoed back
    desk_console.find_button.click()
    assert "No SIM card" in desk_console.status.text and masked(APPROVED) in desk_console.status.text
    seen.append(shown(desk_console))
    desk_console.query.value = PAIRED  # ...and it finds the person's card
    desk_console.find_button.click()
    assert desk_console.card.msisdn == PAIRED_NUMBER
    seen.append(shown(desk_console))
    desk_console.query.value = PAIRED[:17] + ("0" if PAIRED[17] != "0" else "1")  # mistyped
    desk_console.find_button.click()
    assert desk_console.status.kind == "error" and masked(PAIRED)[:17] in desk_console.status.text
    seen.append(shown(desk_console))
    desk_console.query.value = PAIRED_NUMBER
    desk_console.find_button.click()
    desk_console.new_iccid.value = distribution.warehouse_iccids[-2]
    desk_console.resident_id.value = PAIRED
    desk_console.replace_button.click()
    seen.append(shown(desk_console) + desk_console.confirm_text.value)

    # What reads a resident ID from standard input, and the refusals that quote one.
    for clear in (ORDERED, PAIRED):
        seen.append(ok(cli("subscribers", "show", "--id", "-", "--json", stdin=clear)))
        for fmt in ((), ("--json",)):
            out = ok(cli("lookup", "-", *fmt, stdin=clear + "\n"))
            assert mask_resident_id(clear) in out
            seen.append(out)
    seen.append(ok(cli("subscribers", "add", "--name", "孙三", "--contact", "13900000003", "--id", "-",
                       stdin=PAIRED)))  # already registered: shown again
    seen.append(refused(cli("orders", "create", "--name", "李四", *CUSTOMER, "--id", "-", stdin=BLACKLISTED)))
    seen.append(refused(cli("subscribers", "add", "--name", "孙三", "--contact", "13900000003", "--id", "-",
                            stdin=PAIRED[:17] + ("0" if PAIRED[17] != "0" else "1"))))

    everything = "\n".join(seen)
    for clear in PEOPLE:
        born = ric.get_birth_date(clear)
        for leak in (clear, clear[:17], clear.lower(), f"{born:%Y%m%d}", born.isoformat()):
            assert leak.upper() not in everything.upper(), f"{leak} is shown"
        known, masks = visible(clear, everything)
        assert masks, f"{clear}: shown nowhere, not even masked (the test would prove nothing)"
        gender = "male" if int(clear[16]) % 2 else "female"
        fit = candidates(known, born.year, gender)
        assert fit >= 10_000, f"{clear}: {sorted(set(masks))} leave only {fit} candidates"
        # Even someone who knows the area code (say, from the ship-to address) cannot pin it down.
        with_area = candidates(known | dict(enumerate(clear[:6])), born.year, gender)
        assert with_area >= 10_000, f"{clear}: with its area code only {with_area} candidates"


# ---------------------------------------------------------------- no resident ID on the command line


@pytest.mark.parametrize("command", [
    ("subscribers", "add", "--name", "孙三", "--contact", "13900000003"),
    ("subscribers", "show"),
    ("subscribers", "blacklist", "add", "--reason", "fraud"),
    ("subscribers", "blacklist", "remove"),
    ("orders", "create", "--name", "孙三", *CUSTOMER),
    ("cards", "replace", "89860012345678901234", "89860012345678901242"),
])
def test_a_resident_id_on_the_command_line_is_refused_with_a_hint_and_changes_nothing(cli, distribution, command):
    from distribution_world import snapshot

    before = snapshot(distribution.db)
    err = refused(cli(*command, "--id", PAIRED))
    assert "resident_id" in err and "--id -" in err and masked(PAIRED) in err
    assert PAIRED not in err and PAIRED[:6] not in err and err.count("\n") == 1
    assert snapshot(distribution.db) == before


def test_lookup_refuses_a_resident_id_as_an_argument_and_reads_one_from_standard_input(cli, distribution):
    order = place_order(distribution.db, 21, resident_id=ORDERED)
    err = refused(cli("lookup", ORDERED))
    assert "hkops lookup -" in err and ORDERED not in err and masked(ORDERED) in err
    mistyped = ORDERED[:17] + ("1" if ORDERED[17] != "1" else "2")  # perhaps a client's order id: not found
    err = refused(cli("lookup", mistyped))
    assert "nothing known as" in err and ORDERED[:17] not in err and masked(mistyped) in err
    found = json.loads(ok(cli("lookup", "-", "--json", stdin=ORDERED)))
    assert found["query"] == masked(ORDERED) and found["kind"] == "resident_id"
    assert [o["number"] for o in found["orders"]] == [order.number] and ORDERED not in json.dumps(found)


def test_the_id_is_read_from_a_file_or_standard_input_and_never_echoed(cli, distribution, tmp_path):
    path = tmp_path / "id.txt"
    path.write_text(f"\n{PAIRED.lower()}\n", encoding="utf-8")
    made = json.loads(ok(cli("subscribers", "add", "--name", "孙三", "--contact", "13900000003", "--id-file",
                             str(path), "--json")))
    assert made["id_masked"] == masked(PAIRED) and made["birth_year"] == 1995 and "birth_date" not in made
    again = json.loads(ok(cli("subscribers", "show", "--id", "-", "--json", stdin=PAIRED)))
    assert again["id"] == made["id"]
    err = refused(cli("subscribers", "show", "--id", "-", stdin=""))
    assert "resident_id" in err and "none was given" in err
    err = refused(cli("subscribers", "show", "--id", "-", stdin="1" * 5000))
    assert "more than 256 characters" in err
    err = refused(cli("subscribers", "show", "--id-file", str(tmp_path / "missing.txt")))
    assert "--id-file" in err and "cannot be read" in err


def test_without_an_id_option_the_cli_asks_for_it_on_the_terminal_and_does_not_echo_the_typing(db, tmp_path,
                                                                                               monkeypatch):
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    monkeypatch.delenv("HKOPS_SECRET_KEY", raising=False)
    env = {**os.environ, "HKOPS_DATABASE_URL": db.url}
    pid, terminal = pty.fork()
    if pid == 0:  # the child: hkops on a terminal of its own
        os.execve(sys.executable, [sys.executable, "-m", "hkops", "subscribers", "add", "--name", "孙三",
                                   "--contact", "13900000003", "--json"], env)
    screen = b""
    while "号): ".encode() not in screen:  # getpass writes the last space once the echo is off
        ready, _, _ = readable([terminal], [], [], 120)
        assert ready, screen
        screen += os.read(terminal, 4096)
    os.write(terminal, PAIRED.encode() + b"\n")
    while True:
        ready, _, _ = readable([terminal], [], [], 120)
        assert ready, screen
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # the child has ended and closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    _, status = os.waitpid(pid, 0)
    text = screen.decode()
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert masked(PAIRED) in text and PAIRED not in text and PAIRED[:6] not in text
    assert [p.name for p in subscribers.find(db, resident_id=PAIRED)] == ["孙三"]


# ---------------------------------------------------------------- migration 0008


@pytest.fixture(params=["sqlite", "postgresql"])
def at_0007(request, tmp_path):
    """An empty database migrated to 0007 (before this change)."""
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'old.db'}")
        migrate.upgrade(store, "0007")
        yield store
        store.dispose()
        return
    problem = _postgres_reachable()
    if problem:
        pytest.skip(f"PostgreSQL not reachable ({problem})")
    name = f"hkops_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    store = Store(POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name)
    migrate.upgrade(store, "0007")
    try:
        yield store
    finally:
        store.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_migration_0008_keeps_the_birth_year_only_and_narrows_every_stored_mask(at_0007):
    old = ORDERED[:6] + "*" * 8 + ORDERED[-4:]
    now = "2026-11-01 00:00:00+00:00"
    with at_0007.engine.begin() as conn:
        conn.execute(text(
            "insert into subscribers (name, resident_id_enc, resident_id_hash, id_masked, birth_date, gender, contact,"
            " created_at, created_by) values ('赵一', 'token', 'h1', :m, :b, 'male', '+8613900000000', :t, 'desk')"),
            {"m": old, "b": date(1985, 6, 14), "t": now})
        conn.execute(text("insert into id_blacklist values ('h2', :m, 'fraud', :t, 'risk')"), {"m": old, "t": now})
        conn.execute(text(
            "insert into audit_log (at, actor, entity, subject, action, reason, details) values"
            " (:t, 'desk', 'subscriber', '1', 'register', :r, :d), (:t, 'risk', 'id_blacklist', :m, 'blacklist',"
            " 'fraud', null), (:t, 'desk', 'number', '13800130127', 'release', 'no ID here ****', null)"),
            {"t": now, "m": old, "r": f"real-name registration, resident ID {old}",
             "d": json.dumps({"id_masked": old})})
    migrate.upgrade(at_0007)
    new = masked(ORDERED)
    with at_0007.read() as conn:
        person = conn.execute(text("select * from subscribers")).mappings().one()
        assert person["birth_year"] == 1985 and "birth_date" not in person and person["id_masked"] == new
        assert conn.execute(text("select id_masked from id_blacklist")).scalar() == new
        rows = conn.execute(text("select subject, reason, details from audit_log order by id")).all()
    assert rows[0] == ("1", f"real-name registration, resident ID {new}", json.dumps({"id_masked": new}))
    assert rows[1][0] == new and rows[2][1] == "no ID here ****"
    assert old not in " ".join(str(v) for row in rows for v in row)
    from alembic import command

    from hkops.store.migrate import _config

    config = _config()
    with at_0007.engine.connect().execution_options(hkops_write=True) as conn, conn.begin():
        config.attributes["connection"] = conn
        command.downgrade(config, "0007")
    with at_0007.read() as conn:
        assert conn.execute(text("select birth_date from subscribers")).scalar() in (date(1985, 1, 1), "1985-01-01")
    migrate.upgrade(at_0007)
    assert migrate.current_revision(at_0007) == migrate.head_revision()
