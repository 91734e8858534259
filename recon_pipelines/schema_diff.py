"""Schema drift: what changed in each side's columns since the last run, and where the two sides'
types for a compared field differ in a way that matters to the field's rule.

- **Since the last run** (per side): columns added, removed, or whose declared type changed. The
  baseline is the side's schema as the previous run saw it, kept in the tracker
  (``recon_source_schemas``), not in Dagster's materialization metadata: ``recon run --track`` and
  the Dagster assets then share one history, and a CLI run needs no Dagster instance to know it.
- **Between the sides** (key and compared fields): type *families* that differ (integer, decimal,
  float, string, boolean, date, timestamp, timestamp with zone, ...), each judged against the
  field's rule: ``risky`` when the engine's comparison can call equal values different (or hide a
  difference), with the reason in words.

No Dagster here: ``dagster_defs`` shows the findings as table metadata and the ``schema_unchanged``
asset check, ``runner`` and the CLI print one line per finding.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import pyarrow as pa

from recon_pipelines.engine import side_columns
from recon_pipelines.spec.models import ExactRule, HttpSource, NumericRule, ReconciliationSpec, StringRule, TimestampRule

NUMBERS = {"integer", "decimal", "float"}
# A double carries 15 significant decimal digits faithfully; a wider decimal loses digits in it.
DOUBLE_DIGITS = 15


@dataclass(frozen=True)
class SourceColumn:
    name: str
    type: str  # as the source declares it: NUMERIC(12, 2), DECIMAL(12,2), VARCHAR, ...
    family: str  # see family_of()


@dataclass(frozen=True)
class SideSchema:
    side: str  # "a" or "b"
    system: str  # the spec's name for the source (crm, billing)
    source: str  # the connector's label, safe to show
    columns: tuple[SourceColumn, ...]

    def column(self, name: str) -> SourceColumn | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class Change:
    """One column added, removed or retyped on one side since the previous run."""

    side: str
    system: str
    column: str
    change: str  # added, removed, type_changed
    before: str | None  # the type before (removed, type_changed)
    after: str | None  # the type now (added, type_changed)
    compared: bool  # the column is a key or compared column of the spec

    def line(self) -> str:
        where = f"side {self.side.upper()} ({self.system}): column {self.column!r}"
        role = " (compared)" if self.compared else ""
        if self.change == "added":
            return f"{where} added ({self.after})"
        if self.change == "removed":
            return f"{where}{role} removed (was {self.before})"
        return f"{where}{role} changed type {self.before} -> {self.after}"


@dataclass(frozen=True)
class TypeDifference:
    """A key or compared field whose two columns are of different type families."""

    field: str
    rule: str  # key, exact, string, numeric, timestamp
    column_a: str
    type_a: str
    column_b: str
    type_b: str
    risky: bool
    why: str

    def line(self) -> str:
        level = "risky" if self.risky else "handled"
        return (f"{self.field} ({self.rule}): A {self.column_a} {self.type_a} vs B {self.column_b} {self.type_b}: "
                f"{level}: {self.why}")


@dataclass(frozen=True)
class Drift:
    """One side's findings in one run."""

    now: SideSchema
    previous: tuple[SourceColumn, ...] | None  # None: no earlier run recorded this side
    changes: tuple[Change, ...]

    @property
    def first_run(self) -> bool:
        return self.previous is None


# --------------------------------------------------------------------------- reading


def family_of(arrow: pa.DataType) -> str:
    """The type family a column is compared as (what the engine's rules tell apart)."""
    if pa.types.is_integer(arrow):
        return "integer"
    if pa.types.is_decimal(arrow):
        return "decimal"
    if pa.types.is_floating(arrow):
        return "float"
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "string"
    if pa.types.is_boolean(arrow):
        return "boolean"
    if pa.types.is_date(arrow):
        return "date"
    if pa.types.is_timestamp(arrow):
        return "timestamp with zone" if arrow.tz else "timestamp"
    if pa.types.is_time(arrow):
        return "time"
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
        return "binary"
    return "other"


def read_side(spec: ReconciliationSpec, side: str) -> SideSchema | None:
    """The side's columns as its source offers them now (a cheap read: footer, reflection, no rows).
    None for an HTTP source without declared ``columns``: its types would be guessed from one page,
    at the cost of one more request, and a guess is no baseline."""
    from recon_pipelines.sources import connector_for

    source = spec.source_a if side == "a" else spec.source_b
    if isinstance(source, HttpSource) and not source.columns:
        return None
    with connector_for(source) as connector:
        return side_schema(spec, side, connector)


def side_schema(spec: ReconciliationSpec, side: str, connector) -> SideSchema:
    schema = connector.schema()
    types = connector.source_types()
    columns = tuple(SourceColumn(f.name, types.get(f.name, str(f.type)), family_of(f.type)) for f in schema)
    return SideSchema(side, spec.source_names[0 if side == "a" else 1], connector.label, columns)


# --------------------------------------------------------------------------- since the last run


def changes_since(spec: ReconciliationSpec, previous: tuple[SourceColumn, ...] | None, now: SideSchema) -> list[Change]:
    """Columns added, removed or retyped since ``previous``; nothing when there is no previous run."""
    if previous is None:
        return []
    compared = set(side_columns(spec, now.side).values())
    old = {c.name: c for c in previous}
    new = {c.name: c for c in now.columns}
    changes = [Change(now.side, now.system, name, "removed", old[name].type, None, name in compared)
               for name in old if name not in new]
    changes += [Change(now.side, now.system, name, "added", None, new[name].type, name in compared)
                for name in new if name not in old]
    changes += [Change(now.side, now.system, name, "type_changed", old[name].type, new[name].type, name in compared)
                for name in new if name in old and old[name].type != new[name].type]
    order = {"removed": 0, "type_changed": 1, "added": 2}
    return sorted(changes, key=lambda c: (not c.compared, order[c.change], c.column))


def observe(spec: ReconciliationSpec, now: SideSchema | None, tracker, run_id: str | None) -> Drift | None:
    """Compare the side with the tracker's baseline, then make what was seen the new baseline:
    a change is reported by the run that first sees it (re-running is how it is acknowledged)."""
    from recon_pipelines.tracker.source_schemas import previous_columns, record_columns

    if now is None:
        return None
    recorded = previous_columns(tracker.engine, spec.name, now.side)
    previous = None if recorded is None else tuple(SourceColumn(**c) for c in recorded)
    changes = changes_since(spec, previous, now)
    record_columns(tracker.engine, spec.name, now.side, now.source, [asdict(c) for c in now.columns], run_id)
    return Drift(now, previous, tuple(changes))


def recorded_side(spec: ReconciliationSpec, side: str, tracker) -> SideSchema | None:
    """The side's schema as the tracker last recorded it (the Dagster snapshot step records it)."""
    from recon_pipelines.tracker.source_schemas import previous_columns

    recorded = previous_columns(tracker.engine, spec.name, side)
    if recorded is None:
        return None
    return SideSchema(side, spec.source_names[0 if side == "a" else 1], "", tuple(SourceColumn(**c) for c in recorded))


# --------------------------------------------------------------------------- between the sides


def between_sides(spec: ReconciliationSpec, a: SideSchema, b: SideSchema) -> list[TypeDifference]:
    """Key and compared fields whose columns differ in type family, or a decimal too wide for the
    double it is compared as, with the risk for the field's rule."""
    columns_a, columns_b = side_columns(spec, "a"), side_columns(spec, "b")
    keys = {k.name for k in spec.key}
    compared = keys | {f.name for f in spec.fields}
    found = []
    for name in columns_a:
        if name not in compared:  # a match: rule's group reference or fee column: no field rule to judge it
            continue
        col_a, col_b = a.column(columns_a[name]), b.column(columns_b[name])
        if col_a is None or col_b is None:
            continue  # a missing column is the required_columns check's finding
        rule = None if name in keys else spec.rule(name)
        judged = _judge(rule, col_a, col_b)
        if judged is not None:
            risky, why = judged
            found.append(TypeDifference(name, "key" if rule is None else rule.compare, col_a.name, col_a.type,
                                        col_b.name, col_b.type, risky, why))
    return found


def _judge(rule, a: SourceColumn, b: SourceColumn) -> tuple[bool, str] | None:
    """(risky, why) for two columns compared under ``rule`` (None: a key); None when nothing to say."""
    fa, fb = a.family, b.family
    if fa == fb:
        return None  # one family: the rule reads both sides alike (a width change is drift, not this)
    pair = {fa, fb}
    wide = _wider_than_double(a, b)
    if rule is None:
        return True, (f"keys of different types are matched by their text ({fa} vs {fb}): the same id must be "
                      "spelt the same way on both sides (7 never meets '007' or 7.0)")
    if isinstance(rule, NumericRule):
        if pair <= NUMBERS:
            if "float" in pair:
                return bool(wide), wide or "compared in double precision, within a few ulps: safe for amounts of up to 15 digits"
            return False, "compared exactly as decimals (42 = 42.00)"
        other = (pair - NUMBERS) or pair
        return True, (f"the {'/'.join(sorted(other))} side is read as a number: a value that is not one "
                      "is reported as a type mismatch")
    if isinstance(rule, TimestampRule):
        if pair == {"timestamp", "timestamp with zone"}:
            naive_side = "a" if fa == "timestamp" else "b"
            zone_field = f"timezone_{naive_side}"
            if zone_field in rule.model_fields_set:
                return False, f"the naive side is read in {getattr(rule, zone_field)} ({zone_field})"
            return True, (f"side {naive_side.upper()} has no zone and is read as UTC: set {zone_field} if its "
                          "clock is another zone's")
        if pair & NUMBERS:
            number_side = "a" if fa in NUMBERS else "b"
            unit = getattr(rule, f"epoch_unit_{number_side}")
            if unit:
                return False, f"side {number_side.upper()} is read as epoch {unit}"
            return True, f"side {number_side.upper()} is a number, read as epoch seconds: set epoch_unit_{number_side} if not"
        if "date" in pair and pair <= {"date", "timestamp", "timestamp with zone"}:
            return True, "a date is read as midnight: a time of day on the other side differs by up to a day"
        text = "/".join(sorted(pair - {"timestamp", "timestamp with zone", "date"}))
        return True, f"the {text} side is parsed as a time: a value that is not one is a type mismatch"
    if isinstance(rule, ExactRule) and not rule.values:
        if pair <= {"integer", "decimal"}:
            return False, "compared as numbers (42 = 42.00)"
        if pair <= NUMBERS:
            return True, ("compared in the float's precision: equal only when the decimal rounds to the same double "
                          "(use compare: numeric with a tolerance)")
        return True, (f"compared as text: {fa} and {fb} values must be spelt alike "
                      f"({_spelling_example(pair)})")
    kind = "string" if isinstance(rule, StringRule) else "exact"
    return True, f"{kind} compares the text of both sides: {_spelling_example(pair)}"


def _spelling_example(pair: set[str]) -> str:
    if "timestamp with zone" in pair:
        return "a timestamp's text carries its offset, the other side's does not"
    if pair & {"decimal", "float"}:
        return "42.5 is not 42.50"
    if "integer" in pair:
        return "7 is not '007'"
    if "boolean" in pair:
        return "true is not 'TRUE' or 1"
    return "formats differ between types"


def _wider_than_double(a: SourceColumn, b: SourceColumn) -> str | None:
    """Why a decimal side loses digits when the other side is a float, or None."""
    if "float" not in (a.family, b.family):
        return None
    for col in (a, b):
        digits = _decimal_digits(col)
        if digits is not None and digits > DOUBLE_DIGITS:
            return (f"{col.name} {col.type} holds up to {digits} digits, a double only {DOUBLE_DIGITS}: "
                    "large values are compared rounded")
    return None


def _decimal_digits(col: SourceColumn) -> int | None:
    if col.family != "decimal":
        return None
    match = re.search(r"\(\s*(\d+)", col.type)
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------- shown


def schema_lines(spec: ReconciliationSpec, drifts: list[Drift], differences: list[TypeDifference]) -> list[str]:
    """One line per finding, for ``recon run`` and ``recon validate``."""
    lines = [f"{spec.name}: schema: {c.line()}" for d in drifts for c in d.changes]
    lines += [f"{spec.name}: types: {d.line()}" for d in differences]
    return lines


def type_difference_lines(spec: ReconciliationSpec) -> list[str]:
    """The sides' type differences read from the sources now (no tracker needed), one line each."""
    a, b = read_side(spec, "a"), read_side(spec, "b")
    if a is None or b is None:
        return []
    return schema_lines(spec, [], between_sides(spec, a, b))
