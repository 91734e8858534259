"""The discrepancy tracker: state across runs.

``apply_run`` folds one run's discrepancies into the tracker in a single transaction,
set-based (a staging table and a handful of INSERT ... SELECT / UPDATE statements,
whatever the number of discrepancies):

- seen before and open: last_seen, times_seen and the current values are updated,
  nothing is re-reported;
- seen before but resolved: reopened (a new occurrence of the same id, history kept);
- never seen: inserted as ``new`` (these are what the remediation handler routes);
- open but not seen by this run: resolved (``auto``), but only when the run compared
  that key (its scope), so a one-day or a few-keys run never resolves what it did not read.

With the export guard (``guard=``, tracker/guard.py), a run whose side is empty or shrank
too far since the previous run of its scope changes nothing: it is recorded ``suspicious``
with its discrepancies kept staged, until an operator accepts it (``accept_run``).

A run killed before commit leaves the tracker exactly as it was.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

from recon_pipelines.redact import redact

from recon_pipelines.spec.models import EscalationSpec
from recon_pipelines.tracker import lifecycle
from recon_pipelines.tracker.db import create_tracker_engine, migrate
from recon_pipelines.tracker.lifecycle import TransitionError
from recon_pipelines.tracker.guard import Guard
from recon_pipelines.tracker.schema import APPLIED_OUTCOMES, OPEN_STATUSES, discrepancies, events, runs, scope_keys, staging
from recon_pipelines.tracker.values import encode_column

RUN_ACTOR = "recon-run"
STAGED_COLUMNS = ("id", "kind", "key", "field", "reason", "value_a", "value_b", "difference", "severity", "detail",
                  "systems", "odd_ones_out", "reference_system", "system_values")
SYSTEM_COLUMNS = STAGED_COLUMNS[-4:]  # N-way only (engine/nway.py); null for two sources


@dataclass(frozen=True)
class Scope:
    """What a run compared: everything (but ``exclude``), or only the given keys."""

    keys: tuple[str, ...] | None = None
    label: str = "full"
    exclude: tuple[str, ...] = ()  # keys not judged this time (in flight), never auto-resolved

    @classmethod
    def full(cls, exclude: Iterable[str] = (), label: str = "full") -> "Scope":
        return cls(None, label, tuple(dict.fromkeys(str(k) for k in exclude)))

    @classmethod
    def of_keys(cls, keys: Iterable[str], label: str = "keys") -> "Scope":
        return cls(tuple(dict.fromkeys(str(k) for k in keys)), label)


@dataclass
class RunOutcome:
    run_id: str
    new_ids: list[str] = field(default_factory=list)
    reopened_ids: list[str] = field(default_factory=list)
    resolved_ids: list[str] = field(default_factory=list)
    escalated_ids: list[str] = field(default_factory=list)
    seen_again: int = 0
    open_count: int = 0
    already_applied: bool = False
    held: str | None = None  # the export guard held the run: why, in one line (nothing else changed)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Tracker:
    def __init__(self, url: str | None = None, engine: sa.Engine | None = None, migrate_schema: bool = True):
        self.engine = engine or create_tracker_engine(url)
        if migrate_schema:
            migrate(self.engine)

    @property
    def url(self) -> str:
        return redact(self.engine.url)  # also ?password= and ?sslpassword=, which hide_password leaves

    # ------------------------------------------------------------------ runs

    def apply_run(
        self,
        reconciliation: str,
        run_id: str,
        found: pa.Table,
        scope: Scope = Scope(),
        summary: dict | None = None,
        started_at: datetime | None = None,
        now: datetime | None = None,
        escalation: EscalationSpec | None = None,
        on_outcome: Callable[[sa.Connection, RunOutcome, datetime], None] | None = None,
        guard: Guard | None = None,
    ) -> RunOutcome:
        """Fold one run's discrepancies (the engine's table) into the tracker, atomically.

        Applying the same ``run_id`` twice changes nothing the second time (a retried step).
        ``on_outcome`` runs inside the same transaction once the outcome is known (the
        remediation outbox uses it, so a notification exists if and only if its change does).
        With a ``guard``, a run whose sides shrank too far since the previous applied run of
        the same scope is held (``outcome.held`` says why): nothing changes but the run's row,
        and its discrepancies stay staged until ``accept_run``."""
        now = now or utcnow()
        outcome = RunOutcome(run_id)
        with self.engine.begin() as conn:
            self._lock(conn, reconciliation)
            recorded = conn.execute(sa.select(runs.c.outcome, runs.c.guard_note).where(runs.c.run_id == run_id)).first()
            if recorded:
                outcome.already_applied = True
                outcome.held = recorded.guard_note if recorded.outcome == "suspicious" else None
                return outcome
            self._stage(conn, run_id, found)
            self._stage_keys(conn, run_id, scope.keys if scope.keys is not None else scope.exclude)
            row = dict(
                run_id=run_id, reconciliation=reconciliation, scope=scope.label, started_at=started_at,
                finished_at=now, rows_a=(summary or {}).get("rows_a"), rows_b=(summary or {}).get("rows_b"),
                matched=(summary or {}).get("matched"), discrepancies=found.num_rows, summary=summary,
                key_sample=guard.observation.to_json() if guard else None,
            )
            if guard is not None:
                outcome.held = guard.check(self._baseline(conn, reconciliation, scope.label), run_id)
            if outcome.held:
                conn.execute(sa.insert(runs).values(**row, new=0, resolved=0, outcome="suspicious", guard_note=outcome.held))
                if on_outcome is not None:
                    on_outcome(conn, outcome, now)
                return outcome  # staged rows kept: they are what accepting the run applies
            self._fold(conn, reconciliation, run_id, scope, now, escalation, outcome)
            conn.execute(sa.insert(runs).values(
                **row, new=len(outcome.new_ids) + len(outcome.reopened_ids), resolved=len(outcome.resolved_ids),
                outcome="ok"))
            if on_outcome is not None:
                on_outcome(conn, outcome, now)
            self._unstage(conn, run_id)
        return outcome

    def accept_run(
        self,
        run_id: str,
        actor: str,
        escalation: EscalationSpec | None = None,
        on_outcome: Callable[[sa.Connection, RunOutcome, datetime], None] | None = None,
        now: datetime | None = None,
    ) -> RunOutcome:
        """Apply a run the export guard held, exactly as it would have been applied, on an
        operator's word: every transition it causes is recorded with ``actor``. Refused when a
        later run of the same scope was applied since (accepting would undo it: run again)."""
        now = now or utcnow()
        with self.engine.begin() as conn:
            held = self._run_row(conn, run_id)
            self._lock(conn, held.reconciliation)
            held = self._run_row(conn, run_id)  # again, under the lock
            if held.outcome != "suspicious":
                raise TransitionError(f"run {run_id} is {held.outcome}, not suspicious: there is nothing to accept")
            later = conn.scalar(sa.select(runs.c.run_id).where(
                runs.c.reconciliation == held.reconciliation, runs.c.scope == held.scope,
                runs.c.outcome.in_(APPLIED_OUTCOMES), runs.c.finished_at > held.finished_at).limit(1))
            if later:
                raise TransitionError(f"run {run_id} was held before run {later} was applied; accepting it now would "
                                      "undo that run: run the reconciliation again instead")
            s = scope_keys
            excluded = conn.scalars(sa.select(s.c.key).where(s.c.run_id == run_id))
            outcome = RunOutcome(run_id)
            self._fold(conn, held.reconciliation, run_id, Scope.full(excluded, held.scope), now, escalation, outcome,
                       actor=actor)
            conn.execute(sa.update(runs).where(runs.c.run_id == run_id).values(
                outcome="accepted", accepted_by=actor, accepted_at=now,
                new=len(outcome.new_ids) + len(outcome.reopened_ids), resolved=len(outcome.resolved_ids)))
            if on_outcome is not None:
                on_outcome(conn, outcome, now)
            self._unstage(conn, run_id)
        return outcome

    def baseline(self, reconciliation: str, scope_label: str) -> dict | None:
        """The latest applied run of this reconciliation and scope: what the guard compares with."""
        with self.engine.connect() as conn:
            return self._baseline(conn, reconciliation, scope_label)

    def _fold(self, conn: sa.Connection, reconciliation: str, run_id: str, scope: Scope, now: datetime,
              escalation: EscalationSpec | None, outcome: RunOutcome, actor: str = RUN_ACTOR) -> None:
        """The run's staged discrepancies into the tracker: reopen, refresh, insert, escalate, resolve."""
        d, s = discrepancies, staging
        staged = sa.select(s.c.id).where(s.c.run_id == run_id)
        mine = d.c.reconciliation == reconciliation
        self._expire_mutes(conn, reconciliation, run_id, now)

        # Resolved before, seen again: reopen as a new occurrence of the same discrepancy.
        reopened = sa.select(d.c.id).where(mine, d.c.status == "resolved", d.c.id.in_(staged))
        outcome.reopened_ids = list(conn.scalars(reopened))
        self._log(conn, reconciliation, outcome.reopened_ids, "resolved", "new", "reopened", run_id, now,
                  actor=actor, note="seen again after it was resolved")
        if outcome.reopened_ids:
            conn.execute(
                sa.update(d).where(d.c.id.in_(reopened)).values(
                    status="new", occurrence=d.c.occurrence + 1, consecutive_runs=0,
                    resolved_at=None, resolution=None, opened_at=now,
                )
            )

        # Seen again: refresh, never re-report.
        seen = conn.execute(
            sa.update(d)
            .where(mine, d.c.id == s.c.id, s.c.run_id == run_id)
            .values(
                last_seen=now, times_seen=d.c.times_seen + 1, consecutive_runs=d.c.consecutive_runs + 1,
                value_a=s.c.value_a, value_b=s.c.value_b, difference=s.c.difference, reason=s.c.reason,
                severity=s.c.severity, detail=s.c.detail, systems=s.c.systems, odd_ones_out=s.c.odd_ones_out,
                reference_system=s.c.reference_system, system_values=s.c.system_values, last_run_id=run_id, updated_at=now,
            )
        )
        outcome.seen_again = seen.rowcount - len(outcome.reopened_ids)

        # Never seen: insert as new (the one anti-join against the table), then read back
        # what was inserted: new, first sighting, first occurrence, by this run.
        at = sa.literal(now, sa.DateTime(timezone=True))
        conn.execute(
            sa.insert(d).from_select(
                [*STAGED_COLUMNS, "reconciliation", "status", "first_seen", "last_seen", "opened_at", "times_seen",
                 "consecutive_runs", "occurrence", "last_run_id", "updated_at"],
                sa.select(
                    *[s.c[c] for c in STAGED_COLUMNS], sa.literal(reconciliation), sa.literal("new"), at, at, at,
                    sa.literal(1), sa.literal(1), sa.literal(1), sa.literal(run_id), at,
                ).where(s.c.run_id == run_id, ~sa.exists().where(d.c.id == s.c.id)),
            )
        )
        inserted = [mine, d.c.status == "new", d.c.last_run_id == run_id, d.c.times_seen == 1, d.c.occurrence == 1]
        outcome.new_ids = list(conn.scalars(sa.select(d.c.id).where(*inserted)))
        self._log_new(conn, reconciliation, run_id, now, inserted, actor)

        outcome.escalated_ids = self._escalate(conn, reconciliation, run_id, escalation, now)

        # Open but not seen, within what this run compared: resolved.
        gone = [mine, d.c.status.in_(OPEN_STATUSES), ~d.c.id.in_(staged)]
        scoped = sa.select(scope_keys.c.key).where(scope_keys.c.run_id == run_id)
        if scope.keys is not None:
            gone.append(d.c.key.in_(scoped))
        elif scope.exclude:
            gone.append(~d.c.key.in_(scoped))
        for status in OPEN_STATUSES:
            ids = list(conn.scalars(sa.select(d.c.id).where(*gone, d.c.status == status)))
            self._log(conn, reconciliation, ids, status, "resolved", "resolved", run_id, now, actor=actor,
                      note="auto: no longer seen by a run that compared this key")
            outcome.resolved_ids += ids
        if outcome.resolved_ids:
            conn.execute(
                sa.update(d).where(*gone).values(
                    status="resolved", resolution="auto", resolved_at=now, consecutive_runs=0, updated_at=now
                )
            )

        outcome.open_count = conn.scalar(
            sa.select(sa.func.count()).select_from(d).where(mine, d.c.status.in_(OPEN_STATUSES))
        )

    # ------------------------------------------------------------------ operator actions

    def act(
        self,
        ids: Iterable[str],
        action: str,
        actor: str,
        note: str | None = None,
        until: datetime | None = None,
        assignee: str | None = None,
        now: datetime | None = None,
        on_behalf_of: str | None = None,
        run_id: str | None = None,
    ) -> list[dict]:
        """Apply an operator action to discrepancies: all of them or, if any is not allowed,
        none (TransitionError says which and why). Every action is recorded with its actor.

        ``actor`` is the identity that performed it, as authenticated by the caller (the OS
        user for the CLI, see ``recon_pipelines.identity``); a name the operator merely states
        goes in ``on_behalf_of`` and is recorded in the note, never as the actor. ``run_id``
        ties the event to the Dagster run that applied it."""
        now = now or utcnow()
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise TransitionError("no discrepancy ids given")
        if action == "resolve" and not note:
            raise TransitionError("resolving by hand needs a note saying why (--note)")
        if action == "mute" and (until is None or _utc(until) <= now):
            raise TransitionError("muting needs an expiry in the future (--until)")
        if action == "assign" and not assignee:
            raise TransitionError("assigning needs an assignee")
        if action == "comment" and not note:
            raise TransitionError("a comment needs a note")
        d = discrepancies
        with self.engine.begin() as conn:
            rows = {r.id: r for r in conn.execute(sa.select(d.c.id, d.c.status, d.c.reconciliation).where(d.c.id.in_(ids)))}
            unknown = [i for i in ids if i not in rows]
            if unknown:
                raise LookupError(f"no discrepancy with id {', '.join(map(repr, unknown))}")
            targets = {i: lifecycle.check(action, i, rows[i].status) for i in ids}
            for i in ids:
                to = targets[i]
                values: dict = {"updated_at": now}
                if to is not None:
                    values["status"] = to
                if action == "resolve":
                    values.update(resolution="manual", resolved_at=now, consecutive_runs=0)
                elif action == "mute":
                    values["muted_until"] = _utc(until)
                elif action in ("unmute",):
                    values["muted_until"] = None
                elif action == "reopen":
                    values.update(occurrence=d.c.occurrence + 1, opened_at=now, resolution=None, resolved_at=None)
                elif action == "assign":
                    values["assignee"] = assignee
                conn.execute(sa.update(d).where(d.c.id == i).values(**values))
                text = note if action != "mute" else f"muted until {_utc(until).isoformat()}" + (f": {note}" if note else "")
                if action == "assign":
                    text = f"assigned to {assignee}" + (f": {note}" if note else "")
                if on_behalf_of:
                    text = f"on behalf of {on_behalf_of}" + (f": {text}" if text else "")
                self._log(conn, rows[i].reconciliation, [i], rows[i].status, to or rows[i].status, action, run_id, now,
                          actor=actor, note=text)
        return [self.get(i) for i in ids]

    # ------------------------------------------------------------------ reads

    def discrepancies(
        self,
        reconciliation: str | None = None,
        status: str | Iterable[str] | None = None,
        severity: str | None = None,
        limit: int | None = None,
        older_than: timedelta | None = None,
    ) -> list[dict]:
        """Discrepancies as dicts, newest first; ``status='open'`` means every open state;
        ``older_than`` keeps those whose current occurrence opened longer ago than that."""
        d = discrepancies
        query = sa.select(d).order_by(d.c.last_seen.desc(), d.c.id)
        if older_than is not None:
            query = query.where(d.c.opened_at <= utcnow() - older_than)
        if reconciliation:
            query = query.where(d.c.reconciliation == reconciliation)
        if status:
            wanted = OPEN_STATUSES if status == "open" else ((status,) if isinstance(status, str) else tuple(status))
            query = query.where(d.c.status.in_(wanted))
        if severity:
            query = query.where(d.c.severity == severity)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_aware(dict(row._mapping)) for row in conn.execute(query)]

    def get(self, discrepancy_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(discrepancies).where(discrepancies.c.id == discrepancy_id)).first()
        return _aware(dict(row._mapping)) if row else None

    def history(self, discrepancy_id: str) -> list[dict]:
        e = events
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(e).where(e.c.discrepancy_id == discrepancy_id).order_by(e.c.event_id))
            return [_aware(dict(r._mapping)) for r in rows]

    def status_counts(self, reconciliation: str) -> dict[str, int]:
        d = discrepancies
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(d.c.status, sa.func.count()).where(d.c.reconciliation == reconciliation).group_by(d.c.status)
            )
            return {status: count for status, count in rows}

    def open_severity_counts(self, reconciliation: str) -> dict[str, int]:
        d = discrepancies
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(d.c.severity, sa.func.count())
                .where(d.c.reconciliation == reconciliation, d.c.status.in_(OPEN_STATUSES))
                .group_by(d.c.severity)
            )
            return {severity: count for severity, count in rows}

    def runs(self, reconciliation: str | None = None) -> list[dict]:
        query = sa.select(runs).order_by(runs.c.finished_at)
        if reconciliation:
            query = query.where(runs.c.reconciliation == reconciliation)
        with self.engine.connect() as conn:
            return [_aware(dict(r._mapping)) for r in conn.execute(query)]

    def run(self, run_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
        return _aware(dict(row._mapping)) if row else None

    def runs_of(self, dagster_run_id: str) -> list[dict]:
        """The tracker runs one Dagster run recorded (their ids are ``<dagster run id>:<scope>``)."""
        with self.engine.connect() as conn:
            return [_aware(dict(r._mapping)) for r in conn.execute(sa.select(runs).where(_of_run(runs.c.run_id, dagster_run_id)))]

    def seen_in_run(self, dagster_run_id: str) -> list[dict]:
        """The discrepancies one Dagster run found (it is the last run that saw them), by key and field."""
        d = discrepancies
        query = sa.select(d).where(_of_run(d.c.last_run_id, dagster_run_id)).order_by(d.c.key, d.c.field, d.c.kind)
        with self.engine.connect() as conn:
            return [_aware(dict(row._mapping)) for row in conn.execute(query)]

    # ------------------------------------------------------------------ internals

    def _expire_mutes(self, conn: sa.Connection, reconciliation: str, run_id: str, now: datetime) -> None:
        d = discrepancies
        expired = list(conn.scalars(sa.select(d.c.id).where(
            d.c.reconciliation == reconciliation, d.c.status == "muted", d.c.muted_until <= now)))
        if expired:
            self._log(conn, reconciliation, expired, "muted", "new", "unmuted", run_id, now, note="mute expired")
            conn.execute(sa.update(d).where(d.c.id.in_(expired)).values(status="new", muted_until=None, updated_at=now))

    def _escalate(self, conn, reconciliation: str, run_id: str, rules: EscalationSpec | None, now: datetime) -> list[str]:
        """The spec's escalation rules, applied to the open discrepancies this run saw."""
        if rules is None:
            return []
        d, s = discrepancies, staging
        seen = [d.c.reconciliation == reconciliation, d.c.status.in_(("new", "acknowledged")),
                d.c.id.in_(sa.select(s.c.id).where(s.c.run_id == run_id))]
        reasons = []
        if rules.severities:
            reasons.append((d.c.severity.in_(rules.severities), f"severity is {' or '.join(rules.severities)}"))
        if rules.after_open is not None:
            reasons.append((d.c.opened_at <= now - timedelta(seconds=rules.after_open),
                            f"open longer than {_duration_text(rules.after_open)}"))
        if rules.after_runs is not None:
            reasons.append((d.c.consecutive_runs > rules.after_runs, f"seen in more than {rules.after_runs} consecutive runs"))
        escalated: list[str] = []
        for condition, reason in reasons:
            for status in ("new", "acknowledged"):
                ids = list(conn.scalars(sa.select(d.c.id).where(*seen, condition, d.c.status == status)))
                if ids:
                    self._log(conn, reconciliation, ids, status, "escalated", "escalated", run_id, now, note=reason)
                    conn.execute(sa.update(d).where(d.c.id.in_(ids)).values(status="escalated", updated_at=now))
                    escalated += ids
        return escalated

    def _lock(self, conn: sa.Connection, reconciliation: str) -> None:
        """One writer per reconciliation at a time. SQLite's BEGIN IMMEDIATE already holds the
        database write lock; PostgreSQL takes a transaction-scoped advisory lock."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(reconciliation)})

    def _stage(self, conn: sa.Connection, run_id: str, found: pa.Table) -> None:
        if found.num_rows == 0:
            return
        for name in SYSTEM_COLUMNS:
            if name not in found.column_names:
                found = found.append_column(name, pa.nulls(found.num_rows, pa.string()))
        table = found.select(list(STAGED_COLUMNS)).add_column(0, "run_id", pa.array([run_id] * found.num_rows, pa.string()))
        table = _encoded(table, ("key", "value_a", "value_b", "detail", "system_values"))
        if conn.dialect.name == "postgresql":
            _copy_into(conn, staging.name, table)
        else:
            _insert_many(conn, staging.name, table)

    def _unstage(self, conn: sa.Connection, run_id: str) -> None:
        conn.execute(sa.delete(staging).where(staging.c.run_id == run_id))
        conn.execute(sa.delete(scope_keys).where(scope_keys.c.run_id == run_id))

    def _baseline(self, conn: sa.Connection, reconciliation: str, scope_label: str) -> dict | None:
        r = runs
        row = conn.execute(
            sa.select(r.c.run_id, r.c.rows_a, r.c.rows_b, r.c.key_sample)
            .where(r.c.reconciliation == reconciliation, r.c.scope == scope_label, r.c.outcome.in_(APPLIED_OUTCOMES))
            .order_by(r.c.finished_at.desc()).limit(1)
        ).first()
        return dict(row._mapping) if row else None

    def _run_row(self, conn: sa.Connection, run_id: str) -> sa.Row:
        row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
        if row is None:
            raise LookupError(f"no run with id {run_id!r} in the tracker")
        return row

    def _stage_keys(self, conn: sa.Connection, run_id: str, keys: tuple[str, ...]) -> None:
        if not keys:
            return
        table = pa.table({"run_id": pa.array([run_id] * len(keys)), "key": pa.array(keys, pa.string())})
        table = _encoded(table, ("key",))
        if conn.dialect.name == "postgresql":
            _copy_into(conn, scope_keys.name, table)
        else:
            _insert_many(conn, scope_keys.name, table)

    def _log_new(self, conn: sa.Connection, reconciliation: str, run_id: str, now: datetime, inserted: list,
                 actor: str = RUN_ACTOR) -> None:
        d = discrepancies
        conn.execute(
            sa.insert(events).from_select(
                ["discrepancy_id", "reconciliation", "from_status", "to_status", "action", "actor", "note", "run_id", "at"],
                sa.select(
                    d.c.id, sa.literal(reconciliation), sa.null(), sa.literal("new"), sa.literal("detected"),
                    sa.literal(actor), d.c.reason, sa.literal(run_id), sa.literal(now, sa.DateTime(timezone=True)),
                ).where(*inserted),
            )
        )

    def _log(self, conn, reconciliation, ids, from_status, to_status, action, run_id, now, actor=RUN_ACTOR, note=None):
        if not ids:
            return
        conn.execute(
            sa.insert(events),
            [
                {"discrepancy_id": i, "reconciliation": reconciliation, "from_status": from_status,
                 "to_status": to_status, "action": action, "actor": actor, "note": note, "run_id": run_id, "at": now}
                for i in ids
            ],
        )


def _encoded(table: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    """COPY bypasses the column types, so their encoding (NUL bytes) is applied here."""
    for name in columns:
        table = table.set_column(table.column_names.index(name), name, encode_column(table.column(name)))
    return table


def _copy_into(conn: sa.Connection, table_name: str, table: pa.Table) -> None:
    """PostgreSQL COPY from an in-memory CSV: one round trip for any number of rows."""
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    buffer.seek(0)
    raw = conn.connection.dbapi_connection
    with raw.cursor() as cursor:
        cursor.copy_expert(
            f"COPY {table_name} ({', '.join(table.column_names)}) FROM STDIN WITH (FORMAT csv)", buffer
        )


def _insert_many(conn: sa.Connection, table_name: str, table: pa.Table) -> None:
    """SQLite: one prepared INSERT run over the rows on the DBAPI cursor, inside the run's
    transaction. The values are already encoded (``_encoded``), so SQLAlchemy's per-value type
    processing, which cost more than the insert itself, is skipped."""
    columns = table.column_names
    rows = zip(*(table.column(name).to_pylist() for name in columns))
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.executemany(f"INSERT INTO {table_name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
    finally:
        cursor.close()


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _lock_key(reconciliation: str) -> int:
    return int.from_bytes(hashlib.md5(reconciliation.encode()).digest()[:8], "big", signed=True)


def _aware(row: dict) -> dict:
    """SQLite hands back naive datetimes; everything the tracker stores is UTC."""
    for name, value in row.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            row[name] = value.replace(tzinfo=timezone.utc)
    return row


def _of_run(column, dagster_run_id: str):
    return sa.or_(column == dagster_run_id, column.startswith(f"{dagster_run_id}:", autoescape=True))
