"""Usage records and top-ups as the core network would produce them (话单 / 充值记录).

``generate_usage`` turns a snapshot of SIM cards into voice, SMS and data records and
top-up records, day by day, and writes them to a partitioned Parquet store that pandas
and DuckDB read directly (``hkops.analytics.usage_stats`` queries it).

The ``cards`` frame (the interface to the card lifecycle; one row per SIM card)
-------------------------------------------------------------------------------

=============  ========================================================================
column         meaning
=============  ========================================================================
msisdn         int64, the number without ``+86`` (``13800138000``). Required.
imsi           str or int, 15 digits. Required. One card = one IMSI; a replaced card
               keeps its old IMSI and the number gets a new row with a new IMSI.
province       str, Chinese name as stored by hkops (``广东省``). Required.
city           str (``深圳市``). Required; blank or missing is read as the province.
state          str, the SIM card state of DOMAIN.md section 5. Required.
activated_at   datetime (UTC, or naive UTC), optional. A card makes no usage before it.
is_5g          bool, optional. Without it 52% of cards are drawn as 5G (DOMAIN.md 7).
plan           str, optional: the catalogue plan the card was sold with (``CM-58``).
channel        str, optional: the order's sales channel (the selling agent's code, or
               ``direct``).
agent          str, optional: the selling agent's code, blank for direct sales.
=============  ========================================================================

The frame is a snapshot held for the whole window. What each state produces:

- ``active``: billable usage (voice MO/MT, SMS MO/MT, data) and top-ups.
- ``suspended``, ``lost``, ``terminated``, ``replaced``: the network refuses every
  attempt, and the refusal is recorded (``refused = true``, ``refusal`` = the state,
  zero duration, zero volume, zero charge). A lost or replaced card being used is a
  fraud signal. Suspended cards may still top up (to be resumed).
- any other state (``in_stock``, ``allocated``, ``paired``, ``faulty``, ...): the card
  is not in the HLR and produces nothing.

Parquet layout
--------------
``out_dir/records/day=YYYY-MM-DD/part-0.parquet`` and
``out_dir/topups/day=YYYY-MM-DD/part-0.parquet`` (hive partitions), and
``out_dir/cards/part-0.parquet``: the cards of the latest run (``CARD_COLUMNS``: where
each card lives, its state, plan and sales channel), which statistics by plan and
channel join on ``msisdn``. ``day`` is the
business day in Asia/Shanghai; ``start`` / ``at`` are UTC timestamps (microseconds).
Re-generating a day replaces its partition. Ids are ``day_number << 32 | sequence``
(day_number = days since 1970-01-01), so they are unique across runs over different
days. Repeated strings are dictionary-encoded; money is integer fen.

Calibration (DOMAIN.md section 7): data per active card 17.82 GiB per 30 days and
outgoing voice 101.2 minutes per 30 days (MIIT's national figures for April 2024), SMS
small, 52% of cards on 5G, per-card activity lognormal (the top tenth of users carry
about half the data), an evening peak and a pre-dawn trough, weekday/weekend rhythm,
provincial data use after what MIIT publishes of it (``_PROVINCE_DOU_GB``: the sources
and what is a placeholder are named there). The rhythms are illustrative.

Records leave the network unrated (``charge_fen`` 0): what a card pays follows the plan it
was sold with (monthly fee, allowances, overage rates of the catalogue), which
``hkops.analytics.usage_stats.rate`` and ``bills`` apply.
"""

from __future__ import annotations

import shutil
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hkops.errors import InvalidValue

#: Record types, in code order (the ``type`` column's dictionary).
RECORD_TYPES = ("voice_mo", "voice_mt", "sms_mo", "sms_mt", "data")
VOICE_MO, VOICE_MT, SMS_MO, SMS_MT, DATA = range(5)
#: Card states whose attempts the network refuses (and records); the refusal reason is the state.
REFUSING_STATES = ("suspended", "lost", "terminated", "replaced")
TOPUP_CHANNELS = ("wechat", "alipay", "app", "agent", "store", "card")
RATS = ("4G", "5G")

GIB = 1 << 30
US_PER_S = 1_000_000
US_PER_HOUR = 3_600 * US_PER_S
US_PER_DAY = 24 * US_PER_HOUR
SHANGHAI_OFFSET_US = 8 * US_PER_HOUR  # Asia/Shanghai has no daylight saving time

# --- calibration ---------------------------------------------------------------------
# Source of the national means and the provincial data figures: MIIT (工业和信息化部),
# 《2024年1—4月份通信业经济运行情况》, published May 2024, unless a line says otherwise.
#: Data per active card per 30 days (GiB): April 2024 DOU (户均移动互联网接入流量) 17.82 GB/户·月.
DOU_GIB = 17.82
#: Outgoing voice minutes per card per 30 days: 移动电话去话通话时长 7,089亿 minutes in January to
#: April 2024, over 17.515亿 subscriptions on average (17.44亿 at the end of 2023, 17.59亿 at the end
#: of April): 7089 / 4 / 17.515 = 101.2 minutes a month.
VOICE_MO_MINUTES = 101.2
#: Mean call length (s), lognormal sigma.
CALL_MEAN_S, CALL_SIGMA = 120.0, 1.0
#: Mean records per active card per day, by type (voice_mt follows voice_mo; data records are partial CDRs).
RECORDS_PER_DAY = {
    VOICE_MO: VOICE_MO_MINUTES * 60 / 30 / CALL_MEAN_S,
    VOICE_MT: 1.5,
    SMS_MO: 0.25,
    SMS_MT: 1.2,
    DATA: 10.0,
}
#: Lognormal sigma of the per-card activity multipliers (mean 1): data, voice, SMS.
ACTIVITY_SIGMA = {"data": 1.3, "voice": 0.9, "sms": 1.0}
#: Caps on the multipliers: about 470 GiB of data and 2,000 outgoing minutes a month at most (fair-use limits).
ACTIVITY_CAP = {"data": 25.0, "voice": 20.0, "sms": 30.0}
#: Correlation of a card's data, voice and SMS activity.
ACTIVITY_CORRELATION = 0.5
#: Share of 5G cards, and their data use relative to the average card (4G cards get the rest).
SHARE_5G, DATA_5G_FACTOR = 0.52, 1.25
#: Chance that a card spends a given day in another city (travel; destinations weighted by population of cards).
TRAVEL_PER_DAY = 0.03
#: Chance that a record is served by some other cell of the city than home or work.
OTHER_CELL = 0.15
#: Refused attempts per card-day by state, before a lognormal multiplier (sigma 1.5).
REFUSALS_PER_DAY = {"suspended": 0.6, "lost": 0.2, "terminated": 0.03, "replaced": 0.1}
REFUSAL_TYPE_P = np.array([0.5, 0, 0.2, 0, 0.3])
#: Top-ups per active card-day (about one a month), for suspended cards, amounts and channels.
TOPUPS_PER_DAY, SUSPENDED_TOPUPS_PER_DAY = 1 / 30, 0.05
TOPUP_AMOUNTS_FEN = np.array([1_000, 2_000, 3_000, 5_000, 10_000, 20_000], dtype=np.int64)
TOPUP_AMOUNT_P = np.array([0.08, 0.20, 0.20, 0.30, 0.17, 0.05])
TOPUP_CHANNEL_P = np.array([0.42, 0.28, 0.15, 0.08, 0.05, 0.02])

#: The columns of ``out_dir/cards/part-0.parquet`` (plan, channel and agent null when not known).
CARD_COLUMNS = ("msisdn", "province", "city", "state", "plan", "channel", "agent")

#: Relative weight of each local hour (Asia/Shanghai), per record type group.
_HOURS_DATA = np.array([0.55, 0.32, 0.18, 0.11, 0.09, 0.10, 0.22, 0.50, 0.80, 0.90, 0.95, 1.00,
                        1.12, 1.05, 0.95, 0.95, 0.98, 1.05, 1.15, 1.30, 1.48, 1.55, 1.42, 1.00])
_HOURS_VOICE = np.array([0.12, 0.06, 0.03, 0.02, 0.02, 0.04, 0.15, 0.45, 0.95, 1.30, 1.45, 1.35,
                         1.00, 0.95, 1.20, 1.35, 1.35, 1.30, 1.25, 1.20, 1.10, 0.90, 0.60, 0.30])
_HOURS_SMS = np.array([0.20, 0.10, 0.05, 0.04, 0.04, 0.08, 0.25, 0.60, 1.00, 1.20, 1.25, 1.25,
                       1.20, 1.10, 1.15, 1.20, 1.20, 1.25, 1.30, 1.25, 1.20, 1.05, 0.80, 0.45])
_HOURS_TOPUP = np.array([0.25, 0.10, 0.05, 0.03, 0.03, 0.05, 0.20, 0.55, 0.95, 1.10, 1.20, 1.25,
                         1.30, 1.15, 1.10, 1.10, 1.10, 1.15, 1.25, 1.35, 1.45, 1.40, 1.10, 0.60])
_HOUR_PROFILES = np.stack([_HOURS_VOICE, _HOURS_VOICE, _HOURS_SMS, _HOURS_SMS, _HOURS_DATA])
#: Day-of-week factors (Monday first) per type; each row has mean 1 over a week.
_WEEK = np.array([
    [1.08, 1.06, 1.06, 1.05, 1.08, 0.85, 0.82],   # voice_mo: business calls fall at weekends
    [1.08, 1.06, 1.06, 1.05, 1.08, 0.85, 0.82],   # voice_mt
    [1.05, 1.04, 1.04, 1.04, 1.05, 0.90, 0.88],   # sms_mo
    [1.10, 1.08, 1.08, 1.07, 1.07, 0.82, 0.78],   # sms_mt: notifications follow business days
    [0.97, 0.96, 0.96, 0.97, 1.00, 1.08, 1.06],   # data: more at weekends
])
_WEEK = _WEEK / _WEEK.mean(axis=1, keepdims=True)

#: Data per subscription per month (DOU, GB) by province, after MIIT. MIIT publishes the value of
#: every province only as a chart (图: 各省户均移动互联网接入流量); its text names, and only these are
#: sourced here:
#: - April 2024 (national 17.82): 西藏、青海、宁夏、海南、新疆、云南、湖南、贵州 above 20 GB/户·月,
#:   the highest less the lowest province 15.6 GB/户·月; 西藏 the highest (also in every monthly
#:   report naming a top province: May 2020, June 2020, October 2021);
#: - October 2021 (《2021年1—10月份通信业经济运行情况》): 黑龙江、上海、河北 the three lowest;
#: - December 2023 (《2023年通信业统计公报》): DOU by region, west 19.91, central 19.54,
#:   east 18.63 (19.91 − 1.28), northeast 14.86 (19.91 − 5.05) GB/户·月.
#: Provinces the text does not name take their region's December 2023 figure; the seven named above
#: 20 GB take 20.5, the three lowest 12.0 and 西藏 12.0 + 15.6. These placeholders keep the sourced
#: ordering; they are not MIIT's provincial values, which the published text does not give.
#: A search of stored copies of MIIT's reports and their press coverage (November 2026) found no
#: table of 2024 values per province either: the only provincial figures in the text are older,
#: 西藏 15.95, 云南 15.06, 贵州 14.81 GB in June 2020 (national 10.14, highest less lowest 9.15;
#: 《2020年上半年通信业经济运行情况》) and 西藏 23.4, the lowest 9.3 GB in October 2021 (national
#: 14.32). Their ratios to the national mean (西藏 1.57 and 1.63, the lowest 0.65) agree with the
#: placeholders' (27.6 / 17.82 = 1.55, 12.0 / 17.82 = 0.67).
_PROVINCE_DOU_GB = {
    # east (东部)
    "北京": 18.63, "天津": 18.63, "河北": 12.0, "上海": 12.0, "江苏": 18.63, "浙江": 18.63, "福建": 18.63,
    "山东": 18.63, "广东": 18.63, "海南": 20.5,
    # central (中部)
    "山西": 19.54, "安徽": 19.54, "江西": 19.54, "河南": 19.54, "湖北": 19.54, "湖南": 20.5,
    # west (西部)
    "内蒙古": 19.91, "广西": 19.91, "重庆": 19.91, "四川": 19.91, "贵州": 20.5, "云南": 20.5, "西藏": 27.6,
    "陕西": 19.91, "甘肃": 19.91, "青海": 20.5, "宁夏": 20.5, "新疆": 20.5,
    # northeast (东北)
    "辽宁": 14.86, "吉林": 14.86, "黑龙江": 12.0,
}
#: MIIT's text gives no provincial figure for voice minutes: every province makes the national mean.

RECORD_SCHEMA = pa.schema([
    ("record_id", pa.int64()),
    ("type", pa.dictionary(pa.int8(), pa.string())),
    ("imsi", pa.dictionary(pa.int32(), pa.string())),
    ("msisdn", pa.int64()),
    ("start", pa.timestamp("us", tz="UTC")),
    ("duration_s", pa.int32()),
    ("bytes_up", pa.int64()),
    ("bytes_down", pa.int64()),
    ("cell_id", pa.int64()),
    ("area", pa.dictionary(pa.int32(), pa.string())),
    ("region", pa.dictionary(pa.int32(), pa.string())),
    ("rat", pa.dictionary(pa.int8(), pa.string())),
    ("charge_fen", pa.int64()),
    ("refused", pa.bool_()),
    ("refusal", pa.dictionary(pa.int8(), pa.string())),
])
TOPUP_SCHEMA = pa.schema([
    ("topup_id", pa.int64()),
    ("msisdn", pa.int64()),
    ("at", pa.timestamp("us", tz="UTC")),
    ("amount_fen", pa.int64()),
    ("channel", pa.dictionary(pa.int8(), pa.string())),
])
#: The schema of ``out_dir/cards/part-0.parquet`` (:data:`CARD_COLUMNS`).
CARD_SCHEMA = pa.schema([
    ("msisdn", pa.int64()), ("province", pa.string()), ("city", pa.string()), ("state", pa.string()),
    ("plan", pa.string()), ("channel", pa.string()), ("agent", pa.string())])


@dataclass
class UsageSummary:
    """What one ``generate_usage`` run wrote."""

    out_dir: str
    start: str
    days: int
    seed: int
    cards_active: int
    cards_refusing: int
    records: int = 0
    refused: int = 0
    topups: int = 0
    data_bytes: int = 0
    voice_mo_seconds: int = 0
    charge_fen: int = 0
    topup_fen: int = 0
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["records_per_s"] = round(self.records_per_s)
        out["seconds"] = round(self.seconds, 3)
        out["files"] = len(self.files)
        return out


def _province_dou(province: str) -> float | None:
    for key, dou in _PROVINCE_DOU_GB.items():
        if province.startswith(key):
            return dou
    return None


def _national_dou() -> float:
    """The provinces' DOU weighted by their share of cards (``DEMO_WEIGHTS``), as MIIT's national
    figure is the provinces' weighted by their subscriptions."""
    weighted = [(DEMO_WEIGHTS[name], _province_dou(name)) for name in DEMO_WEIGHTS]
    return sum(w * d for w, d in weighted) / sum(w for w, _ in weighted)


def _province_factors(province: str) -> tuple[float, float]:
    """(data, voice) of a province relative to the national mean."""
    dou = _province_dou(province)
    return (dou / _national_dou() if dou else 1.0), 1.0


def _capped_lognormal_mean(sigma: float, cap: float) -> float:
    """E[min(X, cap)] for X lognormal with mean 1: dividing by it keeps the capped multipliers
    mean at 1 (the cap alone would take about 1% off the data use)."""
    from math import erf, log, sqrt

    def phi(x: float) -> float:
        return (1 + erf(x / sqrt(2))) / 2

    above = (log(cap) + sigma * sigma / 2) / sigma  # X > cap  <=>  Z > above
    return phi(above - sigma) + cap * (1 - phi(above))


def _stable_code(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _check_cards(cards: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("msisdn", "imsi", "province", "city", "state") if c not in cards.columns]
    if missing:
        raise InvalidValue("cards", list(cards.columns), f"missing column(s) {', '.join(missing)}")
    frame = cards.copy()
    try:
        frame["msisdn"] = frame["msisdn"].astype("int64")
    except (TypeError, ValueError):
        raise InvalidValue("msisdn", None, "must be integers such as 13800138000") from None
    frame["imsi"] = frame["imsi"].astype(str)
    frame["state"] = frame["state"].astype(str).str.strip().str.lower()
    frame["province"] = frame["province"].fillna("").astype(str).str.strip()
    frame["city"] = frame["city"].fillna("").astype(str).str.strip()
    for column in ("plan", "channel", "agent"):
        values = frame[column] if column in frame.columns else pd.Series(None, index=frame.index, dtype=object)
        values = values.astype(object).where(values.notna(), None)
        frame[column] = [str(v).strip() or None if v is not None else None for v in values]
    frame.loc[frame["province"] == "", "province"] = "未知"
    blank_city = frame["city"] == ""
    frame.loc[blank_city, "city"] = frame.loc[blank_city, "province"]
    return frame.sort_values(["msisdn", "imsi"], kind="stable").reset_index(drop=True)


@dataclass
class _Population:
    """Per-card arrays for the cards the network knows (active + refusing), fixed for a run."""

    n: int
    msisdn: np.ndarray
    imsi_dict: pa.Array
    active: np.ndarray          # bool
    refusal: np.ndarray         # int8 index into REFUSING_STATES, -1 when active
    city: np.ndarray            # int32 index into cities
    city_province: np.ndarray   # int32 index into provinces, per city
    cities: pa.Array
    provinces: pa.Array
    city_cell_base: np.ndarray  # int64 per city
    city_cells: np.ndarray      # int64 per city: number of cells
    home_cell: np.ndarray       # int64 offset within the city
    work_cell: np.ndarray
    rat: np.ndarray             # int8 index into RATS
    m_data: np.ndarray          # float64 multipliers, mean about 1 over active cards
    m_voice: np.ndarray
    m_sms: np.ndarray
    m_refuse: np.ndarray
    activated_us: np.ndarray    # int64, card makes nothing before it


def _population(frame: pd.DataFrame, rng: np.random.Generator) -> _Population:
    net = frame[frame["state"].isin(("active",) + REFUSING_STATES)].reset_index(drop=True)
    n = len(net)
    state = net["state"].to_numpy()
    active = state == "active"
    refusal = np.full(n, -1, dtype=np.int8)
    for i, s in enumerate(REFUSING_STATES):
        refusal[state == s] = i

    city_key = net["province"] + "\x00" + net["city"]
    city_codes, city_uniques = pd.factorize(city_key, sort=True)
    city_names = [k.split("\x00", 1)[1] for k in city_uniques]
    city_prov_names = [k.split("\x00", 1)[0] for k in city_uniques]
    prov_codes, prov_uniques = pd.factorize(pd.Series(city_prov_names, dtype=object), sort=True)
    city_counts = np.bincount(city_codes, minlength=len(city_uniques)) if n else np.zeros(0, np.int64)
    city_cells = np.clip(city_counts // 40, 16, 4096).astype(np.int64)
    city_cell_base = np.array([_stable_code(k) * 4096 for k in city_uniques], dtype=np.int64)

    # Per-card activity: correlated lognormals with mean 1.
    z_common = rng.standard_normal(n)
    rho = ACTIVITY_CORRELATION

    def lognormal(kind: str) -> np.ndarray:
        sigma, cap = ACTIVITY_SIGMA[kind], ACTIVITY_CAP[kind]
        z = rho * z_common + np.sqrt(1 - rho * rho) * rng.standard_normal(n)
        return np.minimum(np.exp(sigma * z - sigma * sigma / 2), cap) / _capped_lognormal_mean(sigma, cap)

    m_data, m_voice, m_sms = lognormal("data"), lognormal("voice"), lognormal("sms")
    pf = np.array([_province_factors(p) for p in prov_uniques]).reshape(-1, 2)
    card_prov = prov_codes[city_codes] if n else np.zeros(0, np.int64)
    if n:
        m_data *= pf[card_prov, 0]
        m_voice *= pf[card_prov, 1]
    if "is_5g" in net.columns:
        is_5g = net["is_5g"].fillna(False).astype(bool).to_numpy()
    else:
        is_5g = rng.random(n) < SHARE_5G
    data_4g = (1 - SHARE_5G * DATA_5G_FACTOR) / (1 - SHARE_5G)
    m_data *= np.where(is_5g, DATA_5G_FACTOR, data_4g)

    if "activated_at" in net.columns:
        at = pd.to_datetime(net["activated_at"], utc=True, errors="coerce").dt.tz_localize(None)
        activated_us = at.to_numpy("datetime64[us]").astype(np.int64)
        activated_us[at.isna().to_numpy()] = np.iinfo(np.int64).min
    else:
        activated_us = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)

    cells_of_card = city_cells[city_codes] if n else np.zeros(0, np.int64)
    return _Population(
        n=n,
        msisdn=net["msisdn"].to_numpy(np.int64),
        imsi_dict=pa.array(net["imsi"].to_numpy(object), type=pa.string()),
        active=active,
        refusal=refusal,
        city=city_codes.astype(np.int32),
        city_province=prov_codes.astype(np.int32),
        cities=pa.array(city_names, type=pa.string()),
        provinces=pa.array(list(prov_uniques), type=pa.string()),
        city_cell_base=city_cell_base,
        city_cells=city_cells,
        home_cell=(rng.random(n) * cells_of_card).astype(np.int64),
        work_cell=(rng.random(n) * cells_of_card).astype(np.int64),
        rat=is_5g.astype(np.int8),
        m_data=m_data, m_voice=m_voice, m_sms=m_sms,
        m_refuse=np.exp(1.5 * rng.standard_normal(n) - 1.125),
        activated_us=activated_us,
    )


def _dict(indices: np.ndarray, dictionary: pa.Array, mask: np.ndarray | None = None) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(indices, mask=mask), dictionary)


_LUT_BINS = 4096


def _hour_table(profiles: np.ndarray) -> np.ndarray:
    """Per type, the local hour for each of ``_LUT_BINS`` equal slices of [0, 1): inverse-CDF sampling by look-up."""
    cdf = np.cumsum(profiles / profiles.sum(axis=1, keepdims=True), axis=1)
    u = (np.arange(_LUT_BINS) + 0.5) / _LUT_BINS
    return np.stack([np.minimum(np.searchsorted(row, u, side="right"), 23) for row in cdf]).astype(np.int64).ravel()


_HOUR_LUT = _hour_table(_HOUR_PROFILES)
_HOUR_LUT_TOPUP = _hour_table(_HOURS_TOPUP[None, :])
_TYPE_DICT = pa.array(RECORD_TYPES, type=pa.string())
_RAT_DICT = pa.array(RATS, type=pa.string())
_REFUSAL_DICT = pa.array(REFUSING_STATES, type=pa.string())
_CHANNEL_DICT = pa.array(TOPUP_CHANNELS, type=pa.string())


def _sample_hours(rng: np.random.Generator, types: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Local hour of each record, drawn from its type's hour-of-day profile."""
    slot = (rng.random(len(types), dtype=np.float32) * _LUT_BINS).astype(np.int64)
    np.minimum(slot, _LUT_BINS - 1, out=slot)
    slot += types.astype(np.int64) * _LUT_BINS
    return table[slot]


def _records_table(pop: _Population, first_id: int, rtype, card, city, start, duration, bytes_up, bytes_down,
                   cell_id, charge, refusal: np.ndarray | None) -> pa.Table:
    n = card.size
    refused = refusal is not None
    return pa.Table.from_arrays([
        pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
        _dict(rtype, _TYPE_DICT),
        _dict(card.astype(np.int32), pop.imsi_dict),
        pa.array(pop.msisdn[card]),
        pa.array(start, type=pa.timestamp("us", tz="UTC")),
        pa.array(duration),
        pa.array(bytes_up),
        pa.array(bytes_down),
        pa.array(cell_id),
        _dict(city, pop.cities),
        _dict(pop.city_province[city], pop.provinces),
        _dict(pop.rat[card], _RAT_DICT),
        pa.array(charge),
        pa.array(np.full(n, refused)),
        _dict(refusal if refused else np.zeros(n, np.int8), _REFUSAL_DICT, mask=None if refused else np.ones(n, bool)),
    ], schema=RECORD_SCHEMA)


def _usage_rates(pop: _Population, cards: np.ndarray, week: np.ndarray | None = None) -> np.ndarray:
    """Expected records a day of each of ``cards`` (active), one column per record type: the type's
    mean times the card's multiplier (data sessions and incoming SMS take its square root), times
    ``week``'s factor per type (none: the week's mean)."""
    week = np.ones(5) if week is None else week
    sq_data = np.sqrt(pop.m_data[cards])
    lam = np.empty((len(cards), 5))
    lam[:, VOICE_MO] = RECORDS_PER_DAY[VOICE_MO] * week[VOICE_MO] * pop.m_voice[cards]
    lam[:, VOICE_MT] = RECORDS_PER_DAY[VOICE_MT] * week[VOICE_MT] * pop.m_voice[cards]
    lam[:, SMS_MO] = RECORDS_PER_DAY[SMS_MO] * week[SMS_MO] * pop.m_sms[cards]
    lam[:, SMS_MT] = RECORDS_PER_DAY[SMS_MT] * week[SMS_MT] * np.sqrt(pop.m_sms[cards])
    lam[:, DATA] = RECORDS_PER_DAY[DATA] * week[DATA] * sq_data
    return lam


def _refusal_rates(pop: _Population, cards: np.ndarray) -> np.ndarray:
    """Expected refused attempts a day of each of ``cards`` (suspended, lost, terminated, replaced)."""
    return np.array([REFUSALS_PER_DAY[s] for s in REFUSING_STATES])[pop.refusal[cards]] * pop.m_refuse[cards]


def _sessions(rng: np.random.Generator, rtype: np.ndarray, sq_data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Duration (s) and bytes up and down of records of types ``rtype``: calls lognormal (mean
    CALL_MEAN_S), data sessions lognormal (mean ~15 min, at most 3 hours) whose volume makes the
    30-day mean DOU_GIB for the mean card, scaled by ``sq_data`` (the square root of each record's
    card's data multiplier); SMS take no time and no volume."""
    n = rtype.size
    is_data = rtype == DATA
    is_voice = rtype <= VOICE_MT
    z = rng.standard_normal(n)
    call_s = np.exp(np.log(CALL_MEAN_S) - CALL_SIGMA ** 2 / 2 + CALL_SIGMA * z)
    data_s = np.minimum(np.exp(np.log(900) - 0.5 + z), 3 * 3600)
    duration = np.where(is_voice, np.maximum(call_s, 1), np.where(is_data, data_s, 0)).astype(np.int32)
    per_session = DOU_GIB * GIB / 30 / RECORDS_PER_DAY[DATA]
    size = np.exp(rng.standard_normal(n) - 0.5) * per_session * sq_data
    total = np.where(is_data, size, 0).astype(np.int64)
    bytes_up = (total * (0.04 + 0.12 * rng.random(n))).astype(np.int64)
    return duration, bytes_up, total - bytes_up


def _refusals_table(pop: _Population, first_id: int, rtype, card, city, start) -> pa.Table:
    """Refused attempts (reason: the card's state) as records: at the card's home cell in ``city``,
    no time, no volume, no charge."""
    zeros = np.zeros(card.size, np.int64)
    cell = pop.city_cell_base[city] + pop.home_cell[card] % pop.city_cells[city]
    return _records_table(pop, first_id, rtype, card, city, start, np.zeros(card.size, np.int32), zeros, zeros, cell,
                          zeros, pop.refusal[card])


def _day_records(pop: _Population, rng: np.random.Generator, day: date, day_number: int) -> tuple[pa.Table, dict]:
    """Every record of one local day: billable usage of active cards, then refusals."""
    day_start_us = day_number * US_PER_DAY - SHANGHAI_OFFSET_US
    day_end_us = day_start_us + US_PER_DAY
    weekday = day.weekday()
    week = _WEEK[:, weekday] * np.exp(0.03 * rng.standard_normal(5))  # a little day-to-day noise

    live = pop.active & (pop.activated_us < day_end_us)
    idx = np.flatnonzero(live)
    lam = _usage_rates(pop, idx, week)
    counts = rng.poisson(lam).ravel()
    slot = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    local = slot // 5
    card = idx[local]
    rtype = (slot % 5).astype(np.int8)
    del slot
    n = card.size

    hours = _sample_hours(rng, rtype, _HOUR_LUT)
    start = day_start_us + hours * US_PER_HOUR + (rng.random(n) * US_PER_HOUR).astype(np.int64)

    duration, bytes_up, bytes_down = _sessions(rng, rtype, np.sqrt(pop.m_data[card]))

    # Place: home or work cell, some other cell of the city, or a day spent travelling.
    travelling = rng.random(pop.n) < TRAVEL_PER_DAY
    destination = pop.city[rng.integers(0, max(pop.n, 1), pop.n)] if pop.n else pop.city
    day_city = np.where(travelling, destination, pop.city)
    rec_city = day_city[card]
    cells = pop.city_cells[rec_city]
    office = (hours >= 9) & (hours < 18) & (weekday < 5)
    cell = np.where(office, pop.work_cell[card], pop.home_cell[card])
    wander = travelling[card] | (rng.random(n) < OTHER_CELL)
    cell = np.where(wander, (rng.random(n) * cells).astype(np.int64), cell) % cells
    cell_id = pop.city_cell_base[rec_city] + cell

    charge = np.zeros(n, dtype=np.int64)  # unrated: billing prices usage by the plan sold

    # A card activated during the day makes nothing before its activation.
    keep = start >= pop.activated_us[card]
    if not keep.all():
        card, rtype, start, duration, bytes_up, bytes_down = card[keep], rtype[keep], start[keep], duration[keep], bytes_up[keep], bytes_down[keep]
        cell_id, rec_city, charge = cell_id[keep], rec_city[keep], charge[keep]
        n = card.size

    # Refused attempts by suspended / lost / terminated / replaced cards.
    ref_idx = np.flatnonzero(~pop.active)
    ref_counts = rng.poisson(_refusal_rates(pop, ref_idx))
    r_card = np.repeat(ref_idx, ref_counts)
    m = r_card.size
    r_type = rng.choice(5, size=m, p=REFUSAL_TYPE_P).astype(np.int8)
    r_start = day_start_us + _sample_hours(rng, r_type, _HOUR_LUT) * US_PER_HOUR + (rng.random(m) * US_PER_HOUR).astype(np.int64)
    base = day_number << 32
    usage = _records_table(pop, base, rtype, card, rec_city, start, duration, bytes_up, bytes_down, cell_id, charge, None)
    refusals = _refusals_table(pop, base + n, r_type, r_card, pop.city[r_card], r_start)
    table = pa.concat_tables([usage, refusals])
    total_n = n + m
    stats = {
        "records": total_n, "refused": m, "data_bytes": int(bytes_up.sum() + bytes_down.sum()),
        "voice_mo_seconds": int(duration[rtype == VOICE_MO].sum(dtype=np.int64)), "charge_fen": int(charge.sum()),
    }
    return table, stats


def _day_topups(pop: _Population, rng: np.random.Generator, day: date, day_number: int) -> tuple[pa.Table, dict]:
    day_start_us = day_number * US_PER_DAY - SHANGHAI_OFFSET_US
    spend = 0.7 * pop.m_data + 0.3 * pop.m_voice
    month_start = 1.8 if day.day <= 3 else 0.92  # people top up around the start of the month
    lam = np.where(pop.active & (pop.activated_us < day_start_us + US_PER_DAY), TOPUPS_PER_DAY * spend * month_start, 0.0)
    lam = np.where(pop.refusal == 0, SUSPENDED_TOPUPS_PER_DAY, lam)
    card = np.repeat(np.arange(pop.n), rng.poisson(lam))
    k = card.size
    hours = _sample_hours(rng, np.zeros(k, np.int8), _HOUR_LUT_TOPUP)
    at = day_start_us + hours * US_PER_HOUR + (rng.random(k) * US_PER_HOUR).astype(np.int64)
    keep = at >= pop.activated_us[card]
    card, at = card[keep], at[keep]
    k = card.size
    amount = TOPUP_AMOUNTS_FEN[rng.choice(len(TOPUP_AMOUNTS_FEN), size=k, p=TOPUP_AMOUNT_P)]
    channel = rng.choice(len(TOPUP_CHANNELS), size=k, p=TOPUP_CHANNEL_P).astype(np.int8)
    table = pa.Table.from_arrays([
        pa.array(np.arange(k, dtype=np.int64) + (day_number << 32)),
        pa.array(pop.msisdn[card]),
        pa.array(at, type=pa.timestamp("us", tz="UTC")),
        pa.array(amount),
        _dict(channel, _CHANNEL_DICT),
    ], schema=TOPUP_SCHEMA)
    return table, {"topups": k, "topup_fen": int(amount.sum())}


#: Parquet options per dataset (keyed by its first column): dictionary pages only for repeated
#: values, delta encoding for sequential ids, statistics for the columns queries filter on.
#: Together about 1.6x faster than pyarrow's defaults, and smaller.
_WRITE_OPTIONS = {
    "record_id": dict(use_dictionary=["type", "imsi", "msisdn", "area", "region", "rat", "refusal"],
                      write_statistics=["record_id", "type", "msisdn", "start", "region", "refused"],
                      column_encoding={"record_id": "DELTA_BINARY_PACKED"}),
    "topup_id": dict(use_dictionary=["channel"], write_statistics=["topup_id", "msisdn", "at"],
                     column_encoding={"topup_id": "DELTA_BINARY_PACKED"}),
}


def _write(table: pa.Table, directory: Path, compression: str) -> str:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    path = directory / "part-0.parquet"
    pq.write_table(table, path, compression=compression, row_group_size=1 << 20, **_WRITE_OPTIONS[table.schema.names[0]])
    return str(path)


def _write_cards(frame: pd.DataFrame, out_dir: Path) -> str:
    table = pa.Table.from_pandas(frame[list(CARD_COLUMNS)], preserve_index=False, schema=CARD_SCHEMA)
    directory = out_dir / "cards"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    path = directory / "part-0.parquet"
    pq.write_table(table, path)
    return str(path)


def generate_usage(
    cards: pd.DataFrame,
    *,
    start: date,
    days: int,
    seed: int,
    out_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    compression: str = "snappy",
) -> UsageSummary:
    """Generate ``days`` local days of usage and top-ups from ``start`` for ``cards``.

    Writes ``out_dir/records/day=…/part-0.parquet`` and ``out_dir/topups/day=…/…``
    (see the module text for the ``cards`` contract and the layout). The same cards,
    seed and day give the same records whatever the window they are generated in.
    ``progress(done, total)`` is called after each day.
    """
    if days < 1:
        raise InvalidValue("days", days, "must be at least 1")
    if isinstance(start, datetime):
        start = start.date()
    out_dir = Path(out_dir)
    began = time.perf_counter()
    frame = _check_cards(cards)
    pop = _population(frame, np.random.default_rng(np.random.SeedSequence([seed, 0])))
    summary = UsageSummary(out_dir=str(out_dir), start=start.isoformat(), days=days, seed=seed,
                           cards_active=int(pop.active.sum()), cards_refusing=int((~pop.active).sum()))
    epoch = date(1970, 1, 1)
    pending = []
    # Parquet encoding releases the GIL: write day d while day d+1 is generated.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for i in range(days):
            day = start + timedelta(days=i)
            day_number = (day - epoch).days
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 1, day_number])))
            records, stats = _day_records(pop, rng, day, day_number)
            topups, tstats = _day_topups(pop, rng, day, day_number)
            for key, value in {**stats, **tstats}.items():
                setattr(summary, key, getattr(summary, key) + value)
            partition = f"day={day.isoformat()}"
            while len(pending) >= 2:  # bound memory: at most two days in flight
                summary.files.extend(pending.pop(0).result())
            pending.append(pool.submit(lambda r=records, t=topups, p=partition: [
                _write(r, out_dir / "records" / p, compression), _write(t, out_dir / "topups" / p, compression)]))
            if progress is not None:
                progress(i + 1, days)
        for future in pending:
            summary.files.extend(future.result())
    summary.files.append(_write_cards(frame, out_dir))
    summary.seconds = time.perf_counter() - began
    return summary


def inventory_cards(db) -> pd.DataFrame:
    """The inventory's activated cards as the ``cards`` frame :func:`generate_usage` takes, with
    the plan and channel each was sold with (empty for cards sold before hkops took orders)."""
    from hkops.analytics.usage_stats import sold_cards
    from hkops.cards.service import network_cards

    cards = network_cards(db)
    return cards if cards.empty else cards.merge(sold_cards(db), on="msisdn", how="left")


def synthetic_cards(n: int, *, seed: int = 7, provinces: dict[str, list[str]] | None = None,
                    state_shares: dict[str, float] | None = None) -> pd.DataFrame:
    """A ``cards`` frame for demos, tests and benchmarks until the card lifecycle feeds one.

    Cards are spread over provinces by rough population, mostly ``active`` (92%), with
    some suspended, lost, terminated and replaced ones; each has one of the demo world's
    plans (``DEMO_PLAN_SHARES``) and was sold directly or by one of its shops (``DEMO_SHOPS``).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
    provinces = provinces or DEMO_CITIES
    shares = state_shares or {"active": 0.92, "suspended": 0.04, "lost": 0.01, "terminated": 0.02, "replaced": 0.01}
    names = list(provinces)
    weights = np.array([DEMO_WEIGHTS.get(p, 1.0) for p in names], dtype=float)
    prov = rng.choice(len(names), size=n, p=weights / weights.sum())
    city = [provinces[names[p]][int(u * len(provinces[names[p]]))] for p, u in zip(prov, rng.random(n))]
    msisdn = 13_800_000_000 + rng.choice(100_000_000, size=n, replace=False).astype(np.int64)
    imsi = (460_000_000_000_000 + rng.choice(10_000_000_000, size=n, replace=False).astype(np.int64)).astype(str)
    states = list(shares)
    state = np.array(states, dtype=object)[rng.choice(len(states), size=n, p=np.array(list(shares.values())) / sum(shares.values()))]
    sales = np.random.default_rng(np.random.SeedSequence([seed, 98]))
    plan_codes = list(DEMO_PLAN_SHARES)
    plan = np.array(plan_codes, dtype=object)[sales.choice(len(plan_codes), size=n, p=list(DEMO_PLAN_SHARES.values()))]
    agent = np.array(DEMO_SHOPS, dtype=object)[sales.integers(0, len(DEMO_SHOPS), n)]
    agent[sales.random(n) < DEMO_DIRECT_SHARE] = None
    return pd.DataFrame({
        "msisdn": msisdn,
        "imsi": imsi,
        "province": np.array(names, dtype=object)[prov],
        "city": city,
        "state": state,
        "plan": plan,
        "channel": np.where(pd.isna(agent), "direct", agent).astype(object),
        "agent": agent,
    })


#: Plans of the demo world's catalogue (hkops.demo_distribution.PLANS) and their shares of cards.
DEMO_PLAN_SHARES = {"CM-58": 0.35, "CM-128": 0.10, "CU-39": 0.35, "CT-29": 0.20}
#: The demo world's shops (level-3 agents) and the share of cards sold directly.
DEMO_SHOPS = tuple(f"A-{region}-{n}-{m}" for region in ("NORTH", "SOUTH", "EAST") for n in (1, 2) for m in (1, 2))
DEMO_DIRECT_SHARE = 0.3


#: A few cities per province for ``synthetic_cards``, and rough population weights.
DEMO_CITIES = {
    "广东省": ["广州市", "深圳市", "东莞市", "佛山市"], "山东省": ["济南市", "青岛市", "烟台市"],
    "河南省": ["郑州市", "洛阳市", "南阳市"], "江苏省": ["南京市", "苏州市", "无锡市"],
    "四川省": ["成都市", "绵阳市"], "河北省": ["石家庄市", "保定市"], "湖南省": ["长沙市", "岳阳市"],
    "浙江省": ["杭州市", "宁波市", "温州市"], "安徽省": ["合肥市", "芜湖市"], "湖北省": ["武汉市", "宜昌市"],
    "广西壮族自治区": ["南宁市", "柳州市"], "云南省": ["昆明市", "大理市"], "江西省": ["南昌市"],
    "辽宁省": ["沈阳市", "大连市"], "福建省": ["福州市", "厦门市"], "陕西省": ["西安市"],
    "贵州省": ["贵阳市"], "山西省": ["太原市"], "重庆市": ["重庆市"], "黑龙江省": ["哈尔滨市"],
    "新疆维吾尔自治区": ["乌鲁木齐市"], "甘肃省": ["兰州市"], "上海市": ["上海市"], "内蒙古自治区": ["呼和浩特市"],
    "吉林省": ["长春市"], "北京市": ["北京市"], "天津市": ["天津市"], "海南省": ["海口市"],
    "宁夏回族自治区": ["银川市"], "青海省": ["西宁市"], "西藏自治区": ["拉萨市"],
}
DEMO_WEIGHTS = {
    "广东省": 12.7, "山东省": 10.2, "河南省": 9.9, "江苏省": 8.5, "四川省": 8.4, "河北省": 7.5, "湖南省": 6.6,
    "浙江省": 6.5, "安徽省": 6.1, "湖北省": 5.8, "广西壮族自治区": 5.0, "云南省": 4.7, "江西省": 4.5,
    "辽宁省": 4.3, "福建省": 4.2, "陕西省": 4.0, "贵州省": 3.9, "山西省": 3.5, "重庆市": 3.2, "黑龙江省": 3.1,
    "新疆维吾尔自治区": 2.6, "甘肃省": 2.5, "上海市": 2.5, "内蒙古自治区": 2.4, "吉林省": 2.4, "北京市": 2.2,
    "天津市": 1.4, "海南省": 1.0, "宁夏回族自治区": 0.7, "青海省": 0.6, "西藏自治区": 0.4,
}
