"""Data for the payouts example (payouts_vs_charges.yaml): the ledger's charges against the
processor's payouts, deterministic from a seed, with the ground truth of what a run must find.

``python -m recon_pipelines.examples.payouts DIR`` writes ``ledger_charges.csv`` and
``processor_payouts.csv`` into DIR (then ``PAYOUTS_DATA=DIR recon run …/payouts_vs_charges.yaml``).

What is seeded, and what the spec's rules make of it:

- direct charges, settled one by one and gross: the payout's reference is the charge id (key);
- batched payouts settling 1 to 6 charges net of their fees, the ledger holding each charge's
  payout id (group reference): they agree;
- one batched payout of which the ledger lacks one charge: ``group_mismatch``, the gap being
  that charge's net amount;
- charges the ledger has not tied to a payout yet, found by amount and date (window): one
  payout settling 2 or 3 of them, and split payments (one charge paid out in two parts);
- an ambiguous pair: one payout, two unreferenced charges of the same net amount in its window:
  ``ambiguous_match``, neither chosen;
- a charge never paid out (``unmatched_a``) and a payout the ledger cannot explain (``unmatched_b``).

Each window scenario lies on its own dates, 10 days from the next (the spec's window is 2 days),
so no line can fit another scenario's.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

CENT = Decimal("0.01")
START = datetime(2026, 10, 1, tzinfo=timezone.utc)
FEE_RATE = Decimal("0.029")
FEE_FIXED = Decimal("0.30")


@dataclass
class GroundTruth:
    """What a run of payouts_vs_charges.yaml over the generated files must report, no more, no less:
    (kind, key) -> the gap for group_mismatch (a Decimal), else None."""

    expected: dict[tuple[str, str], Decimal | None] = field(default_factory=dict)
    charges: int = 0
    payouts: int = 0

    def to_json(self) -> str:
        return json.dumps({"charges": self.charges, "payouts": self.payouts,
                           "expected": [[k, key, None if gap is None else str(gap)] for (k, key), gap in sorted(self.expected.items())]},
                          indent=1)


class _Writer:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.charges: list[dict] = []
        self.payouts: list[dict] = []
        self.next_charge = 1
        self.next_payout = 1

    def amount(self, low: int = 5, high: int = 900) -> Decimal:
        return (Decimal(self.rng.randrange(low * 100, high * 100)) * CENT).quantize(CENT)

    def charge(self, when: datetime, payout_id: str | None, fee: bool = True, amount: Decimal | None = None,
               keep: bool = True) -> tuple[str, Decimal]:
        """A charge; returns its id and net amount. ``keep=False``: the ledger never recorded it."""
        charge_id = f"ch_{self.next_charge:05d}"
        self.next_charge += 1
        gross = amount if amount is not None else self.amount()
        fee_amount = (gross * FEE_RATE + FEE_FIXED).quantize(CENT) if fee else Decimal("0.00")
        if keep:
            self.charges.append({"charge_id": charge_id, "payout_id": payout_id or "", "amount": str(gross),
                                 "fee": str(fee_amount), "charged_at": when.isoformat()})
        return charge_id, gross - fee_amount

    def payout(self, when: datetime, net: Decimal, reference: str | None = None) -> str:
        payout_id = f"po_{self.next_payout:05d}"
        self.next_payout += 1
        cents = int((net / CENT).to_integral_exact())
        self.payouts.append({"payout_id": payout_id, "reference": reference or payout_id, "amount_cents": cents,
                             "paid_at": when.isoformat()})
        return payout_id


def generate(folder: Path, seed: int = 17, batched: int = 120, direct: int = 40, windows: int = 6) -> GroundTruth:
    """Write both files into ``folder``; returns what a run must find."""
    rng = random.Random(seed)
    w = _Writer(rng)
    truth = GroundTruth()
    day = lambda n, hours=0: START + timedelta(days=n, hours=hours)  # noqa: E731

    for i in range(direct):  # settled one by one, gross: key matching
        when = day(i % 5, hours=rng.randrange(1, 20))
        charge_id, net = w.charge(when, None, fee=False)
        w.payout(when + timedelta(hours=rng.randrange(1, 40)), net, reference=charge_id)

    for i in range(batched):  # batched payouts, net of fees: group references
        when = day(i % 7)
        payout_id = f"po_{w.next_payout:05d}"
        nets = [w.charge(when + timedelta(hours=rng.randrange(0, 20)), payout_id)[1] for _ in range(rng.randint(1, 6))]
        w.payout(when + timedelta(days=2), sum(nets))

    # One batched payout of which the ledger lacks a charge: the gap is that charge's net amount.
    payout_id = f"po_{w.next_payout:05d}"
    nets = [w.charge(day(3), payout_id)[1] for _ in range(3)]
    _, missing = w.charge(day(3, hours=5), payout_id, keep=False)
    w.payout(day(5), sum(nets) + missing)
    truth.expected[("group_mismatch", payout_id)] = missing

    # Window scenarios, each on its own dates (day 30 on, 10 days apart).
    scenario = iter(range(30, 10_000, 10))
    for _ in range(windows):  # one payout settling 2-3 unreferenced charges
        start = next(scenario)
        nets = [w.charge(day(start, hours=h), None)[1] for h in range(rng.randint(2, 3))]
        w.payout(day(start + 1), sum(nets))
    for _ in range(2):  # split payments: one charge paid out in two parts
        start = next(scenario)
        _, net = w.charge(day(start), None, amount=w.amount(200, 900))
        first = (net * Decimal(rng.randrange(20, 80)) / 100).quantize(CENT)
        w.payout(day(start + 1), first)
        w.payout(day(start + 1, hours=6), net - first)

    start = next(scenario)  # an ambiguous pair: two charges of the same net amount, one payout
    gross = w.amount()
    first, net = w.charge(day(start), None, amount=gross)
    second, _ = w.charge(day(start, hours=3), None, amount=gross)
    payout_id = w.payout(day(start + 1), net)
    truth.expected[("ambiguous_match", json.dumps({"a": sorted([first, second]), "b": [payout_id]}, separators=(",", ":")))] = None

    start = next(scenario)  # a charge never paid out
    unpaid, _ = w.charge(day(start), None)
    truth.expected[("unmatched_a", unpaid)] = None
    start = next(scenario)  # a payout the ledger cannot explain
    orphan = w.payout(day(start), w.amount())
    truth.expected[("unmatched_b", orphan)] = None

    folder.mkdir(parents=True, exist_ok=True)
    rng.shuffle(w.charges)  # files in no helpful order
    rng.shuffle(w.payouts)
    _write(folder / "ledger_charges.csv", w.charges)
    _write(folder / "processor_payouts.csv", w.payouts)
    truth.charges, truth.payouts = len(w.charges), len(w.payouts)
    return truth


def _write(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":  # pragma: no cover - a convenience for trying the example
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "payouts_data")
    print(generate(out).to_json())
