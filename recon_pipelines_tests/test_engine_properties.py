"""Property-based tests of the numeric and exact rules: Hypothesis draws values, column types,
tolerances and scales; the engine's verdict for every pair is checked against a reference
written here with Python's ``decimal`` and ``math`` from the spec reference's rules, sharing no
formula (and no code) with ``engine/rules.py``.

Each example is one table: every drawn pair appears twice, once alone (the hash fast path may
settle it) and once next to a field that always differs (it is certainly evaluated); both must
give the reference's verdict.

Profiles: ``ci`` (the default, 200 examples per test) and ``long`` (``RECON_HYPOTHESIS_PROFILE=long``,
5,000 examples).
"""

from __future__ import annotations

import math
import os
import re
from decimal import Decimal, localcontext

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recon_pipelines_tests.test_engine_rules import make_spec, run

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("quick", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROFILE = settings.get_profile(os.environ.get("RECON_HYPOTHESIS_PROFILE", "ci"))
# Each example runs the engine once: far more than the suite's default 300 s on a busy machine.
pytestmark = pytest.mark.timeout(0 if PROFILE.max_examples > 200 else 3600)

WHITESPACE = " \t\n\r\x0b\x0c\u00a0"
FLOAT = "float32", "float64"
ARROW = {"int": pa.int64(), "float64": pa.float64(), "float32": pa.float32(), "text": pa.string()}
EITHER = "either"  # a float pair within a few ulps of its tolerance: both verdicts are right


def arrow_type(family: str):
    if family.startswith("decimal"):
        return pa.decimal128(38, int(family.split("_")[1]))
    return ARROW[family]


# --------------------------------------------------------------------------- the reference


def ref_value(raw, family: str):
    """('null',) | ('bad',) | ('nan',) | ('+inf',) | ('-inf',) | ('num', exact Decimal, text)."""
    if raw is None:
        return ("null",)
    if family in FLOAT:
        if math.isnan(raw):
            return ("nan",)
        if math.isinf(raw):
            return ("+inf",) if raw > 0 else ("-inf",)
        return ("num", Decimal(raw), None)
    if family == "int":
        return ("num", Decimal(raw), str(raw))
    if family.startswith("decimal"):
        return ("num", raw, duck_text(raw, family))
    text = raw.strip(WHITESPACE)
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        with localcontext() as ctx:
            ctx.prec = 1000
            return ("num", Decimal(text), text)
    word = text.lower().lstrip("+-")
    if word == "nan":
        return ("nan",)
    if word in ("inf", "infinity"):
        return ("-inf",) if text.startswith("-") else ("+inf",)
    return ("bad",)


def exact_product(x: Decimal, y: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 2000
        return x * y


def ref_numeric(rule: dict, a, fam_a: str, b, fam_b: str):
    """The spec reference's numeric rule, from exact decimals."""
    va, vb = ref_value(a, fam_a), ref_value(b, fam_b)
    if va[0] == "null" and vb[0] == "null":
        return None
    if va[0] == "null":
        return "null_in_a"
    if vb[0] == "null":
        return "null_in_b"
    if va[0] == "bad":
        return "type_mismatch_a"
    if vb[0] == "bad":
        return "type_mismatch_b"
    if va[0] != "num" or vb[0] != "num":  # NaN and the infinities are values of their own
        return None if va[0] == vb[0] else "value_differs"
    scale_a, scale_b = Decimal(repr(rule.get("scale_a", 1.0))), Decimal(repr(rule.get("scale_b", 1.0)))
    abs_tol, rel_tol = Decimal(repr(rule.get("abs_tol", 0.0))), Decimal(repr(rule.get("rel_tol", 0.0)))
    xa, xb = exact_product(va[1], scale_a), exact_product(vb[1], scale_b)
    with localcontext() as ctx:
        ctx.prec = 2000
        diff = abs(xa - xb)
        magnitude = max(abs(xa), abs(xb))
        tolerance = max(abs_tol, rel_tol * magnitude)
    if fam_a in FLOAT or fam_b in FLOAT:
        for value, family, scale in ((va, fam_a, rule.get("scale_a", 1.0)), (vb, fam_b, rule.get("scale_b", 1.0))):
            if family not in FLOAT and math.isinf(float(value[1]) * scale):
                return "value_differs"  # beyond the range of a double
            if family in FLOAT and math.isinf(float(value[1]) * scale):
                return EITHER  # a scale pushing a double out of range: not drawn often, not judged here
        own = Decimal(0)  # a 32-bit side's representation error: one of its ulps
        for value, family, scale in ((va, fam_a, scale_a), (vb, fam_b, scale_b)):
            if family == "float32":
                f = np.float32(abs(float(value[1])))
                own += exact_product(Decimal(float(np.nextafter(f, np.float32("inf")))) - Decimal(float(f)), scale)
        rounding = 8 * Decimal(math.ulp(float(max(magnitude, tolerance))))
        if diff <= tolerance + own:
            return None
        if diff > tolerance + own + rounding:
            return "value_differs"
        return EITHER
    # Exact: over the common last decimal place, each value must have at most 37 digits.
    exponent = min((x.normalize().as_tuple().exponent for x in (xa, xb) if x != 0), default=0)
    ia, ib = (int(x.scaleb(-exponent)) for x in (xa, xb))
    limit = 10**37
    too_wide = abs(ia) >= limit or abs(ib) >= limit
    if rel_tol and not too_wide:
        r_sign, r_digits, r_exp = rel_tol.normalize().as_tuple()
        r_int = int("".join(map(str, r_digits)))
        if r_exp < 0 and abs(ia - ib) * 10 ** (-r_exp) >= 2**127 and r_int * max(abs(ia), abs(ib)) >= 2**127:
            too_wide = True
    if too_wide:  # compared by text
        return None if va[2] == vb[2] else "value_differs"
    return None if diff <= tolerance else "value_differs"


def ref_exact(a, fam_a: str, b, fam_b: str):
    """`exact` without aliases: numbers as numbers (a float's precision when one side is a
    float), text as text."""
    if a is None and b is None:
        return None
    if a is None:
        return "null_in_a"
    if b is None:
        return "null_in_b"
    if fam_a == fam_b:
        same = (math.isnan(a) and math.isnan(b)) if fam_a in FLOAT and math.isnan(a) else a == b
        return None if same else "value_differs"
    if "text" in (fam_a, fam_b):
        if "float64" in (fam_a, fam_b):
            return EITHER  # a double's text is DuckDB's own rendering, not modelled here
        return None if duck_text(a, fam_a) == duck_text(b, fam_b) else "value_differs"
    if "float64" in (fam_a, fam_b):
        fa, fb = float(a), float(b)  # the other side rounded to the double nearest to it
        same = (math.isnan(fa) and math.isnan(fb)) or fa == fb
        return None if same else "value_differs"
    return None if Decimal(a) == Decimal(b) else "value_differs"


def duck_text(value, family: str) -> str:
    if family == "text":
        return value
    if family.startswith("decimal"):
        return format(abs(value) if value == 0 else value, "f")  # a DECIMAL has no negative zero
    return str(value)


# --------------------------------------------------------------------------- strategies


@st.composite
def amounts(draw) -> Decimal:
    """A finite decimal: magnitude 10^-6 to 10^15, 1 to 20 significant digits, or a special."""
    special = draw(st.sampled_from([None] * 6 + [2**53, 2**53 + 1, 2**53 - 1, -(2**63) + 1, 0]))
    if special is not None:
        return Decimal(special)
    exponent = draw(st.integers(-6, 15))
    digits = draw(st.integers(1, 20))
    mantissa = draw(st.integers(10 ** (digits - 1), 10**digits - 1)) * draw(st.sampled_from([1, -1]))
    return Decimal(mantissa).scaleb(exponent - digits + 1)


TOLERANCES = st.sampled_from([0.0, 0.0, 0.01, 0.005, 1.0, 1e-6, 0.5])
REL_TOLERANCES = st.sampled_from([0.0, 0.0, 0.001, 1e-6, 0.01])
SCALES = st.sampled_from([1.0, 1.0, 1.0, 0.01, 100.0, 0.001])
FAMILIES = st.sampled_from(["int", "float64", "float32", "decimal_0", "decimal_2", "decimal_6", "text"])


def in_family(value: Decimal, family: str, draw):
    """A drawn decimal as a value of a column family (rounded as that column would store it)."""
    if family == "int":
        number = int(value)
        return number if abs(number) < 2**63 else None
    if family == "float64":
        return float(value)
    if family == "float32":
        return float(np.float32(float(value)))
    if family.startswith("decimal"):
        places = int(family.split("_")[1])
        quantized = value.quantize(Decimal(1).scaleb(-places))
        return quantized if len(quantized.as_tuple().digits) <= 38 else None
    style = draw(st.sampled_from(["plain", "plain", "exponent", "padded"]))
    if style == "exponent":
        return f"{value:E}"
    text = format(value, "f")
    return f" {text}\t" if style == "padded" else text


SPECIAL_TEXT = ["NaN", "nan", "inf", "-Infinity", "+inf", "1e400", "-1e400", "1" * 40, "n/a", "", "12,5"]
SPECIAL_FLOAT = [float("nan"), float("inf"), float("-inf"), -0.0, 0.0]


@st.composite
def pairs(draw, rule: dict, fam_a: str, fam_b: str):
    base = draw(amounts())
    tolerance = Decimal(repr(rule.get("abs_tol", 0.0)))
    unit = Decimal(1).scaleb(draw(st.integers(-8, 2)))
    delta = draw(st.sampled_from([Decimal(0), tolerance, -tolerance, tolerance + unit, tolerance - unit, unit, base * Decimal("1e-9")]))
    other = draw(st.one_of(st.just(base + delta), amounts()))
    # The sides may count in different units: B holds what A means, in its own unit.
    scale_a, scale_b = Decimal(repr(rule.get("scale_a", 1.0))), Decimal(repr(rule.get("scale_b", 1.0)))
    with localcontext() as ctx:
        ctx.prec = 100
        b_value = other * scale_a / scale_b
    a, b = in_family(base, fam_a, draw), in_family(b_value, fam_b, draw)
    for side, family in (("a", fam_a), ("b", fam_b)):
        roll = draw(st.integers(0, 19))
        if roll == 0:
            value = None
        elif roll == 1 and family == "text":
            value = draw(st.sampled_from(SPECIAL_TEXT))
        elif roll == 1 and family in FLOAT:
            value = draw(st.sampled_from(SPECIAL_FLOAT))
        else:
            continue
        a, b = (value, b) if side == "a" else (a, value)
    return a, b


@st.composite
def numeric_cases(draw):
    rule = {"compare": "numeric", "abs_tol": draw(TOLERANCES), "rel_tol": draw(REL_TOLERANCES)}
    rule["scale_a"], rule["scale_b"] = draw(SCALES), draw(SCALES)
    fam_a, fam_b = draw(FAMILIES), draw(FAMILIES)
    rows = draw(st.lists(pairs(rule, fam_a, fam_b), min_size=1, max_size=12))
    return rule, fam_a, fam_b, rows


@st.composite
def exact_cases(draw):
    fam_a, fam_b = draw(st.sampled_from(["int", "float64", "decimal_0", "decimal_2", "text"])), draw(
        st.sampled_from(["int", "float64", "decimal_0", "decimal_2", "text"]))
    rows = draw(st.lists(pairs({"abs_tol": 0.0}, fam_a, fam_b), min_size=1, max_size=12))
    return fam_a, fam_b, rows


# --------------------------------------------------------------------------- running the engine


def verdicts(rule, fam_a: str, fam_b: str, rows: list) -> dict[int, tuple[str | None, str | None]]:
    """Each pair twice (alone, and forced to evaluation by a differing field): key -> reasons."""
    a_values, b_values, force_a, force_b = [], [], [], []
    for a, b in rows:
        for forced in (False, True):
            a_values.append(a)
            b_values.append(b)
            force_a.append("x")
            force_b.append("y" if forced else "x")
    n = len(a_values)
    table_a = pa.table({"id": list(range(n)), "v": pa.array(a_values, arrow_type(fam_a)), "f": force_a})
    table_b = pa.table({"id": list(range(n)), "v": pa.array(b_values, arrow_type(fam_b)), "f": force_b})
    result = run(make_spec(fields={"v": rule, "f": "exact"}), table_a, table_b)
    found = {int(r["key"]): r["reason"] for r in result.discrepancies.to_pylist() if r["field"] == "v"}
    return {i: (found.get(2 * i), found.get(2 * i + 1)) for i in range(len(rows))}


def check(expected: list, got: dict, rows: list, context) -> None:
    for i, want in enumerate(expected):
        alone, forced = got[i]
        assert alone == forced, f"hash path and evaluation disagree on {rows[i]!r} ({context}): {alone} vs {forced}"
        if want != EITHER:
            assert forced == want, f"{rows[i]!r} ({context}): engine {forced}, reference {want}"


@PROFILE
@given(numeric_cases())
def test_numeric_rule_matches_the_decimal_reference(case):
    rule, fam_a, fam_b, rows = case
    expected = [ref_numeric(rule, a, fam_a, b, fam_b) for a, b in rows]
    check(expected, verdicts(rule, fam_a, fam_b, rows), rows, (rule, fam_a, fam_b))


@PROFILE
@given(exact_cases())
def test_exact_rule_matches_the_reference_across_column_types(case):
    fam_a, fam_b, rows = case
    expected = [ref_exact(a, fam_a, b, fam_b) for a, b in rows]
    check(expected, verdicts("exact", fam_a, fam_b, rows), rows, (fam_a, fam_b))
