"""Deterministic demo sources: one customer base seen by three systems that drifted apart.

The story a newcomer sees in the demo:

* the **CRM** (SQLite, ``crm.sqlite``, table ``customers``) says 847 customers are active;
* **billing** (a CSV export, ``billing.csv``) says 839;
* the **warehouse** (``warehouse.parquet``, its ``dim_customer``) says 851.

All three come from one base of 1,000 customers (847 active, 153 churned). Every
difference between the systems is seeded on purpose, from a fixed seed, and recorded:
:func:`generate_demo` returns (and writes as ``ground_truth.json``) the exact
discrepancies the two demo specs (``specs/crm_vs_billing.yaml`` and
``specs/billing_vs_warehouse.yaml``) must report, computed from how the drift was
built, never by running the engine. Drift that the specs' rules are meant to absorb
(emails differing only by case, ``42.500`` against ``42.50``, a few seconds of sync
delay, a country "not yet propagated") is seeded too and recorded with an expected
count of zero.

Every record's last-modified time falls in the 7 days before ``reference_date``
(UTC midnight), so a week of daily partitions covers the whole demo.

Run ``python -m recon_pipelines.demo.generate <folder>`` to write the files and print
the drift table.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import sqlite3
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

DEMO_DATA_ENV = "RECON_DEMO_DATA"
# Bump whenever the generated data or the ground truth changes: ensure_demo_data regenerates.
DEMO_VERSION = 3  # 3: ground_truth.json lists suggested_matches
REFERENCE_DATE = date(2026, 11, 20)
SEED = 20261120
WINDOW_DAYS = 7
DEMO_SPECS_DIR = Path(__file__).resolve().parent / "specs"

CRM_FILE, BILLING_FILE, WAREHOUSE_FILE = "crm.sqlite", "billing.csv", "warehouse.parquet"
GROUND_TRUTH_FILE = "ground_truth.json"
DATA_FILES = (CRM_FILE, BILLING_FILE, WAREHOUSE_FILE)
BILLING_ZONE = "America/New_York"  # billing writes naive wall-clock times in its office's zone

ACTIVE_COUNTS = {"crm": 847, "billing": 839, "warehouse": 851}
BASE_CUSTOMERS = 1000
FIRST_ID = 1001
# Tolerances of the demo specs; the generator checks its "within" drift against them.
LAG_CRM_BILLING = 300  # seconds (crm_vs_billing: updated_at lag 5m)
LAG_BILLING_WAREHOUSE = 600  # seconds (billing_vs_warehouse: updated_at lag 10m)
AMOUNT_TOLERANCE = Decimal("0.01")
CRITICAL_AMOUNT = Decimal("100")

UTC = timezone.utc
NY = ZoneInfo(BILLING_ZONE)

PLANS = ("starter", "pro", "business", "enterprise")
PLAN_CODE = {"starter": "STR", "pro": "PRO", "business": "BIZ", "enterprise": "ENT"}  # billing
PLAN_LABEL = {"starter": "Starter", "pro": "Pro", "business": "Business", "enterprise": "Enterprise"}  # warehouse
NEXT_PLAN = {"starter": "pro", "pro": "business", "business": "enterprise"}
SEAT_PRICE = {"starter": Decimal("12.50"), "pro": Decimal("29.00"), "business": Decimal("49.90"), "enterprise": Decimal("89.00")}
SEATS = {"starter": (1, 5), "pro": (2, 25), "business": (5, 60), "enterprise": (20, 150)}
PLAN_WEIGHTS = (40, 35, 20, 5)
DISCOUNTS = (Decimal("0"), Decimal("0"), Decimal("0"), Decimal("0.10"), Decimal("0.15"), Decimal("0.25"))

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Sandra", "Priya", "Wei", "Aisha",
    "Kenji", "Olga", "Mateo", "Fatima", "Lukas", "José", "Zoë", "Chloé", "Renée", "Jürgen", "François",
    "Inés", "Björn", "Søren", "Anaïs", "Noémie", "Raphaël",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
    "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Young", "Allen", "King", "Wright", "Nguyen",
    "Kim", "Patel", "Chen", "Müller", "Schäfer", "Peña", "Núñez", "Lefèvre", "Ångström", "Gonçalves",
    "Øberg", "Dvořák", "Šimić",
)  # fmt: skip
DOMAINS = (
    "acme.com", "globex.io", "initech.co", "umbrella.dev", "hooli.com", "vandelay.net", "wonka.co.uk",
    "stark.io", "tyrell.com", "cyberdyne.net", "soylent.co", "aperture.dev", "oscorp.com", "gringotts.io",
)  # fmt: skip
COUNTRIES = ("US",) * 6 + ("GB", "GB", "DE", "DE", "FR", "CA", "NL", "ES", "BR", "AU", "SE", "JP", "IN")
_TRANSLIT = str.maketrans({"ø": "o", "Ø": "O", "ß": "ss", "æ": "ae", "Æ": "AE", "ł": "l", "Ł": "L"})


# --------------------------------------------------------------------------- public API


def generate_demo(target_dir: str | Path, reference_date: date = REFERENCE_DATE) -> dict:
    """Write ``crm.sqlite``, ``billing.csv``, ``warehouse.parquet`` and ``ground_truth.json``
    into ``target_dir``; return the ground truth. Same arguments, same bytes."""
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    demo = _Demo(reference_date)
    demo.build()
    _write_atomic(target / CRM_FILE, _sqlite_writer(demo.crm_rows))
    _write_atomic(target / BILLING_FILE, _bytes_writer(_billing_csv(demo.billing_rows)))
    _write_atomic(target / WAREHOUSE_FILE, _parquet_writer(demo.warehouse_rows))
    truth = demo.ground_truth()
    # Written last: its presence (with the right version) marks a complete folder.
    _write_atomic(target / GROUND_TRUTH_FILE, _bytes_writer(_json_bytes(truth)))
    return truth


def ensure_demo_data(target_dir: str | Path, reference_date: date = REFERENCE_DATE) -> Path:
    """Generate the demo data into ``target_dir`` unless it is already there (same
    version, same reference date); return the folder. Safe to call from several processes."""
    target = Path(target_dir).resolve()
    truth = load_ground_truth(target)
    complete = all((target / name).is_file() for name in DATA_FILES)
    if not (
        complete
        and truth is not None
        and truth.get("version") == DEMO_VERSION
        and truth.get("reference_date") == reference_date.isoformat()
    ):
        generate_demo(target, reference_date)
    return target


def load_ground_truth(target_dir: str | Path) -> dict | None:
    """The ``ground_truth.json`` of a demo folder, or None when absent or unreadable."""
    try:
        return json.loads((Path(target_dir) / GROUND_TRUTH_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- the customer base


@dataclass
class Customer:
    id: int
    first: str
    last: str
    email: str
    domain: str
    plan: str
    seats: int
    discount: Decimal
    active: bool
    country: str
    t0: datetime | None = None  # the record's base last-modified instant (UTC)
    sync: int = 0  # seconds CRM -> billing
    cdc: int = 0  # seconds billing -> warehouse
    gap_big: int = 0  # seconds a change waited upstream (hours)
    gap_small: int = 0  # seconds of a late touch or stalled load (hours)

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    def mrr(self, plan: str | None = None) -> Decimal:
        plan = plan or self.plan
        amount = SEAT_PRICE[plan] * self.seats * (1 - self.discount)
        return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Drift:
    id: str
    description: str
    keys: tuple[str, ...]
    # Discrepancies each seeded record yields: (kind, field, reason); empty = must not be reported.
    yields: tuple[tuple[str, str | None, str], ...]


@dataclass
class _Recon:
    name: str
    spec: str
    severity: object
    drifts: list[Drift] = field(default_factory=list)
    expected: list[dict] = field(default_factory=list)

    def seed(self, drift_id: str, description: str, keys, yields=(), differences=None) -> None:
        keys = tuple(str(k) for k in keys)
        self.drifts.append(Drift(drift_id, description, keys, tuple(yields)))
        for key in keys:
            for kind, fld, reason in yields:
                item = {"kind": kind, "key": key, "field": fld, "reason": reason}
                if differences and fld in differences:
                    item["difference"] = differences[fld](key)
                item["severity"] = self.severity(kind, fld, item.get("difference"))
                item["drift"] = drift_id
                self.expected.append(item)

    def seed_nway(self, drift_id: str, description: str, keys, yields=(), differences=None) -> None:
        """An N-way drift: each yield is (kind, field, reason, systems, odd_ones_out, reference_system),
        systems as the engine lists them (the spec's order, comma-separated)."""
        keys = tuple(str(k) for k in keys)
        self.drifts.append(Drift(drift_id, description, keys, tuple(y[:3] for y in yields)))
        for key in keys:
            for kind, fld, reason, systems, odd, reference in yields:
                item = {"kind": kind, "key": key, "field": fld, "reason": reason, "systems": systems,
                        "odd_ones_out": odd, "reference_system": reference}
                if differences and fld in differences:
                    item["difference"] = differences[fld](key)
                item["severity"] = self.severity(kind, fld, item.get("difference"))
                item["drift"] = drift_id
                self.expected.append(item)

    def summary(self) -> dict:
        items = sorted(self.expected, key=lambda d: (d["kind"], d["key"], d["field"] or ""))
        triples = [(d["kind"], d["key"], d["field"]) for d in items]
        if len(set(triples)) != len(triples):
            raise AssertionError(f"{self.name}: one record seeded twice for the same discrepancy")
        fields = Counter(d["field"] for d in items if d["kind"] in ("field_mismatch", "systems_disagree"))
        return {
            "spec": self.spec,
            "total": len(items),
            "by_kind": dict(sorted(Counter(d["kind"] for d in items).items())),
            "field_mismatches": dict(sorted(fields.items())),
            "by_severity": dict(sorted(Counter(d["severity"] for d in items).items())),
            "drift": [
                {
                    "drift": d.id,
                    "description": d.description,
                    "records": len(d.keys),
                    "expected": [f"{kind}:{fld}" if fld else kind for kind, fld, _ in d.yields],
                    "keys": list(d.keys),
                }
                for d in self.drifts
            ],
            "discrepancies": items,
        }


def _severity_crm_vs_billing(kind: str, fld: str | None, difference: float | None) -> str:
    """Mirror of crm_vs_billing.yaml's severity rules (first match wins)."""
    if kind == "only_in_a":
        return "critical"
    if fld == "status":
        return "critical"
    if fld == "mrr" and difference is not None and difference >= CRITICAL_AMOUNT:
        return "critical"
    if fld in ("email", "full_name", "updated_at"):
        return "info"
    return "warning"


def _severity_billing_vs_warehouse(kind: str, fld: str | None, difference: float | None) -> str:
    """Mirror of billing_vs_warehouse.yaml's severity rules (first match wins)."""
    if kind == "only_in_a":
        return "critical"
    if fld == "mrr" and difference is not None and difference >= CRITICAL_AMOUNT:
        return "critical"
    if fld in ("email", "updated_at"):
        return "info"
    return "warning"


def _severity_three_way(kind: str, fld: str | None, difference: float | None) -> str:
    """Mirror of customers_three_way.yaml's severity rules (first match wins)."""
    if fld == "status":
        return "critical"
    if fld == "mrr" and difference is not None and difference >= CRITICAL_AMOUNT:
        return "critical"
    if fld in ("email", "full_name", "country"):
        return "info"
    return "warning"


class _Demo:
    def __init__(self, reference_date: date):
        self.reference_date = reference_date
        self.end = datetime.combine(reference_date, time(0), tzinfo=UTC)
        self.start = self.end - timedelta(days=WINDOW_DAYS)
        self.rng = random.Random(SEED)
        self.customers: dict[int, Customer] = {}
        self.sets: dict[str, list[Customer]] = {}
        self.crm_rows: list[dict] = []
        self.billing_rows: list[dict] = []
        self.warehouse_rows: list[dict] = []
        self.times: dict[int, dict[str, datetime]] = {}
        self.r1 = _Recon("crm_vs_billing", "crm_vs_billing.yaml", _severity_crm_vs_billing)
        self.r2 = _Recon("billing_vs_warehouse", "billing_vs_warehouse.yaml", _severity_billing_vs_warehouse)
        self.r3 = _Recon("customers_three_way", "customers_three_way.yaml", _severity_three_way)

    # ----------------------------------------------------------------- building

    def build(self) -> None:
        self._make_customers()
        self._pick_drift()
        self._make_times()
        self._make_crm()
        self._make_billing()
        self._make_warehouse()
        self._check_counts()
        self._record_truth()

    def _make_customers(self) -> None:
        rng = self.rng
        used_emails: set[str] = set()
        active_ids = set(rng.sample(range(FIRST_ID, FIRST_ID + BASE_CUSTOMERS), ACTIVE_COUNTS["crm"]))
        for cid in range(FIRST_ID, FIRST_ID + BASE_CUSTOMERS):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            domain = rng.choice(DOMAINS)
            local = f"{_ascii(first)}.{_ascii(last)}".lower()
            email, n = f"{local}@{domain}", 1
            while email in used_emails:
                n += 1
                email = f"{local}{n}@{domain}"
            used_emails.add(email)
            plan = rng.choices(PLANS, weights=PLAN_WEIGHTS)[0]
            self.customers[cid] = Customer(
                id=cid, first=first, last=last, email=email, domain=domain, plan=plan,
                seats=rng.randint(*SEATS[plan]), discount=rng.choice(DISCOUNTS),
                active=cid in active_ids, country=rng.choice(COUNTRIES),
            )  # fmt: skip

    def _pick_drift(self) -> None:
        """Disjoint sets of customers, one per kind of drift (see ground_truth.json)."""
        free = set(self.customers)
        active = lambda c: c.active  # noqa: E731
        churned = lambda c: not c.active  # noqa: E731
        upgradable = lambda c: c.active and c.plan in NEXT_PLAN  # noqa: E731
        plan = [
            ("erased_from_crm", 2, churned),
            ("new_signup", 5, active),
            ("cancel_not_in_crm", 4, active),
            ("churn_not_in_billing", 1, churned),
            ("cancel_not_loaded", 4, churned),
            ("missing_in_warehouse", 1, active),
            ("warehouse_duplicate", 1, active),
            ("plan_upgrade_not_billed", 6, upgradable),
            ("plan_change_not_loaded", 3, lambda c: c.active and c.plan in ("pro", "business")),
            ("email_differs_billing", 3, active),
            ("email_stale_warehouse", 2, active),
            ("email_case_only", 12, None),
            ("email_whitespace", 3, None),
            ("name_changed", 2, active),
            ("name_double_space", 2, None),
            ("amount_three_decimals", 20, None),
            ("amount_rounding", 6, None),
            ("amount_beyond_tolerance_billing", 4, active),
            ("amount_beyond_tolerance_warehouse", 2, lambda c: c.active and c.mrr() > 10),
            ("late_touch_billing", 3, None),
            ("cdc_stall", 3, None),
            ("country_null_billing", 3, None),
            ("country_null_crm", 2, None),
            ("country_null_warehouse", 2, None),
        ]
        for name, count, predicate in plan:
            candidates = sorted(cid for cid in free if predicate is None or predicate(self.customers[cid]))
            chosen = sorted(self.rng.sample(candidates, count))
            free -= set(chosen)
            self.sets[name] = [self.customers[cid] for cid in chosen]
        # A plan change must be worth clearly less or clearly more than the critical amount.
        for c in self.sets["plan_upgrade_not_billed"] + self.sets["plan_change_not_loaded"]:
            while abs(abs(c.mrr(NEXT_PLAN[c.plan]) - c.mrr()) - CRITICAL_AMOUNT) < 1:
                c.seats += 1

    def _in(self, c: Customer, *names: str) -> bool:
        return any(c in self.sets[n] for n in names)

    def _make_times(self) -> None:
        rng = self.rng
        wide = (
            "plan_upgrade_not_billed", "churn_not_in_billing", "cancel_not_in_crm", "late_touch_billing",
            "plan_change_not_loaded", "cancel_not_loaded", "cdc_stall", "warehouse_duplicate",
        )  # fmt: skip
        span = WINDOW_DAYS * 86400
        for c in self.customers.values():
            c.sync, c.cdc = rng.randint(0, 90), rng.randint(1, 120)
            c.gap_big, c.gap_small = rng.randint(3 * 3600, 30 * 3600), rng.randint(2 * 3600, 6 * 3600)
            # Records whose systems are hours apart start late enough (and end early enough)
            # for every system's timestamp to stay inside the window.
            low, high = (31 * 3600, span - 7 * 3600) if self._in(c, *wide) else (0, span - 300)
            c.t0 = self.start + timedelta(seconds=rng.randint(low, high))
            for _ in range(48):
                if c.t0.time() == time(0):  # never on a day's boundary second (see _sqlite_timestamp)
                    c.t0 += timedelta(seconds=1)
                times = self._times_of(c)
                if _fits_billing_zone(times["billing"]):
                    break
                # Move towards the middle of the window, so every timestamp stays inside it.
                c.t0 += timedelta(hours=-2 if c.t0 > self.start + timedelta(seconds=span / 2) else 2)
            else:  # pragma: no cover
                raise AssertionError(f"customer {c.id}: no billing time fits {BILLING_ZONE}")
            self.times[c.id] = times

    def _times_of(self, c: Customer) -> dict[str, datetime]:
        s = lambda n: timedelta(seconds=n)  # noqa: E731
        t = {"crm": c.t0, "billing": c.t0 + s(c.sync)}
        if self._in(c, "plan_upgrade_not_billed", "churn_not_in_billing"):
            t["billing"] = c.t0 - s(c.gap_big)  # billing's last sync came before the CRM change
        elif self._in(c, "cancel_not_in_crm", "late_touch_billing"):
            t["billing"] = c.t0 + s(c.gap_small)  # billing changed after the CRM's last update
        elif self._in(c, "erased_from_crm"):
            t["billing"] = c.t0
        t["warehouse"] = t["billing"] + s(c.cdc)
        if self._in(c, "plan_change_not_loaded", "cancel_not_loaded"):
            t["warehouse"] = t["billing"] - s(c.gap_big)  # the load ran before billing's change
        elif self._in(c, "cdc_stall"):
            t["warehouse"] = t["billing"] + s(c.gap_small)
        elif self._in(c, "new_signup"):
            t["warehouse"] = t["crm"] + s(c.cdc)  # loaded from CRM signup events
        if self._in(c, "warehouse_duplicate"):
            t["warehouse_stale"] = t["billing"] - s(c.gap_big)
        return t

    def _make_crm(self) -> None:
        for c in self.customers.values():
            if self._in(c, "erased_from_crm"):
                continue
            plan = NEXT_PLAN[c.plan] if self._in(c, "plan_upgrade_not_billed") else c.plan
            last = _married_name(c) if self._in(c, "name_changed") else c.last
            self.crm_rows.append({
                "customer_id": c.id,
                "email": c.email,
                "full_name": f"{c.first} {last}",
                "plan": plan,
                "status": "active" if c.active else "churned",
                "mrr": float(c.mrr(plan)),
                "updated_at": _sqlite_timestamp(self.times[c.id]["crm"]),
                "country": None if self._in(c, "country_null_crm") else c.country,
            })  # fmt: skip

    def _billing_status(self, c: Customer) -> str:
        if self._in(c, "cancel_not_in_crm"):
            return "CANCELLED"
        if self._in(c, "churn_not_in_billing"):
            return "ACTIVE"
        return "ACTIVE" if c.active else "CANCELLED"

    def _billing_email(self, c: Customer) -> str:
        if self._in(c, "email_differs_billing"):
            return f"{_ascii(c.first)[0]}{_ascii(c.last)}{c.id % 90 + 10}@personal-mail.example".lower()
        if self._in(c, "email_case_only"):
            local, domain = c.email.split("@")
            return ".".join(p.capitalize() for p in local.split(".")) + "@" + domain.capitalize()
        if self._in(c, "email_whitespace"):
            return c.email + " "
        return c.email

    def _billing_amount(self, c: Customer) -> tuple[str, Decimal]:
        """The text billing exports, and the amount as billing knows it."""
        mrr = c.mrr()
        if self._in(c, "amount_three_decimals"):
            return f"{mrr:.3f}", mrr  # 42.500: same amount, different text
        if self._in(c, "amount_rounding"):
            return f"{mrr + Decimal('0.004'):.3f}", mrr + Decimal("0.004")  # within the 0.01 tolerance
        if self._in(c, "amount_beyond_tolerance_billing"):
            return f"{mrr + 2:.2f}", mrr + 2  # 10.00 vs 12.00: a price change applied in billing only
        return f"{mrr:.2f}", mrr

    def _make_billing(self) -> None:
        rows = []
        for c in self.customers.values():
            if self._in(c, "new_signup"):
                continue
            name = c.name.replace(" ", "  ") if self._in(c, "name_double_space") else c.name
            text, _ = self._billing_amount(c)
            rows.append({
                "account_id": f"ACC-{c.id * 7 + 300000:06d}",
                "crm_customer_id": str(c.id),
                "account_name": unicodedata.normalize("NFD", name),  # billing's export writes decomposed accents
                "email_address": self._billing_email(c),
                "plan_code": PLAN_CODE[c.plan],
                "account_status": self._billing_status(c),
                "monthly_amount": text,
                "country": None if self._in(c, "country_null_billing") else c.country,
                "last_modified": _billing_timestamp(self.times[c.id]["billing"]),
            })  # fmt: skip
        # An account opened by hand in billing, never linked to a CRM customer, since cancelled.
        t0 = self.start + timedelta(seconds=self.rng.randint(0, WINDOW_DAYS * 86400 - 300))
        while not _fits_billing_zone(t0):
            t0 += timedelta(hours=2)
        self.keyless_time = t0
        rows.append({
            "account_id": "ACC-999001", "crm_customer_id": None, "account_name": "Walk-in Trial (manual)",
            "email_address": "trial.desk@walk-in.example", "plan_code": "STR", "account_status": "CANCELLED",
            "monthly_amount": "0.00", "country": "US", "last_modified": _billing_timestamp(t0),
        })  # fmt: skip
        self.billing_rows = sorted(rows, key=lambda r: r["account_id"])

    def _make_warehouse(self) -> None:
        rows = []
        for c in self.customers.values():
            if self._in(c, "missing_in_warehouse"):
                continue
            t = self.times[c.id]
            if self._in(c, "new_signup"):  # known from CRM signup events only
                rows.append(self._warehouse_row(c, c.plan, c.mrr(), c.email, True, c.country, t["warehouse"]))
                continue
            _, billed = self._billing_amount(c)
            plan, amount = c.plan, billed.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            if self._in(c, "plan_change_not_loaded"):  # still the plan (and price) before the change
                plan = NEXT_PLAN[c.plan]
                amount = c.mrr(plan)
            if self._in(c, "amount_beyond_tolerance_warehouse"):
                amount -= 5  # a credit note in billing the warehouse never received
            email = self._warehouse_email(c)
            active = self._billing_status(c) == "ACTIVE" or self._in(c, "cancel_not_loaded")
            country = None if self._in(c, "country_null_billing", "country_null_warehouse") else c.country
            rows.append(self._warehouse_row(c, plan, amount, email, active, country, t["warehouse"]))
            if self._in(c, "warehouse_duplicate"):  # an old version of the row that was never replaced
                rows.append(self._warehouse_row(c, plan, amount, email, False, country, t["warehouse_stale"]))
        for i in range(1, 5):  # internal QA accounts that exist only in the warehouse
            t0 = self.start + timedelta(seconds=self.rng.randint(0, WINDOW_DAYS * 86400 - 300))
            rows.append({
                "customer_key": 9000 + i, "customer_name": f"QA Test Account {i}",
                "billing_email": f"qa+{i}@internal.example", "plan": "Enterprise", "mrr_usd": Decimal("0.00"),
                "country": None, "is_active": True, "loaded_at": t0,
            })  # fmt: skip
        self.internal_keys = [9001, 9002, 9003, 9004]
        self.warehouse_rows = sorted(rows, key=lambda r: (r["customer_key"], r["loaded_at"]))

    def _warehouse_email(self, c: Customer) -> str:
        if self._in(c, "email_stale_warehouse"):
            return f"{_ascii(c.first)}.{_ascii(c.last)}@previous-{c.domain}".lower()
        return self._billing_email(c).strip().lower()

    def _warehouse_row(self, c, plan, amount, email, active, country, loaded_at) -> dict:
        return {
            "customer_key": c.id, "customer_name": c.name, "billing_email": email, "plan": PLAN_LABEL[plan],
            "mrr_usd": amount, "country": country, "is_active": active, "loaded_at": loaded_at,
        }  # fmt: skip

    def _check_counts(self) -> None:
        counts = {
            "crm": sum(r["status"] == "active" for r in self.crm_rows),
            "billing": sum(r["account_status"] == "ACTIVE" for r in self.billing_rows),
            "warehouse": sum(r["is_active"] for r in self.warehouse_rows),
        }
        if counts != ACTIVE_COUNTS:  # pragma: no cover - a broken edit of the drift plan
            raise AssertionError(f"active counts {counts} != {ACTIVE_COUNTS}")

    # ----------------------------------------------------------------- ground truth

    def _record_truth(self) -> None:
        s = self.sets
        ids = lambda name: [c.id for c in s[name]]  # noqa: E731
        tdiff = lambda x, y: lambda key: abs((self.times[int(key)][x] - self.times[int(key)][y]).total_seconds())  # noqa: E731
        self._check_within_tolerance()

        def plan_price_gap(key: str) -> float:  # the amount at the next plan up against the current one
            c = self.customers[int(key)]
            return float(abs(c.mrr(NEXT_PLAN[c.plan]) - c.mrr()))

        r = self.r1
        r.seed("new_signup", "Signed up in the CRM in the last days; billing has not provisioned them yet (active).",
               ids("new_signup"), [("only_in_a", None, "missing_in_b")])
        r.seed("erased_from_crm", "Churned customers erased from the CRM (GDPR request); billing keeps the cancelled account.",
               ids("erased_from_crm"), [("only_in_b", None, "missing_in_a")])
        r.seed("keyless_billing_row", "An account opened by hand in billing, with no crm_customer_id.",
               ["<null>"], [("invalid_key_b", None, "invalid_key")])
        r.seed("plan_upgrade_not_billed", "Upgraded in the CRM (e.g. pro -> business); billing still has the old plan, "
               "the old amount and an older last_modified (hours before the CRM change).",
               ids("plan_upgrade_not_billed"),
               [("field_mismatch", f, "value_differs") for f in ("mrr", "plan", "updated_at")],
               {"mrr": plan_price_gap, "updated_at": tdiff("crm", "billing")})
        r.seed("cancel_not_in_crm", "Cancelled in billing hours after the CRM's last update; the CRM still says active.",
               ids("cancel_not_in_crm"), [("field_mismatch", f, "value_differs") for f in ("status", "updated_at")],
               {"updated_at": tdiff("crm", "billing")})
        r.seed("churn_not_in_billing", "Churned in the CRM; billing never got the cancellation and still says ACTIVE.",
               ids("churn_not_in_billing"), [("field_mismatch", f, "value_differs") for f in ("status", "updated_at")],
               {"updated_at": tdiff("crm", "billing")})
        r.seed("email_differs_billing", "Billing holds the personal email typed at checkout, the CRM the work email.",
               ids("email_differs_billing"), [("field_mismatch", "email", "value_differs")])
        r.seed("name_changed", "Name changed in the CRM (new last name); billing kept the old one.",
               ids("name_changed"), [("field_mismatch", "full_name", "value_differs")])
        r.seed("amount_beyond_tolerance_billing", "Billing charges 2.00 more than the CRM's MRR (e.g. 10.00 vs 12.00).",
               ids("amount_beyond_tolerance_billing"), [("field_mismatch", "mrr", "value_differs")],
               {"mrr": lambda key: 2.0})
        r.seed("late_touch_billing", "A billing job touched the record hours after the CRM's update, changing nothing else.",
               ids("late_touch_billing"), [("field_mismatch", "updated_at", "value_differs")],
               {"updated_at": tdiff("crm", "billing")})
        r.seed("country_null_crm", "The CRM lost the country (bad import); billing has it. Not allowed by the null policy.",
               ids("country_null_crm"), [("field_mismatch", "country", "null_in_a")])
        r.seed("country_null_billing", "Country not yet propagated to billing (null there): allowed by allow_null_in: [b].",
               ids("country_null_billing"))
        r.seed("email_case_only", "Billing's email differs only by case (Jane.Doe@Acme.com): equal after lower.",
               ids("email_case_only"))
        r.seed("email_whitespace", "Billing's email has a trailing space: equal after trim.", ids("email_whitespace"))
        r.seed("name_double_space", "Billing's account name has a double space: equal after collapse_whitespace.",
               ids("name_double_space"))
        r.seed("name_nfd", "Billing writes accented names decomposed (NFD): equal after nfc.",
               sorted(c.id for c in self.customers.values() if c.name != unicodedata.normalize("NFD", c.name)
                      and not self._in(c, "new_signup", "erased_from_crm")))
        r.seed("plan_code", "Billing's plan codes (PRO) against the CRM's names (pro): equal through values:.", [])
        r.seed("amount_three_decimals", "Billing writes 42.500 where the CRM has 42.50: the same number.",
               ids("amount_three_decimals"))
        r.seed("amount_rounding", "Billing's amount is 0.004 off (42.504 vs 42.50): within abs_tol 0.01.",
               ids("amount_rounding"))
        r.seed("sync_delay", "Every other billing last_modified is 0-90 s after the CRM's updated_at, and written as "
               "naive New York time: within the 5 min lag once read in America/New_York.", [])

        self._record_three_way(ids, plan_price_gap)

        r = self.r2
        r.seed("missing_in_warehouse", "A paying billing account the warehouse never loaded.",
               ids("missing_in_warehouse"), [("only_in_a", None, "missing_in_b")])
        r.seed("new_signup", "New CRM signups, loaded into the warehouse from CRM events, not yet in billing.",
               ids("new_signup"), [("only_in_b", None, "missing_in_a")])
        r.seed("internal_accounts", "Internal QA accounts that exist only in the warehouse.",
               self.internal_keys, [("only_in_b", None, "missing_in_a")])
        r.seed("keyless_billing_row", "An account opened by hand in billing, with no crm_customer_id.",
               ["<null>"], [("invalid_key_a", None, "invalid_key")])
        r.seed("warehouse_duplicate", "Two warehouse rows for one customer (a stale version never replaced); "
               "the key is reported once and its records are not compared.",
               ids("warehouse_duplicate"), [("duplicate_key_b", None, "duplicate_key")])
        r.seed("plan_change_not_loaded", "Plan changed in billing (e.g. business -> pro); the warehouse still has the "
               "old plan and amount, loaded hours before the change.",
               ids("plan_change_not_loaded"),
               [("field_mismatch", f, "value_differs") for f in ("mrr", "plan", "updated_at")],
               {"mrr": plan_price_gap, "updated_at": tdiff("billing", "warehouse")})
        r.seed("cancel_not_loaded", "Cancelled in billing; the warehouse loaded the row before and still says is_active.",
               ids("cancel_not_loaded"), [("field_mismatch", f, "value_differs") for f in ("status", "updated_at")],
               {"updated_at": tdiff("billing", "warehouse")})
        r.seed("email_stale_warehouse", "The warehouse kept a previous email address.",
               ids("email_stale_warehouse"), [("field_mismatch", "email", "value_differs")])
        r.seed("amount_beyond_tolerance_warehouse", "A 5.00 credit in billing the warehouse never received.",
               ids("amount_beyond_tolerance_warehouse"), [("field_mismatch", "mrr", "value_differs")],
               {"mrr": lambda key: 5.0})
        r.seed("cdc_stall", "The change-data-capture feed stalled: loaded_at is hours after billing's change.",
               ids("cdc_stall"), [("field_mismatch", "updated_at", "value_differs")],
               {"updated_at": tdiff("billing", "warehouse")})
        r.seed("country_null_warehouse", "The warehouse lost the country; billing has it (no null allowance here).",
               ids("country_null_warehouse"), [("field_mismatch", "country", "null_in_b")])
        r.seed("country_null_billing", "Null in billing and in the warehouse: both null counts as equal.",
               ids("country_null_billing"))
        r.seed("email_case_only", "The warehouse lower-cases every email; billing has Jane.Doe@Acme.com: equal after lower.",
               ids("email_case_only"))
        r.seed("email_whitespace", "Billing's trailing space, trimmed by the warehouse: equal after trim.",
               ids("email_whitespace"))
        r.seed("amount_three_decimals", "Billing's 42.500 against the warehouse's DECIMAL 42.50.",
               ids("amount_three_decimals"))
        r.seed("amount_rounding", "Billing's 42.504 against the warehouse's rounded 42.50: within abs_tol 0.01.",
               ids("amount_rounding"))
        r.seed("plan_labels", "Billing's plan codes (BIZ) against the warehouse's labels (Business): equal through "
               "lower + values:.", [])
        r.seed("status_flag", "Billing's ACTIVE/CANCELLED against the warehouse's is_active true/false: equal "
               "through values:.", [])
        r.seed("cdc_latency", "Every other loaded_at (UTC) is 1-120 s after billing's naive New York last_modified: "
               "within the 10 min lag.", [])

    def _record_three_way(self, ids, plan_price_gap) -> None:
        """customers_three_way.yaml: which systems each seeded drift sets apart, and which system
        each field is judged against (billing owns plan, status and mrr; the CRM owns email and
        full_name; the majority decides country). Absorbed drift is listed with nothing expected."""
        r = self.r3
        every = "crm,billing,warehouse"

        def owned_by(reference: str, odd: str, *fields: str, reason="differs_from_system_of_record"):
            return [("systems_disagree", f, reason, every, odd, reference) for f in fields]

        r.seed_nway("erased_from_crm", "Erased from the CRM; billing and the warehouse keep the cancelled account.",
                    ids("erased_from_crm"),
                    [("missing_in_systems", None, "missing_in_some", "billing,warehouse", "crm", None)])
        r.seed_nway("new_signup", "New CRM signups in the warehouse (from CRM events), not yet in billing.",
                    ids("new_signup"), [("missing_in_systems", None, "missing_in_some", "crm,warehouse", "billing", None)])
        r.seed_nway("missing_in_warehouse", "A paying account the warehouse never loaded.",
                    ids("missing_in_warehouse"),
                    [("missing_in_systems", None, "missing_in_some", "crm,billing", "warehouse", None)])
        r.seed_nway("internal_accounts", "Internal QA accounts that exist only in the warehouse.",
                    self.internal_keys, [("missing_in_systems", None, "only_in_some", "warehouse", "warehouse", None)])
        r.seed_nway("keyless_billing_row", "An account opened by hand in billing, with no crm_customer_id.",
                    ["<null>"], [("invalid_key_in_system", None, "invalid_key", "billing", "billing", None)])
        r.seed_nway("warehouse_duplicate", "Two warehouse rows for one customer: reported once, compared nowhere.",
                    ids("warehouse_duplicate"),
                    [("duplicate_key_in_system", None, "duplicate_key", "warehouse", "warehouse", None)])
        r.seed_nway("cancel_not_in_crm", "Cancelled in billing (and so in the warehouse); the CRM still says active.",
                    ids("cancel_not_in_crm"), owned_by("billing", "crm", "status"))
        r.seed_nway("churn_not_in_billing", "Churned in the CRM; billing (the status's owner) and the warehouse say active.",
                    ids("churn_not_in_billing"), owned_by("billing", "crm", "status"))
        r.seed_nway("cancel_not_loaded", "Cancelled in billing; the warehouse still says is_active.",
                    ids("cancel_not_loaded"), owned_by("billing", "warehouse", "status"))
        r.seed_nway("plan_upgrade_not_billed", "Upgraded in the CRM only: billing owns the plan and the amount.",
                    ids("plan_upgrade_not_billed"), owned_by("billing", "crm", "mrr", "plan"), {"mrr": plan_price_gap})
        r.seed_nway("plan_change_not_loaded", "The warehouse still has the plan and amount from before billing's change.",
                    ids("plan_change_not_loaded"), owned_by("billing", "warehouse", "mrr", "plan"), {"mrr": plan_price_gap})
        r.seed_nway("amount_beyond_tolerance_billing", "Billing charges 2.00 more than the CRM's MRR; the warehouse follows billing.",
                    ids("amount_beyond_tolerance_billing"), owned_by("billing", "crm", "mrr"), {"mrr": lambda key: 2.0})
        r.seed_nway("amount_beyond_tolerance_warehouse", "A 5.00 credit in billing the warehouse never received.",
                    ids("amount_beyond_tolerance_warehouse"), owned_by("billing", "warehouse", "mrr"),
                    {"mrr": lambda key: 5.0})
        r.seed_nway("email_differs_billing", "Billing (and the warehouse, loaded from it) hold the personal email; "
                    "the CRM owns the email.", ids("email_differs_billing"), owned_by("crm", "billing,warehouse", "email"))
        r.seed_nway("email_stale_warehouse", "The warehouse kept a previous email address.",
                    ids("email_stale_warehouse"), owned_by("crm", "warehouse", "email"))
        r.seed_nway("name_changed", "New last name in the CRM (which owns it); billing and the warehouse kept the old one.",
                    ids("name_changed"), owned_by("crm", "billing,warehouse", "full_name"))
        r.seed_nway("country_null_crm", "The CRM lost the country; billing and the warehouse (the majority) have it.",
                    ids("country_null_crm"), owned_by("billing", "crm", "country", reason="differs_from_majority"))
        for drift, description in (
            ("country_null_billing", "Null in billing and the warehouse: allowed there (allow_null_in)."),
            ("country_null_warehouse", "Null in the warehouse: allowed there (allow_null_in)."),
            ("email_case_only", "Emails differing only by case: equal after lower."),
            ("email_whitespace", "A trailing space: equal after trim."),
            ("name_double_space", "A double space: equal after collapse_whitespace."),
            ("amount_three_decimals", "42.500 against 42.50: the same number."),
            ("amount_rounding", "0.004 off: within abs_tol 0.01."),
            ("late_touch_billing", "Timestamps only: updated_at is not compared across the three."),
            ("cdc_stall", "Timestamps only: updated_at is not compared across the three."),
        ):
            r.seed_nway(drift, description, ids(drift))

    def _check_within_tolerance(self) -> None:
        """The drift meant to stay within the specs' lags does, and the drift meant to exceed them does."""
        late_1 = {c.id for n in ("plan_upgrade_not_billed", "churn_not_in_billing", "cancel_not_in_crm", "late_touch_billing")
                  for c in self.sets[n]}
        late_2 = {c.id for n in ("plan_change_not_loaded", "cancel_not_loaded", "cdc_stall") for c in self.sets[n]}
        for c in self.customers.values():
            t = self.times[c.id]
            d1 = abs((t["crm"] - t["billing"]).total_seconds())
            d2 = abs((t["billing"] - t["warehouse"]).total_seconds())
            if (d1 > LAG_CRM_BILLING) != (c.id in late_1) and not self._in(c, "erased_from_crm", "new_signup"):
                raise AssertionError(f"customer {c.id}: CRM/billing timestamps {d1} s apart")  # pragma: no cover
            if (d2 > LAG_BILLING_WAREHOUSE) != (c.id in late_2) and not self._in(c, "new_signup", "missing_in_warehouse"):
                raise AssertionError(f"customer {c.id}: billing/warehouse timestamps {d2} s apart")  # pragma: no cover
            for moment in t.values():
                if not self.start <= moment < self.end:
                    raise AssertionError(f"customer {c.id}: {moment} outside the window")  # pragma: no cover

    def ground_truth(self) -> dict:
        def per_day(instants) -> dict[str, int]:
            return dict(sorted(Counter(i.astimezone(UTC).date().isoformat() for i in instants).items()))

        billing_instants = [self.times[c.id]["billing"] for c in self.customers.values() if not self._in(c, "new_signup")]
        return {
            "version": DEMO_VERSION,
            "seed": SEED,
            "reference_date": self.reference_date.isoformat(),
            "window": {"from": self.start.isoformat(), "to": self.end.isoformat()},
            "files": {"crm": CRM_FILE, "billing": BILLING_FILE, "warehouse": WAREHOUSE_FILE},
            "row_counts": {"crm": len(self.crm_rows), "billing": len(self.billing_rows), "warehouse": len(self.warehouse_rows)},
            "active_counts": dict(ACTIVE_COUNTS),
            "active_counts_explained": {
                "crm": "847 of the 1,000 base customers are active; 2 churned ones were erased from the CRM.",
                "billing": "847 - 5 new signups not yet in billing - 4 cancelled in billing only + 1 churned in the CRM "
                           "but still ACTIVE in billing = 839.",
                "warehouse": "839 - 1 billing account missing + 5 new signups from CRM events + 4 internal QA accounts "
                             "+ 4 cancellations not loaded = 851 (the duplicate's stale row is inactive).",
            },
            "updated_per_day": {
                "crm": per_day(self.times[r["customer_id"]]["crm"] for r in self.crm_rows),
                "billing": per_day([*billing_instants, self.keyless_time]),
                "warehouse": per_day(r["loaded_at"] for r in self.warehouse_rows),
            },
            "reconciliations": {r.name: r.summary() for r in (self.r1, self.r2, self.r3)},
            # examples/crm_contacts_by_email.yaml keys by email: a customer whose email differs
            # between the CRM and the warehouse is unmatched on both sides, and these are the pairs
            # a suggestion should make (CRM email, warehouse email).
            "suggested_matches": {"crm_contacts_by_email": sorted(
                [c.email, self._warehouse_email(c)]
                for c in [*self.sets["email_differs_billing"], *self.sets["email_stale_warehouse"]])},
        }


# --------------------------------------------------------------------------- helpers


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.translate(_TRANSLIT))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).encode("ascii", "ignore").decode()


def _married_name(c: Customer) -> str:
    return LAST_NAMES[(LAST_NAMES.index(c.last) + 7) % len(LAST_NAMES)]


def _fits_billing_zone(instant: datetime) -> bool:
    """Billing writes naive New York times. Keep them unambiguous (not in the hour repeated
    when DST ends) and on the same calendar day as the UTC instant, so the demo's daily
    partitions hold the same billing records whether a reader takes the naive times as
    New York or (wrongly) as UTC."""
    local = instant.astimezone(NY)
    naive = local.replace(tzinfo=None)
    first = naive.replace(tzinfo=NY, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=NY, fold=1).astimezone(UTC)
    return first == second == instant.astimezone(UTC) and local.date() == instant.astimezone(UTC).date()


def _sqlite_timestamp(instant: datetime) -> str:
    # ISO-8601 text with an explicit offset, always UTC: text order is time order, and a
    # window pushed down to SQLite (compared with "YYYY-MM-DD HH:MM:SS.ffffff") selects the
    # right records as long as none sits exactly on the window's boundary second.
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def _billing_timestamp(instant: datetime) -> str:
    return instant.astimezone(NY).strftime("%Y-%m-%d %H:%M:%S")


def _billing_csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _bytes_writer(data: bytes):
    return lambda path: path.write_bytes(data)


def _sqlite_writer(rows: list[dict]):
    def write(path: Path) -> None:
        with sqlite3.connect(path) as con:
            con.execute(
                """CREATE TABLE customers (
                    customer_id INTEGER PRIMARY KEY,
                    email TEXT NOT NULL,
                    full_name TEXT NOT NULL,
                    plan TEXT NOT NULL,
                    status TEXT NOT NULL,
                    mrr REAL NOT NULL,
                    updated_at TEXT NOT NULL,
                    country TEXT
                )"""
            )
            con.execute("CREATE INDEX customers_updated_at ON customers (updated_at)")
            columns = list(rows[0])
            con.executemany(
                f"INSERT INTO customers ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [tuple(r[c] for c in columns) for r in rows],
            )
        con.close()

    return write


WAREHOUSE_SCHEMA = pa.schema(
    [
        ("customer_key", pa.int64()),
        ("customer_name", pa.string()),
        ("billing_email", pa.string()),
        ("plan", pa.string()),
        ("mrr_usd", pa.decimal128(12, 2)),
        ("country", pa.string()),
        ("is_active", pa.bool_()),
        ("loaded_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _parquet_writer(rows: list[dict]):
    def write(path: Path) -> None:
        table = pa.Table.from_pylist(rows, schema=WAREHOUSE_SCHEMA)
        pq.write_table(table, path, compression="zstd")

    return write


def _write_atomic(path: Path, write) -> None:
    """Write beside the target and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- command line


def _drift_table(truth: dict) -> str:
    lines = []
    for name, recon in truth["reconciliations"].items():
        lines.append(f"\n{name}: {recon['total']} discrepancies {recon['by_kind']}")
        lines.append(f"  field mismatches {recon['field_mismatches']}, severities {recon['by_severity']}")
        for d in recon["drift"]:
            expected = ", ".join(d["expected"]) or "nothing (absorbed by the rules)"
            lines.append(f"  {d['records']:>4}  {d['drift']:<36} -> {expected}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Write the demo's CRM, billing and warehouse sources.")
    parser.add_argument("folder", nargs="?", default=os.environ.get(DEMO_DATA_ENV, "demo-data"))
    parser.add_argument("--reference-date", type=date.fromisoformat, default=REFERENCE_DATE)
    args = parser.parse_args(argv)
    truth = generate_demo(Path(args.folder), args.reference_date)
    print(f"wrote {', '.join(DATA_FILES)} and {GROUND_TRUTH_FILE} into {Path(args.folder).resolve()}")
    print(f"active customers: {truth['active_counts']}")
    print(_drift_table(truth))
    print(f"\nexport {DEMO_DATA_ENV}={Path(args.folder).resolve()}")


if __name__ == "__main__":
    main()
