"""Aggregate matching: the records key matching left on one side only, matched as groups.

After pairing by key (compare.match), the records on one side only ("lines") go through the
spec's ``match:`` rules in order; a line settled by a rule is not reconsidered by the next.

``group``
    Lines sharing a group reference (A's column = B's column, as text) form one group per side.
    A group present on both sides is settled either way: sums within ``tolerance`` match, else
    one ``group_mismatch`` with the gap. A group found on one side only leaves its lines to the
    next rule. One-to-many and many-to-many alike; set-based in DuckDB.

``window``
    Every remaining line is a *target*: the lines of the other side whose dates lie within
    ``days`` of it are its candidates (a range join in DuckDB). Every subset of at most
    ``max_lines`` candidates whose amounts sum to within ``tolerance`` of the target is a *fit*
    (a B line = 1..k A lines; an A line = 2..k B lines: one-to-one is found once, from B).
    Guarantee: for a target with at most ``max_candidates`` candidates, every fit is found;
    a target with more is not searched (``search_limit_reached``). Cost: at most
    sum_{j<=k} C(m, j) subsets per target (6,195 for k=4, m=20), far fewer when amounts are
    non-negative (the sorted search stops at the first sum past the target). Fits sharing a
    line are one decision: a connected set of lines holding exactly one fit is a match; more
    than one fit is one ``ambiguous_match`` listing them all. Nothing is ever chosen.

Amounts are exact: DECIMAL(38, s) in DuckDB (128-bit; never DOUBLE), Python ints in the
search. Lines left are ``unmatched_a`` / ``unmatched_b``.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext

import duckdb
import pyarrow as pa

from recon_pipelines.engine.discrepancies import DISCREPANCY_SCHEMA
from recon_pipelines.engine.discrepancies import key_text as _key_text
from recon_pipelines.engine.discrepancies import relation_types as _types
from recon_pipelines.engine.rules import _fraction_digits, _instant, _is_number_type, _plain, _scale_digits
from recon_pipelines.engine.severity import severity_sql
from recon_pipelines.instants import WHITESPACE
from recon_pipelines.spec.matching import GroupMatch, WindowMatch, fee_column, group_column
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import quote_ident as q
from recon_pipelines.sqlutil import sql_literal

# Fraction digits kept for amounts: what the columns carry (12 for text and floats, see
# rules._fraction_digits) plus the scale's own digits, at most this many.
MAX_AMOUNT_SCALE = 18
SHOWN_MEMBERS = 20  # members listed in a detail; the rest are counted
MAX_PRECISION = 80  # decimal digits for Python's exact arithmetic on 38-digit amounts


@dataclass
class GroupStats:
    """What the group and window rules did with the lines key matching left."""

    lines_a: int = 0
    lines_b: int = 0
    groups_matched: int = 0
    groups_mismatched: int = 0
    window_matches: int = 0
    ambiguous: int = 0
    unmatched_a: int = 0
    unmatched_b: int = 0
    search_limit_reached: int = 0


@dataclass(frozen=True)
class _Line:
    """A line as the window search sees it."""

    side: str
    key: str
    amount: int  # in units of 10^-scale
    at: float  # epoch seconds


def match_groups(con: duckdb.DuckDBPyConnection, spec: ReconciliationSpec) -> tuple[pa.Table, GroupStats]:
    """Settle the one-sided records of ``__pairs`` (left by ``compare.match`` on ``con``) by the
    spec's group and window rules. Returns their discrepancies and removes the one-sided rows
    from ``__pairs`` (every one of them is reported here now)."""
    stats = GroupStats()
    scale = _amount_scale(con, spec)
    _create_lines(con, spec, scale)
    stats.lines_a, stats.lines_b = con.execute(
        "SELECT count(*) FILTER (side = 'a'), count(*) FILTER (side = 'b') FROM __lines").fetchone()
    rows: list[dict] = []
    for index, rule in enumerate(spec.match):
        if isinstance(rule, GroupMatch):
            rows += _by_group(con, rule, index, stats, scale)
        elif isinstance(rule, WindowMatch):
            rows += _by_window(con, rule, index, stats, scale)
    con.register("__group_rows", _rows_table(rows))
    try:
        table = _discrepancies(con, spec)
    finally:
        con.unregister("__group_rows")
    stats.unmatched_a, stats.unmatched_b = con.execute(
        "SELECT count(*) FILTER (side = 'a'), count(*) FILTER (side = 'b') FROM __lines WHERE NOT settled").fetchone()
    con.execute("DELETE FROM __pairs WHERE __status IN ('only_in_a', 'only_in_b')")
    return table, stats


# --------------------------------------------------------------------------- lines


def _amount_scale(con, spec: ReconciliationSpec) -> int:
    """Fraction digits every amount of every rule is held at (one scale for all, so sums compare)."""
    digits = [0]
    for index, rule in enumerate(spec.match):
        if not isinstance(rule, (GroupMatch, WindowMatch)):
            continue
        field = spec.rule(rule.amount)
        for side in "ab":
            types = _types(con, f"__{side}_raw")
            scale = getattr(field, f"scale_{side}")
            columns = [rule.amount] + ([fee_column(index)] if getattr(rule, f"fee_{side}") else [])
            digits += [_fraction_digits(types[c]) + _scale_digits(scale) for c in columns]
        digits.append(max(0, -rule.tolerance.as_tuple().exponent))  # the tolerance is held exactly too
    return min(max(digits), MAX_AMOUNT_SCALE)


def _create_lines(con, spec: ReconciliationSpec, scale: int) -> None:
    """``__lines``: the one-sided records of both sides with, per rule, the exact net amount
    (``amount<i>``), the date (``at<i>``, epoch seconds) or the group reference (``grp<i>``)."""
    keys = [k.name for k in spec.key]
    parts = []
    for side in "ab":
        types = _types(con, f"__{side}_raw")
        columns = []
        for index, rule in enumerate(spec.match):
            if not isinstance(rule, (GroupMatch, WindowMatch)):
                continue
            factor = getattr(spec.rule(rule.amount), f"scale_{side}")
            amount = _exact(f"s.{q(rule.amount)}", types[rule.amount], factor, scale)
            if getattr(rule, f"fee_{side}"):  # a missing fee counts as none
                fee = _exact(f"s.{q(fee_column(index))}", types[fee_column(index)], factor, scale)
                amount = f"TRY(CAST({amount} - coalesce({fee}, 0) AS DECIMAL(38, {scale})))"
            columns.append(f"{amount} AS amount{index}")
            if isinstance(rule, WindowMatch):
                instant = _instant(spec.rule(rule.date), f"s.{q(rule.date)}", types[rule.date], side)
                columns.append(f"epoch({instant}) AS at{index}")
            else:
                columns.append(f"CAST(s.{q(group_column(index))} AS VARCHAR) AS grp{index}")
        key = _key_text([f"s.{q(k)}" for k in keys])
        record = "to_json({" + ", ".join(f"{sql_literal(f.name)}: s.{q(f.name)}" for f in spec.fields) + "})::VARCHAR" \
            if spec.fields else "NULL"
        parts.append(f"""SELECT '{side}' AS side, {key} AS key, {', '.join(columns)}, {record} AS record,
            FALSE AS settled, NULL::VARCHAR AS reason, NULL::VARCHAR AS detail FROM __{side}_raw s
            WHERE {key} IN (SELECT __key FROM __pairs WHERE __status = 'only_in_{side}')""")
    con.execute(f"CREATE OR REPLACE TEMP TABLE __lines AS {' UNION ALL BY NAME '.join(parts)}")


def _exact(column: str, duck_type: str, factor: float, scale: int) -> str:
    """``column`` times ``factor`` as DECIMAL(38, scale), exactly (NULL when it is not a number)."""
    own = min(_fraction_digits(duck_type), MAX_AMOUNT_SCALE)
    if _is_number_type(duck_type):
        value = f"TRY_CAST({column} AS DECIMAL(38, {own}))"
    elif duck_type == "BOOLEAN":
        value = "NULL"
    else:
        value = f"TRY_CAST(trim(CAST({column} AS VARCHAR), {sql_literal(WHITESPACE)}) AS DECIMAL(38, {own}))"
    multiplier = f"CAST({sql_literal(_plain(factor))} AS DECIMAL(38, {_scale_digits(factor)}))"
    return f"TRY(CAST({value} * {multiplier} AS DECIMAL(38, {scale})))"


# --------------------------------------------------------------------------- group references


def _by_group(con, rule: GroupMatch, index: int, stats: GroupStats, scale: int) -> list[dict]:
    """Set-based: sums per group reference and side; only the groups that differ are fetched."""
    amount, grp = f"amount{index}", f"grp{index}"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __groups AS
        SELECT {grp} AS grp, sum({amount}) FILTER (side = 'a') AS sum_a, sum({amount}) FILTER (side = 'b') AS sum_b,
               list(key ORDER BY key) FILTER (side = 'a') AS keys_a, list(key ORDER BY key) FILTER (side = 'b') AS keys_b
        FROM __lines WHERE NOT settled AND {grp} IS NOT NULL AND {amount} IS NOT NULL GROUP BY ALL""")
    # A group on one side only: its lines go on to the next rule, with a note should none match them.
    con.execute(f"""UPDATE __lines l SET detail = 'its group ' || g.grp || ' has no lines on ' || CASE l.side WHEN 'a' THEN 'B' ELSE 'A' END
        FROM __groups g WHERE l.{grp} = g.grp AND NOT l.settled AND l.{amount} IS NOT NULL AND (g.sum_a IS NULL OR g.sum_b IS NULL)""")
    con.execute(f"""UPDATE __lines l SET settled = TRUE FROM __groups g
        WHERE l.{grp} = g.grp AND NOT l.settled AND l.{amount} IS NOT NULL AND g.sum_a IS NOT NULL AND g.sum_b IS NOT NULL""")
    tolerance = sql_literal(_plain_decimal(rule.tolerance))
    both = "sum_a IS NOT NULL AND sum_b IS NOT NULL"
    matched, = con.execute(f"SELECT count(*) FROM __groups WHERE {both} AND abs(sum_a - sum_b) <= {tolerance}::DECIMAL(38, {scale})").fetchone()
    stats.groups_matched += matched
    differing = con.execute(f"""SELECT grp, sum_a, sum_b, abs(sum_a - sum_b) AS gap, keys_a, keys_b FROM __groups
        WHERE {both} AND abs(sum_a - sum_b) > {tolerance}::DECIMAL(38, {scale}) ORDER BY grp""").fetchall()
    stats.groups_mismatched += len(differing)
    rows = []
    for ref, sum_a, sum_b, gap, keys_a, keys_b in differing:
        rows.append({
            "kind": "group_mismatch", "key": ref, "field": rule.amount, "reason": "sum_differs",
            "value_a": _plain_decimal(sum_a), "value_b": _plain_decimal(sum_b), "difference": float(gap),
            "relative_difference": float(gap / max(abs(sum_a), abs(sum_b))),
            "detail": (f"group {ref}: A {_members(keys_a)} sum {_plain_decimal(sum_a)}; B {_members(keys_b)} sum "
                       f"{_plain_decimal(sum_b)}; differs by {_plain_decimal(gap)} (tolerance {_plain_decimal(rule.tolerance)})"),
        })
    return rows


# --------------------------------------------------------------------------- windows


def _by_window(con, rule: WindowMatch, index: int, stats: GroupStats, scale: int) -> list[dict]:
    amount, at = f"amount{index}", f"at{index}"
    fetched = con.execute(f"SELECT side, key, {amount}, {at} FROM __lines WHERE NOT settled AND {amount} IS NOT NULL "
                          f"AND {at} IS NOT NULL ORDER BY {at}, side, key").fetchall()
    lines = [_Line(side, key, _units(value, scale), float(when)) for side, key, value, when in fetched]
    with localcontext(Context(prec=MAX_PRECISION)):
        tolerance = rule.tolerance.scaleb(scale)
    reach = rule.days * 86400
    by_side = {side: [line for line in lines if line.side == side] for side in "ab"}
    times = {side: [line.at for line in by_side[side]] for side in "ab"}
    fits: list[tuple[_Line, tuple[_Line, ...]]] = []
    limited: dict[tuple[str, str], str] = {}
    # A B line as the sum of 1..k A lines; an A line as the sum of 2..k B lines.
    for target_side, smallest in (("b", 1), ("a", 2)):
        if smallest > rule.max_lines:
            continue
        other = "a" if target_side == "b" else "b"
        for target in by_side[target_side]:
            window = by_side[other][bisect_left(times[other], target.at - reach):bisect_right(times[other], target.at + reach)]
            if len(window) > rule.max_candidates:
                limited[(target.side, target.key)] = (
                    f"{len(window)} candidate lines within {rule.days:g} day(s), more than max_candidates "
                    f"{rule.max_candidates}: not searched")
                continue
            candidates = sorted(window, key=lambda line: (line.amount, line.key))
            fits += [(target, subset) for subset in subsets_fitting(target.amount, candidates, smallest, rule.max_lines, tolerance)]
    rows, settled = [], []
    for component in _components(fits):
        members = {(line.side, line.key) for target, subset in component for line in (target, *subset)}
        hit_limit = sorted(key for side, key in members if (side, key) in limited)
        settled += members
        if len(component) == 1 and not hit_limit:
            stats.window_matches += 1
            continue
        stats.ambiguous += 1
        rows.append(_ambiguous(rule, component, hit_limit, scale))
    done = set(settled)
    notes = [(side, key, "search_limit_reached", note) for (side, key), note in limited.items() if (side, key) not in done]
    stats.search_limit_reached += len(notes)
    _mark(con, settled, notes)
    return rows


def _mark(con, settled: list[tuple[str, str]], notes: list[tuple[str, str, str, str]]) -> None:
    """Write the window search's outcome back to ``__lines``: settled lines, and why others were not searched."""
    if settled:
        con.register("__settled", pa.table({"side": [s for s, _ in settled], "key": [k for _, k in settled]}))
        con.execute("UPDATE __lines l SET settled = TRUE FROM __settled s WHERE l.side = s.side AND l.key = s.key")
        con.unregister("__settled")
    if notes:
        columns = list(zip(*notes))
        con.register("__notes", pa.table({"side": columns[0], "key": columns[1], "reason": columns[2], "detail": columns[3]}))
        con.execute("UPDATE __lines l SET reason = n.reason, detail = n.detail FROM __notes n WHERE l.side = n.side AND l.key = n.key")
        con.unregister("__notes")


def subsets_fitting(target: int, candidates: list[_Line], smallest: int, largest: int, tolerance: Decimal) -> list[tuple]:
    """Every subset of ``smallest``..``largest`` candidates (sorted by amount) whose amounts sum
    to within ``tolerance`` of ``target``. With no negative amount, a branch stops at the first
    candidate that takes the sum past the target (the rest are larger)."""
    amounts = [c.amount for c in candidates]
    low, high = target - tolerance, target + tolerance
    prune = all(a >= 0 for a in amounts)
    found: list[tuple] = []

    def walk(start: int, chosen: list[int], total: int) -> None:
        if len(chosen) >= smallest and low <= total <= high:
            found.append(tuple(candidates[i] for i in chosen))
        if len(chosen) == largest:
            return
        for i in range(start, len(amounts)):
            step = total + amounts[i]
            if prune and step > high:
                break
            chosen.append(i)
            walk(i + 1, chosen, step)
            chosen.pop()

    walk(0, [], 0)
    return found


def _components(fits: list[tuple[_Line, tuple]]) -> list[list]:
    """Fits grouped by shared lines (union-find over the lines they hold)."""
    parent: dict = {}

    def root(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for target, subset in fits:
        for line in subset:
            parent[root((line.side, line.key))] = root((target.side, target.key))
    grouped: dict = {}
    for fit in fits:
        grouped.setdefault(root((fit[0].side, fit[0].key)), []).append(fit)
    return [grouped[r] for r in sorted(grouped)]


def _ambiguous(rule: WindowMatch, component: list, hit_limit: list[str], scale: int) -> dict:
    sides: dict[str, set[str]] = {"a": set(), "b": set()}
    for target, subset in component:
        for line in (target, *subset):
            sides[line.side].add(line.key)
    key = json.dumps({side: sorted(keys) for side, keys in sides.items()}, separators=(",", ":"))
    described = [f"{target.side.upper()} {target.key} ({_text(target.amount, scale)}) = "
                 f"{subset[0].side.upper()} {' + '.join(line.key for line in subset)} "
                 f"({_text(sum(line.amount for line in subset), scale)})"
                 for target, subset in component]
    reason, note = "several_candidates", f"{len(component)} groupings fit, none chosen"
    if hit_limit:
        reason = "search_limit_reached"
        note += f"; the search of {', '.join(hit_limit)} hit max_candidates, so others may fit"
    return {"kind": "ambiguous_match", "key": key, "field": rule.amount, "reason": reason,
            "value_a": ", ".join(sorted(sides["a"])), "value_b": ", ".join(sorted(sides["b"])),
            "detail": f"{note}: {' | '.join(described)}"}


# --------------------------------------------------------------------------- output

_ROW_COLUMNS = {"kind": pa.string(), "key": pa.string(), "field": pa.string(), "reason": pa.string(),
                "value_a": pa.string(), "value_b": pa.string(), "difference": pa.float64(),
                "relative_difference": pa.float64(), "detail": pa.string()}


def _rows_table(rows: list[dict]) -> pa.Table:
    return pa.table({c: pa.array([r.get(c) for r in rows], t) for c, t in _ROW_COLUMNS.items()})


def _discrepancies(con, spec: ReconciliationSpec) -> pa.Table:
    """The rules' rows and the lines left unmatched, as discrepancies: stable ids, the spec's
    severity rules, the engine's schema."""
    name = sql_literal(spec.name)
    severity = severity_sql(spec.severity, "kind", "field", "difference", "relative_difference")
    first = next(i for i, rule in enumerate(spec.match) if isinstance(rule, (GroupMatch, WindowMatch)))
    unreadable = f"CASE WHEN amount{first} IS NULL THEN 'its amount is not a number; ' ELSE '' END"
    unmatched = f"""SELECT 'unmatched_' || side AS kind, key, NULL::VARCHAR AS field, coalesce(reason, 'no_match') AS reason,
            CASE side WHEN 'a' THEN record END AS value_a, CASE side WHEN 'b' THEN record END AS value_b,
            NULL::DOUBLE AS difference, NULL::DOUBLE AS relative_difference,
            {unreadable} || coalesce(detail || '; no later rule matched it', 'matched by no key, group or window rule') AS detail
        FROM __lines WHERE NOT settled"""
    table = con.sql(f"""SELECT
            substr(md5({name} || chr(31) || kind || chr(31) || key || chr(31) || coalesce(field, '')), 1, 24) AS id,
            {name} AS reconciliation, kind, key, field, reason, value_a, value_b, difference, relative_difference,
            {severity} AS severity, detail
        FROM (SELECT * FROM __group_rows UNION ALL {unmatched}) ORDER BY kind, key, field""").to_arrow_table()
    return table.cast(DISCREPANCY_SCHEMA)


def _members(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_MEMBERS]) + (f", … {len(keys) - SHOWN_MEMBERS} more" if len(keys) > SHOWN_MEMBERS else "")
    return f"{len(keys)} line(s) [{shown}]"


def _units(value: Decimal, scale: int) -> int:
    """An amount held at ``scale`` fraction digits as an integer count of 10^-scale (exact)."""
    with localcontext(Context(prec=MAX_PRECISION)):
        return int(value.scaleb(scale))


def _text(units: int, scale: int) -> str:
    with localcontext(Context(prec=MAX_PRECISION)):
        return _plain_decimal(Decimal(units).scaleb(-scale))


def _plain_decimal(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text
