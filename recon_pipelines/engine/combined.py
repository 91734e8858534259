"""Many-to-one key mappings: several records of one side stand for one record of the other.

With ``key_mapping.cardinality: many_to_one`` several A ids map to one B id (``one_to_many``:
one A id to several B ids). The records of the "many" side that map to the same id are
combined into one record before pairing, and both sides are keyed by the group they form,
rendered as compact JSON naming every id: ``{"a":["A1","A2"],"b":["B1"]}`` (sorted, so the
discrepancy id is stable). Combining, per field rule:

- ``numeric``: the exact sum (DECIMAL, 128-bit, never DOUBLE) of the records' values; nulls add
  nothing, all null is null. A value that is not a number makes the combined value the
  records' values joined by `` | `` (reported as a type mismatch, naming them all).
- any other rule: the records' common value; where they disagree among themselves, their
  distinct values joined by `` | `` (which then differs from the other side's, naming them all).

A mapped id held by two records of the many side is ``duplicate_key_*`` and left out of the sum.
"""

from __future__ import annotations

from recon_pipelines.engine.keys import invalid_key_sql
from recon_pipelines.engine.rules import _fraction_digits
from recon_pipelines.spec.models import NumericRule, ReconciliationSpec
from recon_pipelines.sqlutil import quote_ident as q

MAX_SCALE = 18  # fraction digits kept when summing (12 for text and floats, see rules._fraction_digits)


def create_combined_views(con, spec: ReconciliationSpec, raw: dict[str, dict[str, str]]) -> None:
    """``__a`` and ``__b`` over ``__a_raw``/``__b_raw`` and ``__map`` (distinct a_id, b_id as text),
    the many side combined per group. ``raw`` holds each raw view's column types."""
    many, one = ("a", "b") if spec.key_mapping.cardinality == "many_to_one" else ("b", "a")
    key = spec.key[0].name
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __groupmap AS
        SELECT m.a_id, m.b_id, g.gkey FROM __map m JOIN (
            SELECT {one}_id, to_json({{'a': list_sort(list_distinct(list(a_id))), 'b': list_sort(list_distinct(list(b_id)))}})::VARCHAR AS gkey
            FROM __map GROUP BY {one}_id) g USING ({one}_id)""")
    own_key = f"CAST(s.{q(key)} AS VARCHAR)"
    names = [f.name for f in spec.fields]

    # The many side: valid, mapped, unduplicated records combined per group; the others one by one, flagged.
    combined = [_combine(rule, raw[many][rule.name]) for rule in spec.fields]
    nulls = [f"NULL::VARCHAR AS {q(n)}" for n in names]
    invalid = invalid_key_sql([key], raw[many], "s")
    con.execute(f"""CREATE OR REPLACE TEMP VIEW __{many} AS
        WITH tagged AS (
            SELECT s.*, m.gkey AS __gkey, count(*) OVER (PARTITION BY {own_key}) AS __copies,
                   CASE WHEN {invalid} THEN 'invalid_key_{many}' WHEN m.gkey IS NULL THEN 'unmapped_{many}' END AS __bad
            FROM __{many}_raw s LEFT JOIN (SELECT DISTINCT {many}_id, gkey FROM __groupmap) m ON m.{many}_id = {own_key})
        SELECT __gkey AS {q(key)}{''.join(', ' + c for c in combined)}, NULL::VARCHAR AS __flag
        FROM tagged s WHERE __bad IS NULL AND __copies = 1 GROUP BY __gkey
        UNION ALL
        SELECT {own_key}{''.join(', ' + c for c in nulls)},
               coalesce(__bad, 'duplicate_key_{many}') FROM tagged s WHERE __bad IS NOT NULL OR __copies > 1""")
    # The one side: re-keyed to its group (its values as they are); an id absent from the mapping keeps its own.
    others = "".join(f", s.{q(n)}" for n in names)
    con.execute(f"""CREATE OR REPLACE TEMP VIEW __{one} AS SELECT coalesce(m.gkey, {own_key}) AS {q(key)}{others},
        CASE WHEN {invalid_key_sql([key], raw[one], "s")} THEN 'invalid_key_{one}'
             WHEN m.gkey IS NULL THEN 'unmapped_{one}' END AS __flag
        FROM __{one}_raw s LEFT JOIN (SELECT DISTINCT {one}_id, gkey FROM __groupmap) m ON m.{one}_id = {own_key}""")


def _combine(rule, duck_type: str) -> str:
    column = f"s.{q(rule.name)}"
    text = f"CAST({column} AS VARCHAR)"
    joined = f"string_agg(DISTINCT {text}, ' | ' ORDER BY {text})"
    if isinstance(rule, NumericRule):
        digits = min(_fraction_digits(duck_type), MAX_SCALE)
        number = f"TRY_CAST(trim({text}) AS DECIMAL(38, {digits}))"
        total = f"CAST(sum({number}) AS VARCHAR)"
        if digits:  # 30.000000000000 reads as 30
            total = f"rtrim(rtrim({total}, '0'), '.')"
        unreadable = f"count(*) FILTER ({column} IS NOT NULL AND {number} IS NULL)"
        return f"CASE WHEN {unreadable} > 0 THEN {joined} ELSE {total} END AS {q(rule.name)}"
    return f"CASE WHEN count(DISTINCT {text}) <= 1 THEN any_value({text}) ELSE {joined} END AS {q(rule.name)}"


def check_cardinality(con, cardinality: str, label: str) -> None:
    """The side that must be unique in ``__map`` is; else an error naming the first id that is not."""
    unique = {"one_to_one": ("a_id", "b_id"), "many_to_one": ("a_id",), "one_to_many": ("b_id",)}[cardinality]
    for column in unique:
        clash = con.execute(f"SELECT {column}, count(*) FROM __map GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 1").fetchone()
        if clash:
            side = column[0].upper()
            why = "a mapping must be one-to-one" if cardinality == "one_to_one" else \
                f"with cardinality {cardinality} each {side} id maps to one id"
            raise ValueError(f"{label}: id {clash[0]!r} ({side} side) maps to {clash[1]} different ids; {why}")

