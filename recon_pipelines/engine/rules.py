"""Compile each field rule of a spec to DuckDB SQL expressions.

A rule becomes three expressions over the paired raw values ``a`` and ``b``:
``reason`` (NULL when the pair agrees, else why not), ``difference`` (|a - b|
for numbers, seconds for timestamps) and ``raw_differs`` (the values are not
identical, used to measure drift that stayed within tolerance).
"""

from __future__ import annotations

from dataclasses import dataclass

from recon_pipelines.instants import WHITESPACE, instant_sql
from recon_pipelines.spec.models import ExactRule, NumericRule, StringRule, TimestampRule
from recon_pipelines.sqlutil import sql_literal

# Float noise below this share of the magnitude is not a difference (10.71 - 10.70 = 0.010000000000001563).
FLOAT_EPSILON = 1e-9
_TEXT_TYPES = ("VARCHAR", "CHAR", "TEXT", "STRING")
_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "REAL")

REASONS = ("value_differs", "null_in_a", "null_in_b", "both_null", "type_mismatch_a", "type_mismatch_b")


@dataclass(frozen=True)
class FieldSql:
    name: str
    reason: str
    difference: str
    raw_differs: str
    relative: str
    detail: str


def compile_rule(rule, a: str, b: str, type_a: str, type_b: str) -> FieldSql:
    """SQL for one field; ``a``/``b`` are column expressions, ``type_*`` their DuckDB types."""
    if isinstance(rule, NumericRule):
        va, vb = _scaled(_numeric(a, type_a), rule.scale_a), _scaled(_numeric(b, type_b), rule.scale_b)
        tolerance = f"greatest({rule.abs_tol!r}, {rule.rel_tol!r} * greatest(abs({va}), abs({vb})))"
        noise = f"{FLOAT_EPSILON!r} * greatest(1.0, abs({va}), abs({vb}))"
        equal = f"abs({va} - {vb}) <= {tolerance} + {noise}"
        difference = f"abs({va} - {vb})"
        detail = f"format('differs by {{}} (tolerance {{}})', round({difference}, 9), round({tolerance}, 9))"
        relative = f"{difference} / nullif(greatest(abs({va}), abs({vb})), 0)"
        kind = "a number"
    elif isinstance(rule, TimestampRule):
        va, vb = _instant(rule, a, type_a, "a"), _instant(rule, b, type_b, "b")
        difference = f"abs(epoch_us({va}) - epoch_us({vb})) / 1e6"
        equal = f"{difference} <= {rule.lag!r} + 1e-6"
        detail = f"format('{{}} s apart (lag tolerance {{}} s)', round({difference}, 6), {rule.lag!r})"
        relative = "NULL::DOUBLE"
        kind = "a timestamp"
    elif isinstance(rule, (StringRule, ExactRule)):
        if isinstance(rule, ExactRule) and not rule.values and _same_family(type_a, type_b):
            va, vb = a, b
        else:
            steps = rule.normalize if isinstance(rule, StringRule) else []
            va, vb = _mapped(_text(a, steps), rule.values, steps), _mapped(_text(b, steps), rule.values, steps)
        equal = f"{va} = {vb}"
        difference = relative = "NULL::DOUBLE"
        detail = "'values differ'" if isinstance(rule, ExactRule) else f"'values differ after {'+'.join(rule.normalize) or 'no'} normalisation'"
        kind = None
    else:  # pragma: no cover - the spec model admits no other rule
        raise TypeError(f"unknown rule {rule!r}")

    nulls = rule.nulls
    reason = f"""CASE
        WHEN {a} IS NULL AND {b} IS NULL THEN {sql_literal('both_null') if nulls.both_null == 'differ' else 'NULL'}
        WHEN {a} IS NULL THEN {'NULL' if 'a' in nulls.allow_null_in else sql_literal('null_in_a')}
        WHEN {b} IS NULL THEN {'NULL' if 'b' in nulls.allow_null_in else sql_literal('null_in_b')}
        {f"WHEN {va} IS NULL THEN 'type_mismatch_a' WHEN {vb} IS NULL THEN 'type_mismatch_b'" if kind else ''}
        WHEN {equal} THEN NULL
        ELSE 'value_differs' END"""
    if kind:
        detail = f"""CASE WHEN {a} IS NOT NULL AND {va} IS NULL THEN 'A value is not {kind}'
            WHEN {b} IS NOT NULL AND {vb} IS NULL THEN 'B value is not {kind}' ELSE {detail} END"""
    raw_differs = (
        f"{a} IS DISTINCT FROM {b}" if _same_family(type_a, type_b) else f"CAST({a} AS VARCHAR) IS DISTINCT FROM CAST({b} AS VARCHAR)"
    )
    if isinstance(rule, TimestampRule) and _sides_read_differently(rule):
        raw_differs = f"{va} IS DISTINCT FROM {vb}"  # as hashed: the same instant is no drift
    return FieldSql(rule.name, reason, difference, raw_differs, relative, detail)


def hash_operand(rule, column: str, own_type: str, other_type: str, side: str) -> str:
    """What one side hashes for the fast equality check. Equal hashes must imply agreement,
    so both sides hash the same representation: text when the types differ, and the
    instant (not the wall-clock reading) for naive timestamps read in different zones, and the
    scaled number when the sides count in different units."""
    if isinstance(rule, TimestampRule) and _sides_read_differently(rule):
        return _instant(rule, column, own_type, side)
    if isinstance(rule, NumericRule) and rule.scale_a != rule.scale_b:  # 4250 cents == 42.50 dollars
        return _scaled(_numeric(column, own_type), rule.scale_a if side == "a" else rule.scale_b)
    return column if _same_family(own_type, other_type) else f"CAST({column} AS VARCHAR)"


def unreadable(rule, column: str, own_type: str, side: str) -> str | None:
    """SQL true when ``column`` holds a value the rule cannot read (a type mismatch), or None
    when its type is always readable. Such values must not be settled by hash equality:
    evaluation reports them even when both sides hold the same text, and two unreadable
    timestamps (or one facing a null) would otherwise hash as the same null instant."""
    if isinstance(rule, NumericRule) and not _is_number_type(own_type):
        value = _numeric(column, own_type)
    elif isinstance(rule, TimestampRule) and not (own_type.startswith("TIMESTAMP") or own_type == "DATE"):
        value = _instant(rule, column, own_type, side)  # epochs too: out of range, NaN or inf
    else:
        return None
    return f"({column} IS NOT NULL AND {value} IS NULL)"


def _is_number_type(duck_type: str) -> bool:
    return duck_type.startswith(_NUMERIC_TYPES) or duck_type.startswith("DECIMAL")


def _same_family(type_a: str, type_b: str) -> bool:
    return type_a == type_b


def _numeric(x: str, duck_type: str) -> str:
    if _is_number_type(duck_type):
        return f"CAST({x} AS DOUBLE)"
    if duck_type == "BOOLEAN":  # a flag is not an amount
        return "CAST(NULL AS DOUBLE)"
    return f"TRY_CAST(trim(CAST({x} AS VARCHAR), {sql_literal(WHITESPACE)}) AS DOUBLE)"


def _scaled(expr: str, factor: float) -> str:
    return expr if factor == 1.0 else f"({expr} * {factor!r})"


def _instant(rule: TimestampRule, x: str, duck_type: str, side: str) -> str:
    if side == "a":
        return instant_sql(x, duck_type, rule.timezone_a, rule.epoch_unit_a)
    return instant_sql(x, duck_type, rule.timezone_b, rule.epoch_unit_b)


def _sides_read_differently(rule: TimestampRule) -> bool:
    """Equal raw values can then be different instants (naive times in two zones, epochs in two units)."""
    return rule.timezone_a != rule.timezone_b or (rule.epoch_unit_a or "s") != (rule.epoch_unit_b or "s")


def _text(x: str, steps) -> str:
    expr = f"CAST({x} AS VARCHAR)"
    for step in steps:
        expr = {
            "trim": f"trim({expr}, {sql_literal(WHITESPACE)})",
            "lower": f"lower({expr})",
            "upper": f"upper({expr})",
            "nfc": f"nfc_normalize({expr})",
            "collapse_whitespace": f"regexp_replace({expr}, '\\s+', ' ', 'g')",
        }[step]
    return expr


def _mapped(expr: str, values: dict, steps) -> str:
    """Value mapping: every alias (normalised like the data) reads as its canonical value."""
    if not values:
        return expr
    arms = []
    for canonical, aliases in values.items():
        for alias in [canonical, *aliases]:
            arms.append(f"WHEN {_text(sql_literal(_alias_text(alias)), steps)} THEN {sql_literal(canonical)}")
    return f"(CASE {expr} {' '.join(arms)} ELSE {expr} END)"


def _alias_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # DuckDB's text for booleans
    return str(value)
