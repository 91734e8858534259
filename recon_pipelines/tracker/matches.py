"""Deciding suggested matches (engine/suggest.py): an operator confirms or rejects a pair.

Confirming resolves the suggestion and records the pair; later runs pair the two records by
it (``confirmed_pairs``), so their ``only_in_a``/``only_in_b`` discrepancies are resolved by the
next run that compares them, not by the decision. Rejecting resolves the suggestion and keeps
the pair from being suggested again. A record is confirmed with at most one counterpart.
"""

from __future__ import annotations

import re
from datetime import datetime

import sqlalchemy as sa

from recon_pipelines.tracker import lifecycle
from recon_pipelines.tracker.lifecycle import TransitionError
from recon_pipelines.tracker.schema import discrepancies, match_decisions
from recon_pipelines.tracker.store import Tracker, utcnow

SUGGESTED = "suggested_match"
_SCORE = re.compile(r"^match probability ([0-9.]+)")


def decide(tracker: Tracker, discrepancy_id: str, decision: str, actor: str, note: str | None = None,
           on_behalf_of: str | None = None, now: datetime | None = None) -> dict:
    """Confirm or reject one open suggestion, in one transaction: the decision and the
    suggestion's resolution (with its audit event) are written together or not at all."""
    if decision not in ("confirmed", "rejected"):
        raise TransitionError(f"unknown decision {decision!r}; expected confirmed or rejected")
    now = now or utcnow()
    d, m = discrepancies, match_decisions
    with tracker.engine.begin() as conn:
        row = conn.execute(sa.select(d).where(d.c.id == discrepancy_id)).mappings().first()
        if row is None:
            raise LookupError(f"no discrepancy with id {discrepancy_id!r}")
        if row["kind"] != SUGGESTED:
            raise TransitionError(f"discrepancy {discrepancy_id} is a {row['kind']}, not a suggested match")
        to = lifecycle.check("resolve", discrepancy_id, row["status"])
        key_a, key_b = row["value_a"], row["value_b"]
        mine = m.c.reconciliation == row["reconciliation"]
        if decision == "confirmed":
            taken = conn.execute(sa.select(m.c.key_a, m.c.key_b).where(
                mine, m.c.decision == "confirmed", sa.or_(m.c.key_a == key_a, m.c.key_b == key_b))).first()
            if taken is not None:
                raise TransitionError(f"cannot confirm {key_a} ↔ {key_b}: {taken.key_a} ↔ {taken.key_b} is already "
                                      "confirmed (a record is paired with one counterpart)")
        conn.execute(sa.delete(m).where(mine, m.c.key_a == key_a, m.c.key_b == key_b))
        conn.execute(sa.insert(m).values(
            reconciliation=row["reconciliation"], key_a=key_a, key_b=key_b, decision=decision,
            discrepancy_id=discrepancy_id, score=_score(row["detail"]), actor=actor, note=note, decided_at=now))
        conn.execute(sa.update(d).where(d.c.id == discrepancy_id).values(
            status=to, resolution=decision, resolved_at=now, consecutive_runs=0, updated_at=now))
        text = f"{decision} {key_a} ↔ {key_b}" + (f": {note}" if note else "")
        if on_behalf_of:
            text = f"on behalf of {on_behalf_of}: {text}"
        tracker._log(conn, row["reconciliation"], [discrepancy_id], row["status"], to, "resolve", None, now,
                     actor=actor, note=text)
    return tracker.get(discrepancy_id)


def decided_pairs(tracker: Tracker, reconciliation: str, decision: str | None = None) -> list[tuple[str, str]]:
    """(key A, key B) of the decided pairs, oldest first; ``decision`` narrows to one kind.
    A tracker whose schema predates the decisions (or does not exist yet) has none."""
    m = match_decisions
    query = sa.select(m.c.key_a, m.c.key_b).where(m.c.reconciliation == reconciliation)
    if decision is not None:
        query = query.where(m.c.decision == decision)
    if not sa.inspect(tracker.engine).has_table(m.name):  # an untracked run's tracker may predate 0010
        return []
    with tracker.engine.connect() as conn:
        return [(r.key_a, r.key_b) for r in conn.execute(query.order_by(m.c.decided_at, m.c.key_a))]


def decisions(tracker: Tracker, reconciliation: str | None = None) -> list[dict]:
    m = match_decisions
    query = sa.select(m).order_by(m.c.decided_at, m.c.key_a)
    if reconciliation:
        query = query.where(m.c.reconciliation == reconciliation)
    with tracker.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def _score(detail: str | None) -> float | None:
    match = _SCORE.match(detail or "")
    return float(match.group(1)) if match else None
