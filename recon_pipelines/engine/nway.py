"""The N-way engine: three or more systems compared in one set-based pass in DuckDB.

``match_systems``
    Audits each system's keys (null or blank keys, ids without a mapping, duplicate keys:
    each its own discrepancy naming the system; a key duplicated in any system is compared
    nowhere, as in the two-source engine), then unions every system's records, tagged with
    the system and a hash of its raw values, and groups them by key: which systems hold each
    record, and whether every system holds it with the very same raw values (then it is settled
    without applying any rule, when the rules allow it: see ``_hash_shortcut``). The other records
    are fetched whole into ``__records``, one row per key with each system's values.
    One union and one grouping, whatever N.

``evaluate_systems``
    Per key and field, the field's rule (engine/rules.py, compiled once per pair of systems)
    says which pairs of holders agree. The verdict is judged against a *reference*:

    1. the field's ``system_of_record``: the first system of its ranked list that holds the record;
    2. otherwise the *majority*: the holder that agrees under the rule with more than half of the
       holders (itself included); of several, the one agreeing with most, then the first in the
       spec's order;
    3. otherwise none: the holders are split. A discrepancy (reason ``no_majority``) is reported
       when any two holders disagree, with no odd one out named.

    The *odd ones out* are the holders that disagree with the reference. Tolerance rules are
    not transitive (10.00 ~ 10.01 ~ 10.02 with abs_tol 0.01): agreement is always judged against
    the reference value, never chained, so a system is odd only if it disagrees with the reference.

    A record held by some systems only is ``missing_in_systems``; the odd ones out are the
    minority: the systems lacking it when most hold it (``missing_in_some``), the holders when
    few do (``only_in_some``), none on a tie (``split``).

Discrepancy ids hash the reconciliation, the marker ``nway``, the kind, the key, the field and,
for the per-system key audit, the system: stable across runs and distinct from pairwise ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from recon_pipelines.engine.compare import DISCREPANCY_SCHEMA, ComparisonError, Side, _first_line, _key_text, _types, value_counts
from recon_pipelines.engine.keys import invalid_key_sql
from recon_pipelines.engine.rules import compile_rule, hash_operand, stages, unsettled
from recon_pipelines.engine.severity import severity_sql
from recon_pipelines.spec.base import KINDS
from recon_pipelines.spec.nway import NWaySpec
from recon_pipelines.sqlutil import duckdb_connect as connect
from recon_pipelines.sqlutil import quote_ident as q
from recon_pipelines.sqlutil import sql_literal

NWAY_KINDS = KINDS[KINDS.index("missing_in_systems"):]  # one list of kinds: spec/base.py
NWAY_SCHEMA = pa.schema([
    *DISCREPANCY_SCHEMA,
    pa.field("systems", pa.string()),  # comma-separated: the systems holding the record (key audit: the one)
    pa.field("odd_ones_out", pa.string()),  # comma-separated: the systems to fix, when the verdict names them
    pa.field("reference_system", pa.string()),  # the system judged right for this field, if any
    pa.field("system_values", pa.string()),  # JSON object: system -> its value as text
])
ID_MARKER = "nway"
RECORDS = "__records"


@dataclass
class SystemStats:
    rows: int = 0
    active: int | None = None  # rows meeting the system's active: condition (None: not declared)
    invalid_key_rows: int = 0
    unmapped_rows: int = 0
    duplicate_keys: int = 0
    duplicate_rows: int = 0
    records: int = 0  # distinct keys it holds among those compared


@dataclass
class NWayStats:
    systems: dict[str, SystemStats]
    keys: int = 0  # distinct keys compared
    in_all: int = 0  # held by every system
    identical: int = 0  # held by every system with identical raw values: settled by hash, no rule applied
    # Why the active counts differ: one entry per pattern of (active, inactive, missing) systems.
    active_breakdown: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"systems": {name: asdict(s) for name, s in self.systems.items()}, "keys": self.keys,
                "in_all": self.in_all, "identical": self.identical, "active_breakdown": self.active_breakdown}

    @classmethod
    def from_json(cls, data: dict) -> "NWayStats":
        return cls({name: SystemStats(**s) for name, s in data["systems"].items()}, data["keys"], data["in_all"],
                   identical=data.get("identical", 0), active_breakdown=data["active_breakdown"])


@dataclass
class NWayResult:
    discrepancies: pa.Table
    stats: NWayStats
    fields: dict[str, int] = field(default_factory=dict)  # field -> records whose systems disagree on it

    def summary(self) -> dict:
        return summary_of(self.stats, self.discrepancies, self.fields)


def summary_of(stats: NWayStats, table: pa.Table, fields: dict[str, int]) -> dict:
    return {"nway": True, **stats.to_json(), "discrepancies": table.num_rows,
            "by_kind": value_counts(table, "kind"), "field_mismatches": fields}


def compare_systems(spec: NWaySpec, sides: Mapping[str, Side], active: Mapping[str, Side] | None = None,
                    mappings: Mapping[str, Side] | None = None,
                    con: duckdb.DuckDBPyConnection | None = None) -> NWayResult:
    """Match and evaluate in one go (``recon run``, tests)."""
    con = con or connect()
    stats = match_systems(con, spec, sides, active, mappings)
    table, fields = evaluate_systems(con, spec, RECORDS)
    return NWayResult(table, stats, fields)


# --------------------------------------------------------------------------- match


def match_systems(con: duckdb.DuckDBPyConnection, spec: NWaySpec, sides: Mapping[str, Side],
                  active: Mapping[str, Side] | None = None, mappings: Mapping[str, Side] | None = None) -> NWayStats:
    """Key audit, then one union of every system grouped by key into ``__records``."""
    systems = spec.systems
    keys = [k.name for k in spec.key]
    fields = [f.name for f in spec.fields]
    active, mappings = dict(active or {}), dict(mappings or {})
    raw_types = {}
    for i, system in enumerate(systems):
        raw_types[system] = _raw_view(con, f"__r{i}", sides[system])
    as_text = {k for k in keys if mappings or len({raw_types[s][k] for s in systems}) > 1}
    for i, system in enumerate(systems):
        if system in mappings:
            _mapping_table(con, i, mappings[system])
        _keyed_view(con, f"__v{i}", f"__r{i}", i, keys, fields, raw_types[system], as_text, system in mappings)

    shortcut = _hash_shortcut(spec, raw_types)
    key_list = ", ".join(map(q, keys))
    dups = [f"SELECT {i} AS __sys, {key_list}, count(*) AS __n FROM __v{i} WHERE __flag IS NULL GROUP BY ALL HAVING count(*) > 1"
            for i in range(len(systems))]
    con.execute(f"CREATE OR REPLACE TEMP TABLE __ndups AS {' UNION ALL '.join(dups)}")
    has_dups = con.execute("SELECT count(*) FROM __ndups").fetchone()[0] > 0
    not_dup = (f"NOT EXISTS (SELECT 1 FROM __ndups d WHERE {' AND '.join(f'd.{q(k)} = s.{q(k)}' for k in keys)})"
               if has_dups else "TRUE")
    clean = f"s.__flag IS NULL AND {not_dup}"
    # 1. One union of every system's keys and record hashes, grouped by key: who holds what, and
    #    which records every system holds with the very same raw values (settled: no rule applied).
    h, strict = shortcut or ("0::UBIGINT", "TRUE")
    hashed = " UNION ALL ".join(f"SELECT {', '.join(f's.{q(k)}' for k in keys)}, {i} AS __sys, {h} AS __h, "
                                f"{strict} AS __strict FROM __v{i} s WHERE {clean}" for i in range(len(systems)))
    # Cheap aggregates only: one bit per holder, and "all hashes equal" as bit_and = bit_or.
    held = ", ".join(f"(__mask >> {i}) & 1 = 1 AS {q(f'__in_{i}')}" for i in range(len(systems)))
    unsettled_any = "" if strict == "FALSE" else " AND NOT bool_or(__strict)"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __keys AS
        SELECT {key_list}, {held}, __settled FROM (
            SELECT {key_list}, bit_or(1 << __sys) AS __mask,
                   count(*) = {len(systems)} AND bit_and(__h) = bit_or(__h){unsettled_any} AS __settled
            FROM ({hashed}) GROUP BY {key_list})""")
    # 2. The other records' values, one row per key with a column per system and field.
    candidates = f"(SELECT {key_list} FROM __keys WHERE NOT __settled)"
    branches = [
        f"SELECT {', '.join(f's.{q(k)}' for k in keys)}, {i} AS __sys"
        + "".join(f", s.{q(f)} AS {q(f'{i}#{f}')}" for f in fields)
        + f" FROM __v{i} s SEMI JOIN {candidates} c USING ({key_list}) WHERE {clean}"
        for i in range(len(systems))
    ]
    values = "".join(f", first({q(f'{i}#{f}')}) FILTER (__sys = {i}) AS {q(f'{i}#{f}')}"
                     for i in range(len(systems)) for f in fields)
    key_text = _key_text([q(k) for k in keys])
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __grouped AS
        SELECT k.*, v.* EXCLUDE ({key_list}) FROM __keys k JOIN (
            SELECT {key_list}{values} FROM ({' UNION ALL BY NAME '.join(branches)}) GROUP BY {key_list}
        ) v USING ({key_list}) WHERE NOT k.__settled""")

    # Key anomalies travel in the same table as the records, as the two-source engine's __pairs do.
    flagged = [f"SELECT s.__flag || '_in_system' AS __status, {_key_text([f's.{q(k)}' for k in keys])} AS __key, "
               f"{sql_literal(system)} AS __system, count(*) AS __count FROM __v{i} s WHERE s.__flag IS NOT NULL GROUP BY ALL"
               for i, system in enumerate(systems)]
    names = "CASE __sys " + " ".join(f"WHEN {i} THEN {sql_literal(s)}" for i, s in enumerate(systems)) + " END"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE {RECORDS} AS
        SELECT 'record' AS __status, {key_text} AS __key, NULL::VARCHAR AS __system, 1::BIGINT AS __count, * EXCLUDE ({key_list})
        FROM __grouped
        UNION ALL BY NAME
        SELECT 'duplicate_key_in_system' AS __status, {_key_text([f'd.{q(k)}' for k in keys])} AS __key,
               {names} AS __system, __n AS __count FROM __ndups d
        {''.join(' UNION ALL BY NAME ' + f for f in flagged)}""")
    return _stats(con, spec, active, as_text, mappings)


def _hash_shortcut(spec: NWaySpec, raw_types: dict[str, dict]) -> tuple[str, str] | None:
    """The hash of a record's raw values, and when that hash cannot settle it, or None when it
    never can. Equal raw values agree under every rule only when each field has one type in every
    system and reads every system alike (no per-system scale, zone or epoch unit); a null under
    ``both_null: differ`` or a value the rule cannot read is evaluated whatever the hashes say.
    Hash equality stands for equality, as in the two-source engine (a 64-bit collision ~2^-64)."""
    systems = spec.systems
    for f in spec.fields:
        if len({raw_types[s][f.name] for s in systems}) > 1:
            return None
        options = {(f.scales.get(s, 1.0), f.timezones.get(s, "UTC"), f.epoch_units.get(s)) for s in systems}
        if len(options) > 1:
            return None
    # hash_operand: a 128-bit value is hashed with its sign (DuckDB's hash of one XORs its halves).
    operands = [hash_operand(f.pair_rule(systems[0], systems[0]), f"s.{q(f.name)}", raw_types[systems[0]][f.name],
                             raw_types[systems[0]][f.name], "a") for f in spec.fields] or ["0"]
    strict = [f"s.{q(f.name)} IS NULL" for f in spec.fields if f.nulls.both_null == "differ"]
    for f in spec.fields:
        column_type = raw_types[systems[0]][f.name]
        test = unsettled(f.pair_rule(systems[0], systems[0]), f"s.{q(f.name)}", column_type, column_type, "a")
        if test:
            strict.append(test)
    return f"hash({', '.join(operands)})", f"({' OR '.join(strict)})" if strict else "FALSE"


def _raw_view(con, view: str, side: Side) -> dict[str, str]:
    select = ", ".join(f"{q(col)} AS {q(name)}" for name, col in side.columns.items())
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {select} FROM {side.scan}")
        return _types(con, view)
    except duckdb.Error as exc:
        raise ComparisonError(f"{side.label or view}: {_first_line(exc)}") from None


def _mapping_table(con, i: int, mapping: Side) -> None:
    """One system's ids -> the shared key; one-to-one, or the comparison stops naming the clash."""
    key_col, id_col = mapping.columns["key"], mapping.columns["id"]
    try:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE __m{i} AS SELECT DISTINCT CAST({q(key_col)} AS VARCHAR) AS k,
            CAST({q(id_col)} AS VARCHAR) AS id FROM {mapping.scan} WHERE {q(key_col)} IS NOT NULL AND {q(id_col)} IS NOT NULL""")
    except duckdb.Error as exc:
        raise ComparisonError(f"{mapping.label}: {_first_line(exc)}") from None
    for column, what in (("k", "shared key"), ("id", "id")):
        clash = con.execute(f"SELECT {column}, count(*) FROM __m{i} GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 1").fetchone()
        if clash:
            raise ComparisonError(f"{mapping.label}: {what} {clash[0]!r} maps to {clash[1]} different ids; "
                                  "a mapping must be one-to-one")


def _keyed_view(con, view: str, raw: str, i: int, keys: list[str], fields: list[str], types: dict,
                as_text: set[str], mapped: bool, with_fields: bool = True) -> None:
    """``raw`` under the shared key (as text where the systems' key types differ, translated
    through the system's mapping), with ``__flag``: invalid_key, unmapped or NULL."""
    others = "".join(f", s.{q(f)}" for f in fields) if with_fields else ""
    invalid = invalid_key_sql(keys, types, "s")
    if mapped:
        key = keys[0]
        con.execute(f"""CREATE OR REPLACE TEMP VIEW {view} AS
            SELECT coalesce(m.k, CAST(s.{q(key)} AS VARCHAR)) AS {q(key)}{others},
                   CASE WHEN {invalid} THEN 'invalid_key' WHEN m.k IS NULL THEN 'unmapped' END AS __flag
            FROM {raw} s LEFT JOIN __m{i} m ON m.id = CAST(s.{q(key)} AS VARCHAR)""")
        return
    key_select = ", ".join(f"CAST(s.{q(k)} AS VARCHAR) AS {q(k)}" if k in as_text else f"s.{q(k)}" for k in keys)
    con.execute(f"""CREATE OR REPLACE TEMP VIEW {view} AS
        SELECT {key_select}{others}, CASE WHEN {invalid} THEN 'invalid_key' END AS __flag FROM {raw} s""")


def _stats(con, spec: NWaySpec, active: dict[str, Side], as_text: set[str], mappings: dict) -> NWayStats:
    systems = spec.systems
    keys = [k.name for k in spec.key]
    out: dict[str, SystemStats] = {}
    for i, system in enumerate(systems):
        rows, invalid, unmapped = con.execute(
            f"SELECT count(*), count(*) FILTER (__flag = 'invalid_key'), count(*) FILTER (__flag = 'unmapped') FROM __v{i}"
        ).fetchone()
        dup_keys, dup_rows = con.execute(f"SELECT count(*), coalesce(sum(__n), 0) FROM __ndups WHERE __sys = {i}").fetchone()
        held = con.execute(f"SELECT count(*) FILTER ({q(f'__in_{i}')}) FROM __keys").fetchone()[0]
        out[system] = SystemStats(int(rows), None, int(invalid), int(unmapped), int(dup_keys), int(dup_rows), int(held))
    total, in_all, settled = con.execute(
        f"SELECT count(*), count(*) FILTER ({' AND '.join(q(f'__in_{i}') for i in range(len(systems)))}), "
        "count(*) FILTER (__settled) FROM __keys"
    ).fetchone()
    stats = NWayStats(out, int(total), int(in_all), identical=int(settled))
    counted = [s for s in systems if s in active]
    for system in counted:
        i = systems.index(system)
        types = _raw_view(con, f"__ar{i}", active[system])
        _keyed_view(con, f"__av{i}", f"__ar{i}", i, keys, [], types, as_text, system in mappings, with_fields=False)
        out[system].active = int(con.execute(f"SELECT count(*) FROM __av{i}").fetchone()[0])
    if len(counted) >= 2:
        stats.active_breakdown = _active_breakdown(con, systems, counted, keys)
    return stats


def _active_breakdown(con, systems: list[str], counted: list[str], keys: list[str]) -> list[dict]:
    """Per valid key, each counted system's state (active, inactive or missing); the patterns in
    which the systems do not all count the key alike, largest first: why the active counts differ."""
    key_list = ", ".join(map(q, keys))
    parts = []
    for system in counted:
        i = systems.index(system)
        parts.append(f"SELECT DISTINCT {key_list}, {i} AS __sys, 1 AS __state FROM __v{i} WHERE __flag IS NULL")
        parts.append(f"SELECT DISTINCT {key_list}, {i} AS __sys, 2 AS __state FROM __av{i} WHERE __flag IS NULL")
    states = ", ".join(f"coalesce(max(__state) FILTER (__sys = {systems.index(s)}), 0) AS {q(s)}" for s in counted)
    differ = " OR ".join(f"({q(s)} = 2) <> ({q(counted[0])} = 2)" for s in counted[1:])
    rows = con.execute(f"""SELECT {', '.join(map(q, counted))}, count(*) AS n FROM (
            SELECT {states} FROM ({' UNION ALL '.join(parts)}) GROUP BY {key_list}) WHERE {differ}
        GROUP BY ALL ORDER BY n DESC, {', '.join(f'{q(c)} DESC' for c in counted)}""").fetchall()
    label = {0: "missing", 1: "inactive", 2: "active"}
    out = []
    for row in rows:
        pattern = {state: [s for s, v in zip(counted, row) if label[v] == state] for state in ("active", "inactive", "missing")}
        out.append({"records": int(row[-1]), **pattern})
    return out


# --------------------------------------------------------------------------- evaluate


def evaluate_systems(con: duckdb.DuckDBPyConnection, spec: NWaySpec, records: str) -> tuple[pa.Table, dict[str, int]]:
    """Verdicts per key and field over ``records`` (``__records``, or its Parquet file)."""
    systems = spec.systems
    n = len(systems)
    types = _types(con, records)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    inn = [q(f"__in_{i}") for i in range(n)]
    holders = "(" + " + ".join(f"{c}::INT" for c in inn) + ")"

    compiled, prepared = {}, []
    for f in spec.fields:
        for i, j in pairs:
            rule = f.pair_rule(systems[i], systems[j], name=f"{f.name}#{i}#{j}")
            sql = compile_rule(rule, q(f"{i}#{f.name}"), q(f"{j}#{f.name}"), types[f"{i}#{f.name}"], types[f"{j}#{f.name}"])
            compiled[f.name, i, j] = sql
            prepared += sql.prepared
    relation = f"(SELECT * FROM {records} WHERE __status = 'record' AND {holders} >= 2 AND NOT __settled)"
    for level in stages(prepared):
        relation = f"(SELECT *{''.join(f', {expr} AS {q(name)}' for name, expr in level)} FROM {relation})"
    # Layer 1: each pair of holders agrees or not, and by how much they differ.
    layer1 = "".join(
        f", ({inn[i]} AND {inn[j]} AND ({sql.reason}) IS NULL) AS {q(f'g#{name}#{i}#{j}')}"
        f", {sql.difference} AS {q(f'd#{name}#{i}#{j}')}, {sql.relative} AS {q(f'p#{name}#{i}#{j}')}"
        for (name, i, j), sql in compiled.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE __nagree AS SELECT *{layer1} FROM {relation}")

    def pair(prefix: str, name: str, i: int, j: int) -> str:
        return q(f"{prefix}#{name}#{min(i, j)}#{max(i, j)}")

    # Layer 2: the majority and the reference per field.
    layer2 = []
    for f in spec.fields:
        scores = []
        for i in range(n):
            agreeing = "".join(" + " + pair("g", f.name, i, j) + "::INT" for j in range(n) if j != i)
            scores.append(f"(CASE WHEN {inn[i]} THEN 1{agreeing} ELSE 0 END)")
        best = f"greatest({', '.join(scores)})"
        majority = (f"CASE WHEN 2 * {best} > {holders} THEN CASE "
                    + " ".join(f"WHEN {s} = {best} THEN {i}" for i, s in enumerate(scores)) + " END END")
        ranked = " ".join(f"WHEN {inn[systems.index(s)]} THEN {systems.index(s)}" for s in f.system_of_record)
        layer2.append(f", {majority} AS {q(f'm#{f.name}')}")
        layer2.append(f", CASE {ranked} ELSE {majority} END AS {q(f'e#{f.name}')}" if ranked else f", {majority} AS {q(f'e#{f.name}')}")
        # Judged against the system of record: one of the field's ranked systems holds the record.
        layer2.append(f", ({' OR '.join(inn[systems.index(s)] for s in f.system_of_record) or 'FALSE'}) AS {q(f'k#{f.name}')}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE __nref AS SELECT *{''.join(layer2)} FROM __nagree")

    parts = [_field_verdicts(spec, f, inn, holders, pair) for f in spec.fields]
    parts.append(_record_verdicts(systems, inn, holders, records))
    union = "\nUNION ALL BY NAME\n".join(parts)
    name = sql_literal(spec.name)
    severity = severity_sql(spec.severity, "kind", "field", "difference", "relative_difference")
    ident = " || chr(31) || ".join([name, sql_literal(ID_MARKER), "kind", "key", "coalesce(field, '')",
                                    "coalesce(__id_system, '')"])
    table = con.sql(f"""SELECT substr(md5({ident}), 1, 24) AS id, {name} AS reconciliation, kind, key, field, reason,
            value_a, value_b, difference, relative_difference, {severity} AS severity, detail,
            systems, odd_ones_out, reference_system, system_values
        FROM ({union}) ORDER BY kind, key, field, systems""").to_arrow_table()
    table = table.cast(NWAY_SCHEMA)
    disagree = table.filter(pc.equal(table.column("kind"), "systems_disagree"))
    counts = value_counts(disagree, "field")
    return table, {f.name: counts.get(f.name, 0) for f in spec.fields}


def _field_verdicts(spec: NWaySpec, f, inn: list[str], holders: str, pair) -> str:
    systems = spec.systems
    n = len(systems)
    ref, maj, by_sor = q(f"e#{f.name}"), q(f"m#{f.name}"), q(f"k#{f.name}")
    value = lambda i: f"CAST({q(f'{i}#{f.name}')} AS VARCHAR)"  # noqa: E731

    def at(index: str, of) -> str:  # the expression for system number ``index`` (a SQL value)
        return "CASE " + " ".join(f"WHEN {index} = {i} THEN {of(i)}" for i in range(n)) + " END"

    odd = [f"({inn[i]} AND {ref} IS NOT NULL AND {ref} <> {i} AND NOT {at(ref, agrees_with_ref(i, f, pair))})"
           for i in range(n)]
    split = " OR ".join(f"({inn[i]} AND {inn[j]} AND NOT {pair('g', f.name, i, j)})" for i in range(n) for j in range(i + 1, n))
    names = lambda flags: "NULLIF(concat_ws(',', " + ", ".join(  # noqa: E731
        f"CASE WHEN {flag} THEN {sql_literal(s)} END" for flag, s in zip(flags, systems)) + "), '')"
    values_json = ("'{' || concat_ws(',', " + ", ".join(
        f"CASE WHEN {inn[i]} THEN to_json({sql_literal(s)}) || ':' || coalesce(to_json({value(i)}), 'null') END"
        for i, s in enumerate(systems)) + ") || '}'")
    shown = "concat_ws(', ', " + ", ".join(
        f"CASE WHEN {inn[i]} THEN {sql_literal(s + '=')} || coalesce({value(i)}, '<null>') END" for i, s in enumerate(systems)) + ")"
    in_majority = [f"({inn[i]} AND {maj} IS NOT NULL AND ({maj} = {i} OR {at(maj, agrees_with_ref(i, f, pair))}))" for i in range(n)]
    majority_note = (f"CASE WHEN {by_sor} AND {maj} IS NOT NULL AND {maj} <> {ref} AND NOT {at(maj, agrees_with_ref_index(ref, f, pair, n))} "
                     f"THEN '; the majority (' || replace({names(in_majority)}, ',', ', ') || ') holds ' || coalesce({at(maj, value)}, '<null>') ELSE '' END")
    reference = "CASE " + " ".join(f"WHEN {ref} = {i} THEN {sql_literal(s)}" for i, s in enumerate(systems)) + " END"
    first_odd = "CASE " + " ".join(f"WHEN {odd[i]} THEN {value(i)}" for i in range(n)) + " END"
    gap = lambda prefix: "greatest(" + ", ".join(  # noqa: E731
        f"CASE WHEN {odd[i]} THEN {at(ref, lambda j, i=i: 'NULL' if j == i else pair(prefix, f.name, i, j))} END"
        for i in range(n)) + ")"
    return f"""SELECT 'systems_disagree' AS kind, __key AS key, {sql_literal(f.name)} AS field,
            CASE WHEN {ref} IS NULL THEN 'no_majority' WHEN {by_sor} THEN 'differs_from_system_of_record'
                 ELSE 'differs_from_majority' END AS reason,
            {at(ref, value)} AS value_a, {first_odd} AS value_b,
            {gap('d')}::DOUBLE AS difference, {gap('p')}::DOUBLE AS relative_difference,
            {shown} || CASE WHEN {ref} IS NULL THEN '; no majority' WHEN {by_sor} THEN '; ' || {reference} || ' is the system of record'
                 ELSE '; ' || {reference} || ' holds the majority value' END || {majority_note} AS detail,
            {names(inn)} AS systems, {names(odd)} AS odd_ones_out, {reference} AS reference_system,
            {values_json} AS system_values, NULL::VARCHAR AS __id_system
        FROM __nref WHERE ({ref} IS NOT NULL AND ({' OR '.join(odd)})) OR ({ref} IS NULL AND ({split or 'FALSE'}))"""


def agrees_with_ref(i: int, f, pair):
    """For system ``i``: a function of the reference's number giving 'i agrees with it'."""
    return lambda j: "TRUE" if j == i else pair("g", f.name, i, j)


def agrees_with_ref_index(ref: str, f, pair, n: int):
    """For the majority's system number ``j``: 'the reference agrees with j'."""
    return lambda j: "CASE " + " ".join(
        f"WHEN {ref} = {i} THEN {'TRUE' if i == j else pair('g', f.name, i, j)}" for i in range(n)) + " END"


def _record_verdicts(systems: list[str], inn: list[str], holders: str, records: str) -> str:
    n = len(systems)
    names = lambda flags: "NULLIF(concat_ws(',', " + ", ".join(  # noqa: E731
        f"CASE WHEN {flag} THEN {sql_literal(s)} END" for flag, s in zip(flags, systems)) + "), '')"
    held, lacking = names(inn), names([f"NOT {c}" for c in inn])
    return f"""SELECT 'missing_in_systems' AS kind, __key AS key, NULL::VARCHAR AS field,
            CASE WHEN 2 * {holders} > {n} THEN 'missing_in_some' WHEN 2 * {holders} < {n} THEN 'only_in_some' ELSE 'split' END AS reason,
            NULL::VARCHAR AS value_a, NULL::VARCHAR AS value_b, NULL::DOUBLE AS difference, NULL::DOUBLE AS relative_difference,
            'held by ' || replace({held}, ',', ', ') || '; missing in ' || replace({lacking}, ',', ', ') AS detail,
            {held} AS systems,
            CASE WHEN 2 * {holders} > {n} THEN {lacking} WHEN 2 * {holders} < {n} THEN {held} END AS odd_ones_out,
            NULL::VARCHAR AS reference_system, NULL::VARCHAR AS system_values, NULL::VARCHAR AS __id_system
        FROM {records} WHERE __status = 'record' AND {holders} < {n}
        UNION ALL BY NAME
        SELECT __status AS kind, __key AS key, NULL::VARCHAR AS field,
            CASE __status WHEN 'duplicate_key_in_system' THEN 'duplicate_key' WHEN 'invalid_key_in_system' THEN 'invalid_key'
                 ELSE 'no_mapping' END AS reason,
            CAST(__count AS VARCHAR) || ' record(s)' AS value_a, NULL::VARCHAR AS value_b,
            NULL::DOUBLE AS difference, NULL::DOUBLE AS relative_difference,
            CAST(__count AS VARCHAR) || ' record(s) with this key in ' || __system AS detail,
            __system AS systems, __system AS odd_ones_out, NULL::VARCHAR AS reference_system,
            NULL::VARCHAR AS system_values, __system AS __id_system
        FROM {records} WHERE __status <> 'record'"""
