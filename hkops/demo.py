"""A reproducible demo world: real number blocks of the three main carriers, graded
numbers in every lifecycle state, built from a seed. Numbers in service come only from
sales with cards and subscribers, so ``hkops check`` finds nothing to report.

Demo holders are made-up customer and agent ids (C000123, AG-GD-01); later parts of
hkops (cards, orders, agents) grow this world further.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable

from sqlalchemy import func, select

from hkops import carriers
from hkops.audit import audit_log, unguarded
from hkops.errors import Conflict, InvalidValue
from hkops.ids import block_info
from hkops.network import InProcessTransport, ProvisioningClient, Simulator
from hkops.numbers import service as numbers_service
from hkops.numbers.model import NumberState
from hkops.numbers.tables import number_blocks, numbers
from hkops.store import migrate
from hkops.store.engine import Store
from hkops.timeutil import SHANGHAI, utc_now

S = NumberState
ACTOR = "demo"
#: Days of usage records the demo generates (to today), enough for a month's report and forecasts.
USAGE_DAYS = 35

#: Number segments (NDC) per carrier, from which demo blocks are drawn.
SEGMENTS = {
    "China Mobile": ["134", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158", "159", "182", "183", "187", "188"],
    "China Unicom": ["130", "131", "132", "155", "156", "185", "186"],
    "China Telecom": ["133", "153", "180", "181", "189"],
}
PROVINCES = ["北京市", "上海市", "广东省", "江苏省", "浙江省", "四川省", "湖北省", "山东省", "河南省", "福建省", "湖南省", "陕西省"]
AGENT_CODES = {"北京市": "BJ", "上海市": "SH", "广东省": "GD", "江苏省": "JS", "浙江省": "ZJ", "四川省": "SC",
               "湖北省": "HB", "山东省": "SD", "河南省": "HA", "福建省": "FJ", "湖南省": "HN", "陕西省": "SN"}


@dataclass(frozen=True)
class DemoSummary:
    seed: int
    blocks: int
    numbers: int
    by_state: dict[str, int]
    orders_by_state: dict[str, int]
    #: Commission entries by kind, settlement batches and withdrawals by state (hkops.demo_commissions).
    commissions: dict[str, dict[str, int]] = field(default_factory=dict)


def choose_blocks(seed: int, per_province: int = 2) -> list[str]:
    """Real blocks (carrier and region from phonenumbers) spread over the demo provinces,
    the three carriers taking turns."""
    rng = random.Random(seed)
    names = list(SEGMENTS)
    chosen: list[str] = []
    turn = 0
    for province in PROVINCES:
        for _ in range(per_province):
            carrier = names[turn % len(names)]
            turn += 1
            for _attempt in range(20_000):
                prefix = rng.choice(SEGMENTS[carrier]) + f"{rng.randrange(10_000):04d}"
                if prefix in chosen:
                    continue
                try:
                    info = block_info(prefix)
                except InvalidValue:
                    continue
                if info.carrier == carrier and info.province_zh == province:
                    chosen.append(prefix)
                    break
            else:
                raise Conflict(f"no {carrier} block found in {province}")
    return chosen


def build(
    store: Store,
    *,
    seed: int = 7,
    per_province: int = 2,
    progress: Callable[[int], None] | None = None,
    cards: int = 3_000,
    orders: int = 3_000,
    hlr_dir: str | Path | None = None,
    order_progress: Callable[[int], None] | None = None,
    usage_dir: str | Path | None = None,
    usage_days: int = USAGE_DAYS,
) -> DemoSummary:
    """Build the demo world into an empty database (migrations are applied first).

    The distribution side: a catalogue, a vendor, two warehouses receiving cards against
    purchase orders, a three-level agent tree stocked by transfers, and ``orders`` sales
    orders in every state over the last 90 days (hkops.demo_distribution).
    ``cards`` China Mobile SIMs from the first delivery are sold to registered subscribers
    and activated through an HLR simulator whose registry is kept in ``hlr_dir`` (None: in
    memory only, so a later ``hkops hlr reconcile`` would find them missing), and a few are
    suspended or reported lost. The money side: commission schemes for the plans, and 90 days
    of commissions accrued, settled, paid, clawed back and withdrawn (hkops.demo_commissions).
    With ``usage_dir`` (a usage store that holds no records yet), the last ``usage_days`` days
    of the cards' usage records and top-ups are generated into it, from each card's activation.
    """
    migrate.upgrade(store)
    with store.read() as conn:
        if conn.execute(select(number_blocks.c.prefix).limit(1)).first():
            raise Conflict("the database already holds number blocks; the demo needs an empty database "
                           "(hkops demo --fresh empties it first)")
    simulator = Simulator(hlr_dir)
    if simulator.registry.subscribers:
        simulator.close()
        raise Conflict(f"the HLR registry in {hlr_dir} already holds {len(simulator.registry.subscribers)} "
                       "subscriber(s); the demo needs an empty one (hkops demo --fresh clears the database's own)")
    try:
        prefixes = choose_blocks(seed, per_province)
        with store.write() as conn:
            carriers.configure(conn, list(carriers.MAIN_THREE), actor=ACTOR)
            numbers_service.add_blocks(conn, prefixes, actor=ACTOR, progress=progress)
            _spread_states(conn, random.Random(seed))
            pool_audited = conn.execute(select(func.max(audit_log.c.id))).scalar() or 0
        from hkops import demo_distribution

        orders_by_state: dict[str, int] = {}
        hlr = ProvisioningClient(InProcessTransport(simulator))
        with store.read() as conn:
            audited_before = conn.execute(select(func.max(audit_log.c.id))).scalar() or 0
        stocked = demo_distribution.stock_up(store, random.Random(seed), extra_mobile_cards=cards + cards // 10)
        if cards:
            _sell_cards(store, random.Random(seed), stocked[:cards], hlr)
        demo_distribution.backdate_stock(store, audited_before)
        if orders:
            orders_by_state = demo_distribution.take_orders(store, random.Random(seed), orders, hlr,
                                                            progress=order_progress)
        _backdate_activations(store)
        _backdate_pool(store, pool_audited)
        from hkops import demo_commissions

        money = demo_commissions.build(store, random.Random(seed), hlr, now=utc_now())
    except BaseException:
        simulator.close()
        empty(store, hlr_dir)  # a demo that fails leaves nothing half-built
        raise
    simulator.close()
    if usage_dir is not None and usage_days:
        _usage_history(store, Path(usage_dir), usage_days, seed)
    stats = numbers_service.stats(store)
    from hkops.security import users

    users.add_demo_users(store)
    return DemoSummary(seed, len(prefixes), stats["total"], stats["by_state"], orders_by_state, money)


def _backdate_activations(store: Store) -> None:
    """Cards were activated while the demo ran: give each the time its sale was activated (the
    order's activation, moved back by ``take_orders``, or for a card sold before hkops took
    orders its own activation record, moved back with the stock)."""
    from hkops.cards import service as cards_service
    from hkops.cards.tables import sims
    from hkops.orders.tables import orders as orders_table

    with store.write() as conn:
        when = dict(conn.execute(
            select(sims.c.iccid, func.max(audit_log.c.at)).join(audit_log, audit_log.c.subject == sims.c.iccid)
            .where(sims.c.activated_at.is_not(None), audit_log.c.entity == "sim", audit_log.c.action == "activate")
            .group_by(sims.c.iccid)).all())
        when |= dict(conn.execute(
            select(orders_table.c.iccid, func.max(audit_log.c.at))
            .join(audit_log, audit_log.c.subject == orders_table.c.number)
            .join(sims, sims.c.iccid == orders_table.c.iccid)
            .where(sims.c.activated_at.is_not(None), audit_log.c.entity == "order", audit_log.c.action == "activate")
            .group_by(orders_table.c.iccid)).all())
        cards_service.backdate_activations(conn, when)


def _backdate_pool(store: Store, pool_audited: int) -> None:
    """Give the pool the past of the sales moved back: its blocks, and the states its numbers had
    before hkops took orders (the audit records up to ``pool_audited``), dated before the first
    stock came; every later move of a number dated as the order or card record written with it
    (of the orders and cards holding that number, the record nearest it in the trail)."""
    from bisect import bisect_left
    from collections import defaultdict

    from hkops import audit
    from hkops.cards.tables import sims
    from hkops.demo_distribution import DAYS
    from hkops.orders.tables import orders as orders_table

    before = utc_now() - timedelta(days=DAYS + 10)  # the stock arrived DAYS + 5 days ago
    with store.write() as conn:
        times = {i: before for i in conn.execute(select(audit_log.c.id).where(audit_log.c.id <= pool_audited))
                 .scalars()}
        carried: dict[str, list[tuple[int, object]]] = defaultdict(list)  # number -> (record id, time), by id
        for table, entity, key in ((orders_table, "order", orders_table.c.number), (sims, "sim", sims.c.iccid)):
            for msisdn, record, at in conn.execute(
                    select(table.c.msisdn, audit_log.c.id, audit_log.c.at)
                    .join(audit_log, (audit_log.c.entity == entity) & (audit_log.c.subject == key))
                    .where(table.c.msisdn.is_not(None))):
                carried[str(msisdn)].append((record, at))
        for records in carried.values():
            records.sort()
        for record, subject in conn.execute(select(audit_log.c.id, audit_log.c.subject).where(
                audit_log.c.entity == "number", audit_log.c.id > pool_audited)):
            records = carried.get(subject)
            if records:
                i = bisect_left(records, (record,))
                near = min(records[max(i - 1, 0):i + 1], key=lambda pair: abs(pair[0] - record))
                times[record] = near[1]
        audit.retime(conn, times)
        numbers_service.backdate_blocks(conn, before)


def _usage_history(store: Store, usage_dir: Path, days: int, seed: int) -> None:
    """The last ``days`` days of usage and top-ups of the world's cards, unless ``usage_dir``
    already holds records (a usage store is never overwritten by a demo)."""
    from hkops.analytics.engine import has_dataset
    from hkops.network.usage import generate_usage, inventory_cards

    if has_dataset(usage_dir, "records"):
        return
    today = utc_now().astimezone(SHANGHAI).date()
    generate_usage(inventory_cards(store), start=today - timedelta(days=days), days=days, seed=seed,
                   out_dir=usage_dir)


def resident_id(rng: random.Random, born: tuple[int, int] = (1990, 2006)) -> str:
    """A made-up but valid resident ID number of someone born in the years ``born``."""
    from stdnum.cn import ric

    body = f"{rng.choice(['110105', '110108', '310104'])}" \
           f"{rng.randrange(*born)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}{rng.randrange(1000):03d}"
    return body + ric.calc_check_digit(body + "0")


def _sell_cards(store: Store, rng: random.Random, iccids: list[str], hlr: ProvisioningClient) -> None:
    """Cards from the warehouse paired with available China Mobile numbers (sales from before
    hkops took orders), activated, some suspended or lost."""
    from hkops.cards import service as cards_service
    from hkops.subscribers import service as subscribers

    count = len(iccids)
    people = []
    while len(people) < (count + 4) // 5:
        person = subscribers.register(store, name=f"演示用户{len(people) + 1:04d}", resident_id=resident_id(rng),
                                      contact="13900000000", actor=ACTOR)
        if person.created:
            people.append(person.id)
    with store.read() as conn:
        free = list(conn.execute(
            select(numbers.c.msisdn).join(number_blocks, number_blocks.c.prefix == numbers.c.msisdn // 10_000)
            .where(number_blocks.c.carrier == "China Mobile", numbers.c.state == S.AVAILABLE.value,
                   numbers.c.grade == "ORDINARY").limit(count)).scalars())
    sold = min(len(free), count)
    # pairing hands the cards over: they leave WH-BJ for the customers through the stock ledger
    cards_service.pair_many(store, [(iccids[n], str(free[n]), people[n // 5]) for n in range(sold)], actor=ACTOR)
    cards_service.activate_many(store, iccids[:sold], actor=ACTOR, network=hlr)
    for iccid in rng.sample(iccids[:sold], sold // 20):
        cards_service.suspend(store, iccid, "arrears", actor=ACTOR, network=hlr)
    for iccid in rng.sample(iccids[:sold], sold // 50):
        if cards_service.get_card(store, iccid).state == "active":
            cards_service.report_loss(store, iccid, actor=ACTOR, network=hlr)


def _spread_states(conn, rng: random.Random) -> None:
    """Walk a share of numbers through the states a number reaches without a card:
    reserved (some past their time), blocked, and quarantined (a sale ended before hkops;
    some already past their cool-off). Numbers in service come only from sales with cards."""
    now = utc_now()
    all_numbers = sorted(conn.execute(select(numbers.c.msisdn)).scalars())
    rng.shuffle(all_numbers)
    regions = {b.prefix: b.province_zh for b in conn.execute(select(number_blocks))}
    cut = iter_cuts(all_numbers, {"quarantined": 0.015, "recyclable": 0.005, "reserved": 0.01, "expired": 0.003,
                                  "blocked": 0.004})
    held = cut["quarantined"] + cut["recyclable"] + cut["reserved"] + cut["expired"]
    holders = {m: _holder(rng, regions[m // 10_000], i) for i, m in enumerate(held)}

    def move(group, from_state, to_state, action, reason, values=None, per_number=None):
        numbers_service.move_many(conn, group, from_state, to_state, action, actor=ACTOR, reason=reason,
                                  values=values, per_number=per_number, now=now)

    ended = cut["quarantined"] + cut["recyclable"]
    cool_off = {m: now + timedelta(days=90 - rng.randrange(1, 80)) for m in cut["quarantined"]}
    cool_off |= {m: now - timedelta(days=1) for m in cut["recyclable"]}
    move(ended, S.AVAILABLE, S.ASSIGNED, "allocate", "sold before hkops",
         per_number={m: {"holder": holders[m]} for m in ended})
    move(ended, S.ASSIGNED, S.QUARANTINED, "terminate", "customer closed the account before hkops",
         values={"holder": None},
         per_number={m: {"last_holder": holders[m], "quarantine_until": cool_off[m]} for m in ended})
    waiting = cut["reserved"] + cut["expired"]
    until = {m: now + timedelta(hours=24) for m in cut["reserved"]} | {m: now - timedelta(hours=2) for m in cut["expired"]}
    move(waiting, S.AVAILABLE, S.RESERVED, "reserve", "customer is deciding",
         per_number={m: {"holder": holders[m], "reserved_until": until[m]} for m in waiting})
    move(cut["blocked"], S.AVAILABLE, S.BLOCKED, "block", "held by the regulator",
         values={"blocked_from": S.AVAILABLE.value})


def iter_cuts(items: list[int], shares: dict[str, float]) -> dict[str, list[int]]:
    """Consecutive slices of ``items`` with the given shares of its length."""
    result, start = {}, 0
    for name, share in shares.items():
        size = int(len(items) * share)
        result[name] = sorted(items[start:start + size])
        start += size
    return result


def _holder(rng: random.Random, province: str, index: int) -> str:
    if rng.random() < 0.3:
        return f"AG-{AGENT_CODES.get(province, 'XX')}-{rng.randrange(1, 13):02d}"
    return f"C{index:06d}"


def usage_folder() -> Path | None:
    """The usage store the demo writes to (``HKOPS_USAGE_STORE``, else the data folder's
    ``usage``), or None when it is not a local folder (a Spark store such as ``hdfs://``)."""
    from hkops.analytics.engine import is_uri, store_location

    location = store_location()
    return None if is_uri(location) else Path(location.removeprefix("file://"))


def empty(store: Store, hlr_dir: str | Path | None = None, usage_dir: str | Path | None = None) -> None:
    """Delete every row of every table, the HLR registry in ``hlr_dir`` and the usage records,
    top-ups, cards and live feed in ``usage_dir`` (``hkops demo --fresh``)."""
    import shutil

    if usage_dir is not None:
        for part in ("records", "topups", "cards", "stream"):
            shutil.rmtree(Path(usage_dir) / part, ignore_errors=True)

    from hkops.store.tables import metadata

    migrate.upgrade(store)
    with store.write() as conn, unguarded(conn):  # the audit trail's triggers refuse DELETE
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    if hlr_dir is not None:
        shutil.rmtree(hlr_dir, ignore_errors=True)
