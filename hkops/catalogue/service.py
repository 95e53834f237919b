"""The catalogue: SIM products, plans (套餐), their prices per agent level, and quotes.

Every change is audited in its own transaction (entity ``product`` or ``plan``). Prices
are integer fen. A plan's price at an agent level falls back to the nearest lower level
that has one, down to level 0 (the direct, retail price).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import date
from functools import cache

from sqlalchemy import Connection, select

from hkops import audit, carriers
from hkops.audit import Event
from hkops.catalogue.tables import plan_prices, plans, sim_products
from hkops.errors import Conflict, InvalidValue, InvalidValues, NotFound
from hkops.ids import split_region, parse_msisdn
from hkops.numbers.tables import number_blocks, number_grades, numbers
from hkops.store.engine import Store, unit_of_work
from hkops.timeutil import utc_now
from hkops.security import access

FORM_FACTORS = ("triple", "standard", "micro", "nano", "esim")
MIN_AGE, MAX_AGE = 0, 120
MAX_CONTRACT_MONTHS = 120
MAX_PRICE_LEVEL = 99
_BLOCK_SIZE = 10_000
_CODE = re.compile(r"[A-Z0-9_-]{1,32}")
#: Overage rates of a plan that names none (fen): ¥5 per GB, ¥0.15 per minute, ¥0.10 per SMS, the common
#: 套外 rates of Chinese carriers' plans (practice); the plans table's server defaults are the same.
DEFAULT_OVERAGE = {"data_fen_per_gb": 500, "voice_fen_per_min": 15, "sms_fen": 10}


@dataclass(frozen=True)
class Product:
    """A SIM product: one carrier, one form factor."""

    code: str
    name: str
    carrier: str
    form_factor: str
    active: bool

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """A plan (套餐) and the rules of who may have it where."""

    code: str
    name: str
    carrier: str
    monthly_fee_fen: int
    data_mb: int
    voice_minutes: int
    sms: int
    contract_months: int
    first_topup_fen: int
    min_age: int
    max_age: int
    #: English province names (as in number_blocks.province) the plan is not shipped to.
    excluded_provinces: tuple[str, ...]
    active: bool
    #: Overage (套外) beyond the allowances: fen per GB of data, per started outgoing minute, per outgoing SMS.
    overage_data_fen_per_gb: int = DEFAULT_OVERAGE["data_fen_per_gb"]
    overage_voice_fen_per_min: int = DEFAULT_OVERAGE["voice_fen_per_min"]
    overage_sms_fen: int = DEFAULT_OVERAGE["sms_fen"]

    def as_dict(self) -> dict:
        return {**asdict(self), "excluded_provinces": list(self.excluded_provinces)}


@dataclass(frozen=True)
class Quote:
    """What a customer pays for a plan with a number: ``total_fen`` = price + vanity fee + prepayment.

    ``min_monthly_fen`` is the minimum monthly spend the number's grade commits to (not paid now).
    """

    price_fen: int
    vanity_fee_fen: int
    prepay_fen: int
    min_monthly_fen: int
    total_fen: int

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- validation helpers


@cache
def _province_names() -> dict[str, str]:
    """Every accepted spelling of a province (English, Chinese full and short) to its English name."""
    from phonenumbers.geodata import GEOCODE_DATA  # large: loaded only when a province is checked

    names: dict[str, str] = {}
    for prefix, text in GEOCODE_DATA.items():
        if prefix.startswith("861") and "en" in text:
            province, _city, province_zh, _city_zh = split_region(text["en"], text.get("zh", ""))
            if province and province_zh:
                short = re.sub(r"(省|市|壮族自治区|回族自治区|维吾尔自治区|自治区)$", "", province_zh)
                names.update({province.lower(): province, province_zh: province, short: province})
    return names


def canonical_province(name: str, field: str = "province") -> str:
    """``新疆``, ``新疆维吾尔自治区`` or ``xinjiang`` to ``Xinjiang`` (as in number_blocks.province)."""
    text = " ".join(str(name or "").split())
    found = _province_names().get(text) or _province_names().get(text.lower())
    if found is None:
        known = ", ".join(sorted(set(_province_names().values())))
        raise InvalidValue(field, name, f"is not a province known in the number data ({known})")
    return found


def check_code(value: str, field: str) -> str:
    """A code: 1 to 32 letters, digits, '-' or '_', upper-cased."""
    code = str(value or "").strip().upper()
    if not _CODE.fullmatch(code):
        raise InvalidValue(field, value, "must be 1 to 32 letters, digits, '-' or '_'")
    return code


def check_name(value: str, field: str = "name") -> str:
    name = " ".join(str(value or "").split())
    if not 0 < len(name) <= 64:
        raise InvalidValue(field, value, "must be 1 to 64 characters")
    return name


def _whole(value: object, field: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(field, value, "must be a whole number")
    if value < low or (high is not None and value > high):
        limits = f"must be from {low} to {high}" if high is not None else f"must be at least {low}"
        raise InvalidValue(field, value, limits)
    return value


def _configured_carrier(conn: Connection, name: str) -> str:
    carrier = carriers.canonical_name(str(name or ""))
    if carrier not in carriers.configured(conn):
        configured = ", ".join(carriers.configured(conn)) or "none"
        raise InvalidValue("carrier", name, f"is not a configured carrier ({configured})")
    return carrier


def _collect(problems: list[InvalidValue], check, *args):
    try:
        return check(*args)
    except InvalidValue as exc:
        problems.append(exc)
        return None


def _raise(problems: list[InvalidValue], source: str) -> None:
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InvalidValues(source, problems)


# ---------------------------------------------------------------- products


def _product(row) -> Product:
    return Product(code=row.code, name=row.name, carrier=row.carrier, form_factor=row.form_factor,
                   active=bool(row.active))


def add_product(db: Store | Connection, code: str, name: str, carrier: str, form_factor: str, *, actor: str) -> str:
    """Add a SIM product of ``carrier`` in ``form_factor`` (triple, standard, micro, nano, esim); returns its code."""
    access.require(actor, "catalogue.write", f"add product {code}", db)
    code = check_code(code, "product")
    name = check_name(name)
    form = str(form_factor or "").strip().lower()
    if form not in FORM_FACTORS:
        raise InvalidValue("form_factor", form_factor, f"must be one of {', '.join(FORM_FACTORS)}")
    with unit_of_work(db) as conn:
        carrier = _configured_carrier(conn, carrier)
        if conn.execute(select(sim_products.c.code).where(sim_products.c.code == code)).first():
            raise Conflict(f"product {code} exists already")
        conn.execute(sim_products.insert().values(code=code, name=name, carrier=carrier, form_factor=form,
                                                  active=True, created_at=utc_now()))
        audit.record(conn, actor, [Event("product", code, "create", None, "active", None,
                                         {"name": name, "carrier": carrier, "form_factor": form})])
    return code


def _read(db: Store | Connection, query):
    if isinstance(db, Connection):
        return query(db)
    with db.read() as conn:
        return query(conn)


def get_product(db: Store | Connection, code: str) -> Product:
    """The product ``code``; NotFound if there is none."""
    code = str(code or "").strip().upper()
    row = _read(db, lambda conn: conn.execute(select(sim_products).where(sim_products.c.code == code)).first())
    if row is None:
        raise NotFound(f"product {code!r} does not exist")
    return _product(row)


def products_of(db: Store | Connection, carrier: str | None = None) -> list[Product]:
    """The products of ``carrier`` (all carriers when None), by code."""
    stmt = select(sim_products).order_by(sim_products.c.code)
    if carrier is not None:
        stmt = stmt.where(sim_products.c.carrier == carriers.canonical_name(carrier))
    return [_product(r) for r in _read(db, lambda conn: conn.execute(stmt).all())]


# ---------------------------------------------------------------- plans and prices


def _plan(row) -> Plan:
    return Plan(code=row.code, name=row.name, carrier=row.carrier, monthly_fee_fen=row.monthly_fee_fen,
                data_mb=row.data_mb, voice_minutes=row.voice_minutes, sms=row.sms,
                contract_months=row.contract_months, first_topup_fen=row.first_topup_fen, min_age=row.min_age,
                max_age=row.max_age, excluded_provinces=tuple(json.loads(row.excluded_provinces or "[]")),
                active=bool(row.active), overage_data_fen_per_gb=row.overage_data_fen_per_gb,
                overage_voice_fen_per_min=row.overage_voice_fen_per_min, overage_sms_fen=row.overage_sms_fen)


def add_plan(db: Store | Connection, code: str, name: str, carrier: str, *, monthly_fee_fen: int, data_mb: int,
             voice_minutes: int, sms: int, contract_months: int = 0, first_topup_fen: int = 0, min_age: int = 16,
             max_age: int = 60, excluded_provinces=(), overage_data_fen_per_gb: int | None = None,
             overage_voice_fen_per_min: int | None = None, overage_sms_fen: int | None = None, actor: str) -> Plan:
    """Add a plan; every bad value is reported at once and nothing is written. Overage rates
    left out take ``DEFAULT_OVERAGE``."""
    access.require(actor, "catalogue.write", f"add plan {code}", db)
    problems: list[InvalidValue] = []
    code = _collect(problems, check_code, code, "plan")
    name = _collect(problems, check_name, name)
    _collect(problems, _whole, monthly_fee_fen, "monthly_fee", 0)
    _collect(problems, _whole, data_mb, "data_mb", 0)
    _collect(problems, _whole, voice_minutes, "voice_minutes", 0)
    _collect(problems, _whole, sms, "sms", 0)
    _collect(problems, _whole, contract_months, "contract_months", 0, MAX_CONTRACT_MONTHS)
    _collect(problems, _whole, first_topup_fen, "first_topup", 0)
    overage = {"overage_data_fen_per_gb": overage_data_fen_per_gb, "overage_voice_fen_per_min": overage_voice_fen_per_min,
               "overage_sms_fen": overage_sms_fen}
    for key, value in overage.items():
        if value is None:
            overage[key] = DEFAULT_OVERAGE[key.removeprefix("overage_")]
        else:
            _collect(problems, _whole, value, key, 0, 100_000)
    ages = [_collect(problems, _whole, min_age, "min_age", MIN_AGE, MAX_AGE),
            _collect(problems, _whole, max_age, "max_age", MIN_AGE, MAX_AGE)]
    if None not in ages and min_age > max_age:
        problems.append(InvalidValue("min_age", min_age, f"is above max_age {max_age}"))
    if isinstance(excluded_provinces, str):
        excluded_provinces = [excluded_provinces]
    excluded = [_collect(problems, canonical_province, p, "excluded_province") for p in excluded_provinces]
    excluded = sorted({p for p in excluded if p})
    with unit_of_work(db) as conn:
        carrier = _collect(problems, _configured_carrier, conn, carrier)
        _raise(problems, "plan")
        if conn.execute(select(plans.c.code).where(plans.c.code == code)).first():
            raise Conflict(f"plan {code} exists already")
        values = dict(code=code, name=name, carrier=carrier, monthly_fee_fen=monthly_fee_fen, data_mb=data_mb,
                      voice_minutes=voice_minutes, sms=sms, contract_months=contract_months,
                      first_topup_fen=first_topup_fen, min_age=min_age, max_age=max_age,
                      excluded_provinces=json.dumps(excluded, ensure_ascii=False), active=True, **overage)
        conn.execute(plans.insert().values(**values, created_at=utc_now()))
        details = {k: v for k, v in values.items() if k not in ("code", "active", "excluded_provinces")}
        audit.record(conn, actor, [Event("plan", code, "create", None, "active", None,
                                         {**details, "excluded_provinces": excluded})])
        return get_plan(conn, code)


def get_plan(db: Store | Connection, code: str) -> Plan:
    """The plan ``code``; NotFound if there is none."""
    code = str(code or "").strip().upper()
    row = _read(db, lambda conn: conn.execute(select(plans).where(plans.c.code == code)).first())
    if row is None:
        raise NotFound(f"plan {code!r} does not exist")
    return _plan(row)


def all_plans(db: Store | Connection) -> list[Plan]:
    """Every plan, by code."""
    return [_plan(r) for r in _read(db, lambda conn: conn.execute(select(plans).order_by(plans.c.code)).all())]


def prices_of(db: Store | Connection, plan: str) -> dict[int, int]:
    """The price list of ``plan``: level to fen, only the levels set."""
    code = str(plan or "").strip().upper()
    stmt = select(plan_prices.c.level, plan_prices.c.price_fen).where(plan_prices.c.plan == code)
    return dict(sorted(_read(db, lambda conn: conn.execute(stmt).all())))


def set_price(db: Store | Connection, plan: str, level: int, price_fen: int, *, actor: str) -> None:
    """Set what ``plan`` sells for at agent price ``level`` (0 = direct retail)."""
    access.require(actor, "catalogue.write", f"set the price of plan {plan} at level {level}", db)
    _whole(level, "level", 0, MAX_PRICE_LEVEL)
    _whole(price_fen, "price", 0)
    with unit_of_work(db) as conn:
        code = get_plan(conn, plan).code
        where = (plan_prices.c.plan == code) & (plan_prices.c.level == level)
        old = conn.execute(select(plan_prices.c.price_fen).where(where)).scalar()
        if old == price_fen:
            return
        if old is None:
            conn.execute(plan_prices.insert().values(plan=code, level=level, price_fen=price_fen))
        else:
            conn.execute(plan_prices.update().where(where).values(price_fen=price_fen))
        audit.record(conn, actor, [Event("plan", code, "set_price", None, None, None,
                                         {"level": level, "from_fen": old, "to_fen": price_fen})])


def price_of(conn: Connection, plan: str | Plan, level: int) -> int:
    """The price (fen) of ``plan`` at ``level``, else at the nearest lower level that has one, finally level 0."""
    code = plan.code if isinstance(plan, Plan) else str(plan or "").strip().upper()
    _whole(level, "level", 0, MAX_PRICE_LEVEL)
    price = conn.execute(
        select(plan_prices.c.price_fen).where(plan_prices.c.plan == code, plan_prices.c.level <= level)
        .order_by(plan_prices.c.level.desc()).limit(1)
    ).scalar()
    if price is None:
        get_plan(conn, code)
        raise Conflict(f"plan {code} has no price at level {level} or below (set one with hkops catalogue price-set)")
    return price


def quote(conn: Connection, plan: str | Plan, msisdn: str, level: int) -> Quote:
    """What ``plan`` with number ``msisdn`` costs at price ``level``, with the number's grade's
    selection fee, prepayment and minimum monthly spend. The number must be of the plan's carrier."""
    plan = plan if isinstance(plan, Plan) else get_plan(conn, plan)
    msisdn = parse_msisdn(msisdn)
    row = conn.execute(
        select(numbers.c.price_fen, number_grades.c.prepay_fen, number_grades.c.min_monthly_fen,
               number_blocks.c.carrier)
        .select_from(numbers.outerjoin(number_grades, number_grades.c.grade == numbers.c.grade)
                     .outerjoin(number_blocks, number_blocks.c.prefix == int(msisdn) // _BLOCK_SIZE))
        .where(numbers.c.msisdn == int(msisdn))
    ).first()
    if row is None:
        raise NotFound(f"number {msisdn} is not in the pool")
    if row.carrier != plan.carrier:
        raise InvalidValue("msisdn", msisdn, f"is a {row.carrier} number; plan {plan.code} is {plan.carrier}")
    price = price_of(conn, plan, level)
    vanity, prepay = row.price_fen, row.prepay_fen or 0
    return Quote(price_fen=price, vanity_fee_fen=vanity, prepay_fen=prepay, min_monthly_fen=row.min_monthly_fen or 0,
                 total_fen=price + vanity + prepay)


def age_on(birth_date: date, day: date) -> int:
    """Age in whole years on ``day``."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def customer_problems(plan: Plan, birth_date: date, ship_province: str, today: date) -> list[str]:
    """Why a customer born on ``birth_date``, shipping to ``ship_province``, cannot have ``plan``
    (empty when they can). An unknown province is bad input (InvalidValue), not a problem."""
    province = canonical_province(ship_province, "ship_province")
    problems = []
    age = age_on(birth_date, today)
    if not plan.min_age <= age <= plan.max_age:
        problems.append(f"age {age} is outside plan {plan.code}'s limits {plan.min_age}–{plan.max_age}")
    if province in plan.excluded_provinces:
        problems.append(f"plan {plan.code} does not ship to {province}")
    return problems
