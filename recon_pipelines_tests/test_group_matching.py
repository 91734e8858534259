"""Aggregate matching (match: group and window rules) and many-to-one key mappings, against
ground truth written by hand or computed with Python's ``decimal`` and ``itertools``."""

from __future__ import annotations

import itertools
import json
import random
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recon_pipelines.engine import ComparisonError, Side, compare, side_columns
from recon_pipelines.engine.groups import _Line, subsets_fitting
from recon_pipelines.spec import SpecError, parse_spec
from recon_pipelines.sqlutil import duckdb_connect

SRC = {"type": "file", "path": "/data/x.csv"}
FIELDS = {"amount": {"compare": "numeric"}, "at": {"compare": "timestamp"}}
GROUP = {"by": "group", "a": "payout", "b": "payout", "amount": "amount"}
WINDOW = {"by": "window", "amount": "amount", "date": "at", "days": 2}


def spec_with(*rules, fields=None, **extra):
    raw = {"name": "groups_test", "source_a": SRC, "source_b": SRC, "key": "id", "fields": fields or FIELDS,
           "match": [{"by": "key"}, *rules], **extra}
    return parse_spec(raw, source_file="test.yaml")


def lines(ids, amounts, days=None, payouts=None, fees=None) -> dict:
    """Columns of one side: ``days`` are day numbers in November 2026 (default: all on the 1st)."""
    n = len(ids)
    return {"id": ids, "amount": [None if a is None else str(a) for a in amounts],
            "at": [f"2026-11-{d:02d}T12:00:00Z" for d in (days or [1] * n)],
            "payout": payouts or [None] * n, "fee": [str(f) for f in (fees or [0] * n)]}


def run(spec, a, b, mapping=None):
    con = duckdb_connect()
    con.register("ta", pa.table(a))
    con.register("tb", pa.table(b))
    side_m = None
    if mapping is not None:
        con.register("tm", pa.table(mapping))
        side_m = Side("tm", {"a": "a_id", "b": "b_id"}, "mapping")
    return compare(spec, Side("ta", side_columns(spec, "a"), "A"), Side("tb", side_columns(spec, "b"), "B"), side_m, con=con)


def found(result) -> dict[tuple[str, str], dict]:
    return {(r["kind"], r["key"]): r for r in result.discrepancies.to_pylist()}


def group_key(a, b) -> str:
    return json.dumps({"a": sorted(a), "b": sorted(b)}, separators=(",", ":"))


# --------------------------------------------------------------------------- group references


def test_one_payout_settles_many_charges_net_of_fees():
    charges = [Decimal("10.00"), Decimal("20.00"), Decimal("33.33")]
    fees = [Decimal("0.59"), Decimal("0.88"), Decimal("1.27")]
    payout = sum(charges) - sum(fees)
    spec = spec_with({**GROUP, "fee_a": "fee"})
    result = run(spec, lines(["c1", "c2", "c3"], charges, payouts=["P1"] * 3, fees=fees),
                 lines(["P1"], [payout], payouts=["P1"]))
    assert found(result) == {}
    assert (result.groups.groups_matched, result.groups.lines_a, result.groups.lines_b) == (1, 3, 1)


def test_many_to_many_groups_and_the_gap_of_one_that_differs():
    a = lines(["c1", "c2", "c3", "c4"], ["10.10", "20.20", "5.00", "7.00"], payouts=["G1", "G1", "G2", "G2"])
    b = lines(["b1", "b2", "b3", "b4", "b5"], ["15.15", "15.15", "1.00", "2.00", "3.00"],
              payouts=["G1", "G1", "G2", "G2", "G2"])
    result = run(spec_with(GROUP), a, b)
    gap = (Decimal("5.00") + Decimal("7.00")) - (Decimal("1.00") + Decimal("2.00") + Decimal("3.00"))
    assert set(found(result)) == {("group_mismatch", "G2")}
    row = found(result)[("group_mismatch", "G2")]
    assert Decimal(str(row["difference"])) == gap
    assert (Decimal(row["value_a"]), Decimal(row["value_b"])) == (Decimal("12"), Decimal("6"))
    assert row["field"] == "amount" and row["reason"] == "sum_differs"
    assert all(m in row["detail"] for m in ("c3", "c4", "b3", "b4", "b5"))


def test_a_group_on_one_side_only_leaves_its_lines_unmatched():
    result = run(spec_with(GROUP), lines(["c1"], ["5"], payouts=["G9"]), lines(["b1"], ["7"], payouts=["G1"]))
    rows = found(result)
    assert set(rows) == {("unmatched_a", "c1"), ("unmatched_b", "b1")}
    assert "G9 has no lines on B" in rows[("unmatched_a", "c1")]["detail"]
    assert json.loads(rows[("unmatched_a", "c1")]["value_a"])["amount"] == "5"


# --------------------------------------------------------------------------- windows


def test_window_one_to_many_and_many_to_one():
    a = lines(["c1", "c2", "s1"], ["10.00", "15.50", "100.00"], days=[1, 2, 20])
    b = lines(["b1", "p1", "p2"], ["25.50", "40.00", "60.00"], days=[3, 21, 21])
    result = run(spec_with(WINDOW), a, b)
    assert found(result) == {}
    assert result.groups.window_matches == 2


def test_window_respects_the_days():
    a = lines(["c1", "c2"], ["10.00", "15.50"], days=[1, 5])  # c2 is 3 days from b1's date
    b = lines(["b1"], ["25.50"], days=[2])
    assert set(found(run(spec_with(WINDOW), a, b))) == {("unmatched_a", "c1"), ("unmatched_a", "c2"), ("unmatched_b", "b1")}
    assert found(run(spec_with({**WINDOW, "days": 3}), a, b)) == {}


def test_two_groupings_fit_both_are_reported_none_chosen():
    a = lines(["c1", "c2", "c3"], ["10", "20", "30"])
    b = lines(["b1"], ["30"])
    rows = found(run(spec_with(WINDOW), a, b))
    key = group_key(["c1", "c2", "c3"], ["b1"])
    assert set(rows) == {("ambiguous_match", key)}  # no line is also reported unmatched
    detail = rows[("ambiguous_match", key)]["detail"]
    assert "2 groupings fit" in detail and "c1 + c2" in detail and "= A c3" in detail


def test_two_targets_competing_for_one_line_are_ambiguous():
    rows = found(run(spec_with(WINDOW), lines(["c1"], ["30"]), lines(["b1", "b2"], ["30", "30"])))
    assert set(rows) == {("ambiguous_match", group_key(["c1"], ["b1", "b2"]))}


@pytest.mark.parametrize("a_amount, b_amount, tolerance", [
    ("100.00", "99.99", "0.01"),
    ("100.00", "99.989", "0.01"),
    ("100.00", "100.011", "0.011"),
    ("0.1", "0.3", "0"),          # with 0.2 below: exact decimals, where doubles would not agree
    ("1e-9", "0", "0.000000001"),
    ("1e-9", "0", "0.0000000009"),
])
@pytest.mark.parametrize("rule", [GROUP, WINDOW])
def test_tolerance_edges_are_exact(a_amount, b_amount, tolerance, rule):
    a_amounts = [Decimal(a_amount)] + ([Decimal("0.2")] if a_amount == "0.1" else [])
    ids = [f"c{i}" for i in range(len(a_amounts))]
    gap = abs(sum(a_amounts) - Decimal(b_amount))
    agree = gap <= Decimal(tolerance)
    spec = spec_with({**rule, "tolerance": tolerance})
    for amount_type in (pa.string(), pa.float64()):
        a = lines(ids, a_amounts, payouts=["G"] * len(ids))
        a["amount"] = pa.array([float(x) for x in a_amounts] if amount_type == pa.float64() else [str(x) for x in a_amounts], amount_type)
        rows = found(run(spec, a, lines(["b1"], [b_amount], payouts=["G"])))
        assert (rows == {}) is agree, (amount_type, rows)
        if not agree and rule is GROUP:
            assert Decimal(str(rows[("group_mismatch", "G")]["difference"])) == gap


def test_tolerance_reads_the_decimal_written():
    spec = spec_with({**GROUP, "tolerance": 0.1})
    assert spec.match[1].tolerance == Decimal("0.1")


# --------------------------------------------------------------------------- precedence


def test_a_line_matched_earlier_is_not_reconsidered():
    # k1 pairs by key, so the window cannot use it for w1 (k1 + c2 would fit); c3/c4 settle by
    # group, so w2 cannot use them either.
    a = lines(["k1", "c2", "c3", "c4"], ["10", "6", "2", "3"], payouts=[None, None, "G", "G"])
    b = lines(["k1", "w1", "G", "w2"], ["10", "16", "5", "5"], payouts=[None, None, "G", None])
    rows = found(run(spec_with(GROUP, WINDOW), a, b))
    assert set(rows) == {("unmatched_a", "c2"), ("unmatched_b", "w1"), ("unmatched_b", "w2")}


def test_without_group_rules_nothing_changes():
    spec = spec_with()
    rows = found(run(spec, lines(["c1"], ["5"]), lines(["b1"], ["5"])))
    assert set(rows) == {("only_in_a", "c1"), ("only_in_b", "b1")}


# --------------------------------------------------------------------------- the search bound


def test_a_window_with_too_many_candidates_is_not_searched():
    a = lines([f"c{i}" for i in range(6)], ["1"] * 5 + ["7"])
    spec = spec_with({**WINDOW, "max_candidates": 5})
    result = run(spec, a, lines(["b1"], ["7"]))
    row = found(result)[("unmatched_b", "b1")]
    assert row["reason"] == "search_limit_reached" and "6 candidate lines" in row["detail"]
    assert result.groups.search_limit_reached == 1
    searched = run(spec_with({**WINDOW, "max_candidates": 6}), a, lines(["b1"], ["7"]))
    assert set(found(searched)) == {("unmatched_a", f"c{i}") for i in range(5)}  # b1 = c5, found once searched


def test_a_fit_beyond_max_lines_is_not_found():
    a = lines(["c1", "c2", "c3"], ["1", "2", "3"])
    assert set(found(run(spec_with({**WINDOW, "max_lines": 2}), a, lines(["b1"], ["6"])))) == {
        ("unmatched_a", "c1"), ("unmatched_a", "c2"), ("unmatched_a", "c3"), ("unmatched_b", "b1")}
    assert found(run(spec_with({**WINDOW, "max_lines": 3}), a, lines(["b1"], ["6"]))) == {}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-50, 50), min_size=0, max_size=9), st.integers(-80, 80), st.integers(0, 3),
       st.integers(1, 4), st.integers(1, 4))
def test_the_search_finds_exactly_the_subsets_that_fit(amounts, target, tolerance, smallest, largest):
    """Against brute force over itertools.combinations (negative amounts: no pruning)."""
    candidates = sorted((_Line("a", f"c{i}", x, 0.0) for i, x in enumerate(amounts)), key=lambda c: (c.amount, c.key))
    got = {tuple(c.key for c in s) for s in subsets_fitting(target, candidates, smallest, largest, Decimal(tolerance))}
    want = {tuple(c.key for c in combo) for size in range(smallest, largest + 1)
            for combo in itertools.combinations(candidates, size) if abs(sum(c.amount for c in combo) - target) <= tolerance}
    assert got == want


# --------------------------------------------------------------------------- properties


def _partition(rng: random.Random, n_charges: int, n_payouts: int):
    cents = [rng.randrange(1, 100_000) for _ in range(n_charges)]
    owner = [rng.randrange(n_payouts) for _ in range(n_charges)]
    return cents, owner


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(1, 25), st.integers(1, 8), st.booleans())
def test_random_partitions_match_and_one_missing_line_is_one_gap(seed, n_charges, n_payouts, by_window):
    """Charges split at random among payouts match with no discrepancy; taking one charge away
    gives exactly one gap of its amount (group references), or leaves exactly its payout's lines
    unmatched (windows, each payout's lines on its own days)."""
    rng = random.Random(seed)
    cents, owner = _partition(rng, n_charges, n_payouts)
    used = sorted(set(owner))
    amount = [Decimal(c).scaleb(-2) for c in cents]
    day = {p: 1 + 4 * i for i, p in enumerate(used)}  # 4 days apart, window 2 days
    a = lines([f"c{i}" for i in range(n_charges)], amount, days=[day[p] for p in owner], payouts=[f"P{p}" for p in owner])
    totals = {p: sum(x for x, o in zip(amount, owner) if o == p) for p in used}
    b = lines([f"P{p}" for p in used], [totals[p] for p in used], days=[day[p] for p in used], payouts=[f"P{p}" for p in used])
    rule = {**WINDOW, "max_lines": 6, "max_candidates": 40} if by_window else GROUP
    spec = spec_with(rule)
    if not by_window or max(owner.count(p) for p in used) <= 6:
        assert found(run(spec, a, b)) == {}

    gone = rng.randrange(n_charges)
    kept = {k: [v for i, v in enumerate(col) if i != gone] for k, col in a.items()}
    rows = found(run(spec, kept, b))
    payout = f"P{owner[gone]}"
    if not by_window:
        if owner.count(owner[gone]) == 1:  # its payout's only charge: nothing left on A for that group
            assert set(rows) == {("unmatched_b", payout)}
        else:
            assert set(rows) == {("group_mismatch", payout)}
            assert Decimal(str(rows[("group_mismatch", payout)]["difference"])) == amount[gone]
    elif max(owner.count(p) for p in used) <= 6:
        others = {f"c{i}" for i, o in enumerate(owner) if o == owner[gone] and i != gone}
        # A proper subset of positive amounts cannot sum to the payout: its lines stay unmatched.
        assert set(rows) == {("unmatched_b", payout)} | {("unmatched_a", c) for c in others}


# --------------------------------------------------------------------------- many-to-one key mappings


MAPPED_FIELDS = {"amount": {"compare": "numeric", "abs_tol": 0.001}, "currency": "exact"}
MAPPING = {"source": SRC, "a": "a_id", "b": "b_id"}


def mapped_spec(cardinality):
    raw = {"name": "mapped_test", "source_a": SRC, "source_b": SRC, "key": "id", "fields": MAPPED_FIELDS,
           "key_mapping": {**MAPPING, "cardinality": cardinality}}
    return parse_spec(raw, source_file="test.yaml")


def test_many_to_one_sums_the_a_records_and_names_every_a_id():
    a = {"id": ["a1", "a2", "a3", "a4", "a5"], "amount": ["10.10", "20.20", "5", "1", "2"],
         "currency": ["USD", "USD", "USD", "EUR", "USD"]}
    b = {"id": ["B1", "B2", "B3"], "amount": ["30.30", "6", "3"], "currency": ["USD", "USD", "USD"]}
    mapping = {"a_id": ["a1", "a2", "a3", "a4", "a5"], "b_id": ["B1", "B1", "B2", "B3", "B3"]}
    rows = found(run(mapped_spec("many_to_one"), a, b, mapping))
    b2, b3 = group_key(["a3"], ["B2"]), group_key(["a4", "a5"], ["B3"])
    assert set(rows) == {("field_mismatch", b2), ("field_mismatch", b3)}
    assert Decimal(str(rows[("field_mismatch", b2)]["difference"])) == Decimal("1")  # 5 against 6
    assert rows[("field_mismatch", b3)]["field"] == "currency"  # 1 + 2 = 3 agrees; EUR | USD does not
    assert rows[("field_mismatch", b3)]["value_a"] == "EUR | USD"


def test_one_to_many_sums_the_b_records():
    a = {"id": ["A1"], "amount": ["9.99"], "currency": ["USD"]}
    b = {"id": ["b1", "b2", "b3"], "amount": ["3.33", "3.33", "3.34"], "currency": ["USD", "USD", "USD"]}
    mapping = {"a_id": ["A1", "A1", "A1"], "b_id": ["b1", "b2", "b3"]}
    rows = found(run(mapped_spec("one_to_many"), a, b, mapping))
    key = group_key(["A1"], ["b1", "b2", "b3"])
    assert set(rows) == {("field_mismatch", key)}
    assert Decimal(str(rows[("field_mismatch", key)]["difference"])) == Decimal("0.01")


def test_many_to_one_reports_unmapped_duplicate_and_missing_ids():
    a = {"id": ["a1", "a2", "a2", "a9"], "amount": ["1", "2", "2", "4"], "currency": ["USD"] * 4}
    b = {"id": ["B1", "B7"], "amount": ["1", "1"], "currency": ["USD", "USD"]}
    mapping = {"a_id": ["a1", "a2", "a8"], "b_id": ["B1", "B1", "B8"]}
    rows = found(run(mapped_spec("many_to_one"), a, b, mapping))
    assert set(rows) == {("duplicate_key_a", "a2"), ("unmapped_a", "a9"), ("unmapped_b", "B7")}  # a1 alone = B1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(1, 20), st.integers(1, 6))
def test_random_many_to_one_mappings_agree_and_one_missing_record_is_its_amount(seed, n_a, n_b):
    """A records mapped at random onto B ids, each B record the exact sum of its A records: no
    discrepancy; one A record gone: one amount mismatch of exactly its value on its group's key
    (or, when it was the group's only record, the B record alone)."""
    rng = random.Random(seed)
    amounts = [Decimal(rng.randrange(1, 10**7)).scaleb(-3) for _ in range(n_a)]
    owner = [rng.randrange(n_b) for _ in range(n_a)]
    used = sorted(set(owner))
    a_ids = [f"a{i}" for i in range(n_a)]
    mapping = {"a_id": a_ids, "b_id": [f"B{o}" for o in owner]}
    b = {"id": [f"B{o}" for o in used], "amount": [str(sum(x for x, w in zip(amounts, owner) if w == o)) for o in used],
         "currency": ["USD"] * len(used)}
    a = {"id": a_ids, "amount": [str(x) for x in amounts], "currency": ["USD"] * n_a}
    spec = mapped_spec("many_to_one")
    assert found(run(spec, a, b, mapping)) == {}

    gone = rng.randrange(n_a)
    kept = {k: [v for i, v in enumerate(col) if i != gone] for k, col in a.items()}
    rows = found(run(spec, kept, b, mapping))
    members = [a_ids[i] for i in range(n_a) if owner[i] == owner[gone]]
    key = group_key(members, [f"B{owner[gone]}"])
    if len(members) == 1:
        assert set(rows) == {("only_in_b", key)}
    else:
        assert set(rows) == {("field_mismatch", key)}
        assert Decimal(rows[("field_mismatch", key)]["value_b"]) - Decimal(rows[("field_mismatch", key)]["value_a"]) == amounts[gone]


@pytest.mark.parametrize("cardinality, mapping, culprit", [
    ("many_to_one", {"a_id": ["a1", "a1"], "b_id": ["B1", "B2"]}, "'a1' (A side)"),
    ("one_to_many", {"a_id": ["A1", "A2"], "b_id": ["b1", "b1"]}, "'b1' (B side)"),
])
def test_the_single_side_of_a_many_to_one_mapping_must_be_unique(cardinality, mapping, culprit):
    a = {"id": ["a1"], "amount": ["1"], "currency": ["USD"]}
    with pytest.raises(ComparisonError) as info:
        run(mapped_spec(cardinality), a, {"id": ["B1"], "amount": ["1"], "currency": ["USD"]}, mapping)
    assert culprit in str(info.value) and cardinality in str(info.value)


# --------------------------------------------------------------------------- the spec


@pytest.mark.parametrize("match, message", [
    ([{"by": "group", "a": "p", "b": "p", "amount": "amount"}], "the first rule must be {by: key}"),
    ([{"by": "key"}, WINDOW, GROUP], "in the order key, group, window"),
    ([{"by": "key"}, GROUP, GROUP], "may appear once"),
    ([{"by": "key"}, {**GROUP, "amount": "at"}], "match.1.amount: 'at' is not a numeric field"),
    ([{"by": "key"}, {**WINDOW, "date": "amount"}], "match.1.date: 'amount' is not a timestamp field"),
    ([{"by": "key"}, {**WINDOW, "max_lines": 7}], "max_lines"),
])
def test_bad_match_rules_are_refused_at_load(match, message):
    raw = {"name": "groups_test", "source_a": SRC, "source_b": SRC, "key": "id", "fields": FIELDS, "match": match}
    with pytest.raises(SpecError) as info:
        parse_spec(raw, source_file="test.yaml")
    assert message in str(info.value)


def test_group_rules_are_refused_with_a_key_mapping():
    with pytest.raises(SpecError) as info:
        spec_with(GROUP, key_mapping=MAPPING)
    assert "not with key_mapping" in str(info.value)


def test_a_line_whose_amount_is_not_a_number_is_left_unmatched_and_says_why():
    rows = found(run(spec_with(GROUP), lines(["c1", "c2"], ["abc", "5"], payouts=["G", "G"]), lines(["b1"], ["5"], payouts=["G"])))
    assert set(rows) == {("unmatched_a", "c1")}  # the group is c2 alone, and agrees
    assert rows[("unmatched_a", "c1")]["detail"].startswith("its amount is not a number")


def test_group_rules_are_never_pushed_down():
    from recon_pipelines.engine.pushdown import NotPushable, _backend_of

    sql = {"type": "sql", "url": "postgresql://u@127.0.0.1/db", "table": "t"}
    raw = {"name": "groups_test", "source_a": sql, "source_b": sql, "key": "id", "fields": FIELDS, "match": [{"by": "key"}, GROUP]}
    with pytest.raises(NotPushable, match="group and window rules run locally"):
        _backend_of(parse_spec(raw, source_file="test.yaml"))
