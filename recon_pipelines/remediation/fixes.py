"""Automatic fixes: for a field the spec declares a fix for, write the system of record's value
into the other system, by a SQL UPDATE or an HTTP call.

Off by default and guarded at every step:
- a fix runs only when the spec sets ``allowed: true`` for it;
- ``dry_run`` (the default) reports what would change and changes nothing;
- only open, unmuted ``field_mismatch`` discrepancies whose system-of-record value is
  present are fixed, each occurrence at most once;
- more planned changes than ``max_changes`` and none is made;
- a SQL update changes the row only if the target still holds the value just read;
- every change made (or refused by the target) is audited: a ``recon_fixes`` row with the
  values before and after, and a ``fix_applied`` event in the discrepancy's history.

A fix never resolves a discrepancy: the next comparison does, when it no longer sees it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote

import httpx
import sqlalchemy as sa

from recon_pipelines.remediation.outbox import chunks
from recon_pipelines.redact import redact
from recon_pipelines.sources.readonly import read_only_engine
from recon_pipelines.spec.models import HttpCallFix, ReconciliationSpec, SqlUpdateFix
from recon_pipelines.tracker.schema import discrepancies, events
from recon_pipelines.tracker.schema import fixes as fixes_table
from recon_pipelines.urls import normalize_url

FIX_ACTOR = "recon-fix"
FIXABLE_STATUSES = ("new", "acknowledged", "escalated")
UNFIXABLE_REASONS = ("type_mismatch_a", "type_mismatch_b")  # a value we cannot read is not a value to copy


@dataclass(frozen=True)
class Change:
    discrepancy_id: str
    key: str
    status: str
    before: object  # what the target holds now
    after: str  # what the fix writes


@dataclass
class FixReport:
    field: str
    action: str
    target: str
    allowed: bool
    dry_run: bool
    planned: list[Change] = field(default_factory=list)
    applied: list[Change] = field(default_factory=list)
    skipped: list[tuple[Change, str]] = field(default_factory=list)  # (change, why), e.g. target changed meanwhile
    failed: list[tuple[Change, str]] = field(default_factory=list)
    refused: str | None = None  # why nothing ran at all

    def markdown(self) -> str:
        if self.refused:
            return f"Nothing done: {self.refused}"
        if not self.planned:
            return "Nothing to fix."
        outcome = {c.discrepancy_id: "applied" for c in self.applied}
        outcome.update({c.discrepancy_id: f"skipped: {why}" for c, why in self.skipped})
        outcome.update({c.discrepancy_id: f"failed: {why}" for c, why in self.failed})
        rows = [f"| {_cell(c.key)} | {_cell(c.before)} | {_cell(c.after)} | "
                f"{'would change (dry run)' if self.dry_run else outcome.get(c.discrepancy_id, '')} |"
                for c in self.planned]
        return "\n".join([f"{self.action} on {_cell(self.target)}:", "", "| key | before | after | outcome |",
                          "|---|---|---|---|", *rows])


def run_fixes(
    tracker: sa.Engine,
    spec: ReconciliationSpec,
    *,
    dry_run: bool | None = None,
    ids: Iterable[str] | None = None,
    actor: str = FIX_ACTOR,
    run_id: str | None = None,
    now: datetime | None = None,
    environ: Mapping[str, str] | None = None,
    http_client: httpx.Client | None = None,
) -> list[FixReport]:
    """Plan, and unless dry-running, apply every fix of ``spec``. ``dry_run`` None: the spec's choice."""
    now = now or datetime.now(timezone.utc)
    environ = os.environ if environ is None else environ
    reports = []
    for fix in spec.fixes:
        target = _target(spec, fix, environ, http_client)
        report = FixReport(fix.field, fix.action, target.label, fix.allowed, fix.dry_run if dry_run is None else dry_run)
        reports.append(report)
        if not fix.allowed:
            report.refused = f"the fix of {fix.field} is not allowed (set allowed: true in the spec to enable it)"
            continue
        try:
            _plan(report, fix, target, _candidates(tracker, spec, fix, ids))
            if len(report.planned) > fix.max_changes:
                report.refused = (f"{len(report.planned)} changes planned, more than max_changes ({fix.max_changes}): "
                                  "none made; check the comparison, or raise the limit")
            elif not report.dry_run and report.planned:
                _apply(report, target)
                _audit(tracker, spec, fix, target.label, report, actor, run_id, now)
        finally:
            target.close()
    return reports


def _plan(report: FixReport, fix, target, candidates: list[_Candidate]) -> None:
    current = target.read(candidates)
    for c in candidates:
        after = fix.values.get(c.sor_value, c.sor_value)
        before = current.get(c.key, _MISSING)
        if before is _MISSING:
            report.skipped.append((Change(c.id, c.key, c.status, None, after), "record not found in the target"))
        elif before is None or str(before) != after:  # equal: fixed already, waiting for a comparison to confirm
            report.planned.append(Change(c.id, c.key, c.status, before, after))


def _apply(report: FixReport, target) -> None:
    for change in report.planned:
        try:
            changed = target.write(change.key, change.before, change.after)
        except Exception as exc:  # the target's own error, recorded in the audit trail
            report.failed.append((change, redact(f"{type(exc).__name__}: {exc}")[:500]))
        else:
            if changed:
                report.applied.append(change)
            else:
                report.skipped.append((change, "the target changed since it was read"))


# --------------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class _Candidate:
    id: str
    key: str
    status: str
    sor_value: str
    target_value: str | None  # the tracker's latest value of the side being changed


def _candidates(tracker: sa.Engine, spec: ReconciliationSpec, fix, ids: Iterable[str] | None) -> list[_Candidate]:
    d, f = discrepancies, fixes_table
    sor, other = (d.c.value_a, d.c.value_b) if fix.system_of_record == "a" else (d.c.value_b, d.c.value_a)
    already_fixed = sa.exists().where(f.c.discrepancy_id == d.c.id, f.c.outcome == "applied", f.c.at >= d.c.opened_at)
    query = sa.select(d.c.id, d.c.key, d.c.status, sor.label("sor"), other.label("other")).where(
        d.c.reconciliation == spec.name, d.c.kind == "field_mismatch", d.c.field == fix.field,
        d.c.status.in_(FIXABLE_STATUSES), d.c.reason.not_in(UNFIXABLE_REASONS), sor.is_not(None), ~already_fixed,
    ).order_by(d.c.key)
    if ids is not None:
        query = query.where(d.c.id.in_(list(ids)))
    with tracker.connect() as conn:
        return [_Candidate(r.id, r.key, r.status, r.sor, r.other) for r in conn.execute(query)]


# --------------------------------------------------------------------------- targets

_MISSING = object()


class _SqlTarget:
    def __init__(self, spec: ReconciliationSpec, fix: SqlUpdateFix, environ: Mapping[str, str]):
        side = "b" if fix.system_of_record == "a" else "a"
        source = spec.source_a if side == "a" else spec.source_b
        own = source if source.type == "sql" else None
        t = fix.target
        located = t.url is not None or t.url_env is not None
        self._url, self._url_env = (t.url, t.url_env) if located else (own.url, own.url_env)  # default: its own database
        self._environ = environ
        self.table = t.table or own.table
        self.schema = t.db_schema or (own.db_schema if own and not t.table else None)
        self.key_column = t.key_column or getattr(spec.key[0], side)
        self.column = t.column or getattr(spec.rule(fix.field), side)
        where = redact(self._url) if self._url else f"${self._url_env}"
        self.label = f"{source.name or side} {where} {self.table}.{self.column}"
        self._engine: sa.Engine | None = None
        self._reader: sa.Engine | None = None
        self._t = sa.table(self.table, sa.column(self.key_column), sa.column(self.column), schema=self.schema)

    def _resolved_url(self) -> str:
        url = self._url or self._environ.get(self._url_env or "")
        if not url:
            raise RuntimeError(f"environment variable {self._url_env} is not set (the fix target's URL)")
        return normalize_url(url)

    @property
    def engine(self) -> sa.Engine:
        """For the fix's own allow-listed UPDATE, and nothing else."""
        if self._engine is None:
            self._engine = sa.create_engine(self._resolved_url())
        return self._engine

    @property
    def reader(self) -> sa.Engine:
        """Reads go through a read-only session like any source's (``sources/readonly.py``)."""
        if self._reader is None:
            self._reader = read_only_engine(self._resolved_url())
        return self._reader

    def read(self, candidates: list[_Candidate]) -> dict[str, object]:
        """The target's current value per key (a key missing from the result has no row)."""
        k, c = self._t.c[self.key_column], self._t.c[self.column]
        found: dict[str, object] = {}
        with self.reader.connect() as conn:
            for chunk in chunks([candidate.key for candidate in candidates]):
                found.update((str(key), value) for key, value in conn.execute(sa.select(k, c).where(k.in_(chunk))))
        return found

    def write(self, key: str, before: object, after: str) -> bool:
        """Only if the row still holds ``before``: a concurrent edit is never overwritten."""
        k, c = self._t.c[self.key_column], self._t.c[self.column]
        unchanged = c.is_(None) if before is None else c == before
        with self.engine.begin() as conn:
            return conn.execute(sa.update(self._t).where(k == key, unchanged).values({self.column: after})).rowcount == 1

    def close(self) -> None:
        for engine in (self._engine, self._reader):
            if engine is not None:
                engine.dispose()


class _HttpTarget:
    """The target is not read: ``before`` is the tracker's latest value of that side."""

    def __init__(self, spec: ReconciliationSpec, fix: HttpCallFix, environ: Mapping[str, str],
                 client: httpx.Client | None):
        side = "b" if fix.system_of_record == "a" else "a"
        self._fix, self._environ = fix, environ
        self.body_field = fix.target.body_field or getattr(spec.rule(fix.field), side)
        base = redact(fix.target.url) if fix.target.url else f"${fix.target.url_env}"
        self.label = f"{fix.target.method} {base.rstrip('/')}{fix.target.path} {{{self.body_field}}}"
        self._client = client

    def read(self, candidates: list[_Candidate]) -> dict[str, object]:
        return {c.key: c.target_value for c in candidates}

    def write(self, key: str, before: object, after: str) -> bool:
        target = self._fix.target
        base = target.url or self._environ.get(target.url_env or "")
        if not base:
            raise RuntimeError(f"environment variable {target.url_env} is not set (the fix target's URL)")
        url = base.rstrip("/") + target.path.replace("{key}", quote(key, safe=""))
        client = self._client or httpx.Client()
        try:
            response = client.request(target.method, url, json={self.body_field: after}, headers=self._auth(),
                                      timeout=target.timeout)
        finally:
            if self._client is None:
                client.close()
        if not response.is_success:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        return True

    def close(self) -> None:
        pass  # a client passed in belongs to the caller; our own is closed after each call

    def _auth(self) -> dict[str, str]:
        auth = self._fix.target.auth
        if auth is None:
            return {}
        value = self._environ.get(auth.env, "")
        if not value:
            raise RuntimeError(f"environment variable {auth.env} is not set (the fix target's credential)")
        if auth.type == "bearer":
            return {auth.header: f"Bearer {value}"}
        if auth.type == "basic":
            return {auth.header: "Basic " + base64.b64encode(value.encode()).decode()}
        return {auth.header: value}


def _target(spec, fix, environ, client):
    return _SqlTarget(spec, fix, environ) if fix.action == "sql_update" else _HttpTarget(spec, fix, environ, client)


# --------------------------------------------------------------------------- audit


def _audit(tracker: sa.Engine, spec, fix, target: str, report: FixReport, actor: str, run_id: str | None,
           now: datetime) -> None:
    outcomes = [(c, "applied", None) for c in report.applied]
    outcomes += [(c, "skipped", why) for c, why in report.skipped if c in report.planned]  # attempted, not changed
    outcomes += [(c, "failed", why) for c, why in report.failed]
    with tracker.begin() as conn:
        conn.execute(sa.insert(fixes_table), [
            {"discrepancy_id": c.discrepancy_id, "reconciliation": spec.name, "key": c.key, "field": fix.field,
             "action": fix.action, "target": target, "value_before": None if c.before is None else str(c.before),
             "value_after": c.after, "outcome": outcome, "error": why, "actor": actor, "run_id": run_id, "at": now}
            for c, outcome, why in outcomes
        ])
        conn.execute(sa.insert(events), [
            {"discrepancy_id": c.discrepancy_id, "reconciliation": spec.name, "from_status": c.status,
             "to_status": c.status, "action": f"fix_{outcome}", "actor": actor, "run_id": run_id, "at": now,
             "note": f"{fix.field}: {c.before!r} -> {c.after!r} in {target}" + (f" ({why})" if why else "")
                     + ("; resolved once a comparison no longer sees it" if outcome == "applied" else "")}
            for c, outcome, why in outcomes
        ])


def _cell(value: object) -> str:
    text = "∅" if value is None else str(value)
    for ch in "\\|`*_[]<>#":
        text = text.replace(ch, "\\" + ch)
    return text.replace("\n", " ")[:80]
