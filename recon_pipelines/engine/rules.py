"""Compile each field rule of a spec to DuckDB SQL expressions.

A rule becomes three expressions over the paired raw values ``a`` and ``b``:
``reason`` (NULL when the pair agrees, else why not), ``difference`` (|a - b|
for numbers, seconds for timestamps) and ``raw_differs`` (the values are not
identical, used to measure drift that stayed within tolerance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from recon_pipelines.instants import WHITESPACE, instant_sql
from recon_pipelines.spec.models import ExactRule, NumericRule, StringRule, TimestampRule
from recon_pipelines.sqlutil import quote_ident as q
from recon_pipelines.sqlutil import sql_literal

_INT_DIGITS = {  # most decimal digits an integer type holds
    "TINYINT": 3, "SMALLINT": 5, "INTEGER": 10, "BIGINT": 19, "HUGEINT": 39,
    "UTINYINT": 3, "USMALLINT": 5, "UINTEGER": 10, "UBIGINT": 20, "UHUGEINT": 39,
}
_FLOAT_TYPES = ("FLOAT", "DOUBLE", "REAL")
# Exact arithmetic runs on 128-bit integers: a pair is compared exactly when both values,
# written as integers over their common last decimal place, have at most 37 digits.
EXACT_DIGITS = 38
_TOO_WIDE = f"CAST('1{'0' * 37}' AS HUGEINT)"
# A float side's allowance: this many ulps (gaps to the next double) of the larger of |a|, |b|
# and the tolerance, for the rounding of the double arithmetic, plus one ulp of a FLOAT side's
# own 32-bit precision (its representation error).
FLOAT_ULPS = 4
# Fraction digits a text side may carry to be hashed exactly when the two sides' scales differ.
_TEXT_HASH_DIGITS = 12
# A finite number as text (after trimming and dropping DuckDB's digit separators '_').
_NUMBER = r"^([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?$"
_INF_WORD = r"^[+-]?inf(inity)?$"

REASONS = ("value_differs", "null_in_a", "null_in_b", "both_null", "type_mismatch_a", "type_mismatch_b")


@dataclass(frozen=True)
class FieldSql:
    name: str
    reason: str
    difference: str
    raw_differs: str
    relative: str
    detail: str
    # Columns computed first, in order; each may use the ones before it (see ``stages``).
    prepared: tuple[tuple[str, str], ...] = ()


def stages(prepared: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Group prepared columns into nesting levels: a column goes one level above the deepest
    prepared column it uses. Each level is its own SELECT, so every value is computed once
    (a lateral alias would be inlined into each use, and nested uses multiply)."""
    level: dict[str, int] = {}
    out: list[list[tuple[str, str]]] = []
    for name, expr in prepared:
        depth = 1 + max((level[n] for n in level if q(n) in expr), default=-1)
        level[name] = depth
        while len(out) <= depth:
            out.append([])
        out[depth].append((name, expr))
    return out


def compile_rule(rule, a: str, b: str, type_a: str, type_b: str) -> FieldSql:
    """SQL for one field; ``a``/``b`` are column expressions, ``type_*`` their DuckDB types."""
    prepared: list[tuple[str, str]] = []
    checks = ""  # extra arms of the reason CASE, after the null checks
    if isinstance(rule, NumericRule):
        numeric = _NumericSql(rule, a, b, type_a, type_b)
        prepared, checks, equal = numeric.prepared, numeric.checks, numeric.equal
        difference, relative, detail = numeric.difference, numeric.relative, numeric.detail
    elif isinstance(rule, TimestampRule):
        va, vb = _instant(rule, a, type_a, "a"), _instant(rule, b, type_b, "b")
        difference = f"abs(epoch_us({va}) - epoch_us({vb})) / 1e6"
        equal = f"{difference} <= {rule.lag!r} + 1e-6"
        detail = f"format('{{}} s apart (lag tolerance {{}} s)', round({difference}, 6), {rule.lag!r})"
        relative = "NULL::DOUBLE"
        checks = f"WHEN {va} IS NULL THEN 'type_mismatch_a' WHEN {vb} IS NULL THEN 'type_mismatch_b'"
        detail = f"""CASE WHEN {a} IS NOT NULL AND {va} IS NULL THEN 'A value is not a timestamp'
            WHEN {b} IS NOT NULL AND {vb} IS NULL THEN 'B value is not a timestamp' ELSE {detail} END"""
    elif isinstance(rule, (StringRule, ExactRule)):
        if isinstance(rule, ExactRule) and not rule.values:
            equal = _exact_equal(a, b, type_a, type_b)
        else:
            steps = rule.normalize if isinstance(rule, StringRule) else []
            va, vb = _mapped(_text(a, steps), rule.values, steps), _mapped(_text(b, steps), rule.values, steps)
            equal = f"{va} = {vb}"
        difference = relative = "NULL::DOUBLE"
        detail = "'values differ'" if isinstance(rule, ExactRule) else f"'values differ after {'+'.join(rule.normalize) or 'no'} normalisation'"
    else:  # pragma: no cover - the spec model admits no other rule
        raise TypeError(f"unknown rule {rule!r}")

    nulls = rule.nulls
    reason = f"""CASE
        WHEN {a} IS NULL AND {b} IS NULL THEN {sql_literal('both_null') if nulls.both_null == 'differ' else 'NULL'}
        WHEN {a} IS NULL THEN {'NULL' if 'a' in nulls.allow_null_in else sql_literal('null_in_a')}
        WHEN {b} IS NULL THEN {'NULL' if 'b' in nulls.allow_null_in else sql_literal('null_in_b')}
        {checks}
        WHEN {equal} THEN NULL
        ELSE 'value_differs' END"""
    raw_differs = (
        f"{a} IS DISTINCT FROM {b}" if _same_type(type_a, type_b) else f"CAST({a} AS VARCHAR) IS DISTINCT FROM CAST({b} AS VARCHAR)"
    )
    if isinstance(rule, TimestampRule) and _sides_read_differently(rule):
        raw_differs = f"{va} IS DISTINCT FROM {vb}"  # as hashed: the same instant is no drift
    return FieldSql(rule.name, reason, difference, raw_differs, relative, detail, tuple(prepared))


# --------------------------------------------------------------------------- numeric


class _NumericSql:
    """The numeric rule's SQL for one pair of column types.

    Every value is first classified: a finite number, NaN, +inf, -inf, a number out of the
    exact range ('big'), or not a number ('bad', a type mismatch). Two finite numbers are then
    compared in one of two ways, chosen from the column types:

    exact (neither side FLOAT/DOUBLE)
        Each value becomes an integer mantissa and a power of ten (HUGEINT, from its decimal
        text), the scales are applied as exact decimals, both are written over their common
        last decimal place and the tolerance is checked in integers: no digit is rounded.
        A pair that needs 38 digits or more there is compared by its text instead.
    float (a FLOAT or DOUBLE side)
        In double precision, with an allowance for the representation error of doubles:
        ``FLOAT_ULPS`` ulps of the larger of |a|, |b| and the tolerance, plus one 32-bit ulp
        of a FLOAT side. Never a share of the magnitude beyond that.
    """

    def __init__(self, rule: NumericRule, a: str, b: str, type_a: str, type_b: str):
        self.rule = rule
        self.float_mode = _is_float(type_a) or _is_float(type_b)
        self.prepared: list[tuple[str, str]] = []
        self._col = lambda what: q(f"__n_{rule.name}_{what}")
        for side, x, duck_type, scale in (("a", a, type_a, rule.scale_a), ("b", b, type_b, rule.scale_b)):
            self._read(side, x, duck_type, scale)
        col = self._col
        # The verdict for two finite numbers, the difference, and each side's final class.
        if self.float_mode:
            self._float_pair(type_a, type_b)
        else:
            self._exact_pair()
        ca, cb = col("a_class"), col("b_class")
        finite = f"{ca} = 'num' AND {cb} = 'num'"
        texts_equal = f"{col('a_txt')} = {col('b_txt')}"
        self.checks = f"""WHEN {ca} = 'bad' THEN 'type_mismatch_a' WHEN {cb} = 'bad' THEN 'type_mismatch_b'
            WHEN {ca} IN ('nan', '+inf', '-inf') OR {cb} IN ('nan', '+inf', '-inf') THEN CASE WHEN {ca} = {cb} THEN NULL ELSE 'value_differs' END
            WHEN {ca} IN ('big', 'wide') OR {cb} IN ('big', 'wide') THEN CASE WHEN {texts_equal} THEN NULL ELSE 'value_differs' END"""
        self.equal = f"coalesce({col('agree')}, FALSE)"
        self.difference = f"CASE WHEN {finite} THEN {col('diff')} END"
        self.relative = f"CASE WHEN {finite} THEN {col('diff')} / nullif({col('mag')}, 0) END"
        beyond = "the range of a double" if self.float_mode else f"the exact range ({EXACT_DIGITS} digits); compared as text"
        self.detail = f"""CASE
            WHEN {ca} = 'bad' THEN 'A value is not a number' WHEN {cb} = 'bad' THEN 'B value is not a number'
            WHEN {ca} IN ('nan', '+inf', '-inf') OR {cb} IN ('nan', '+inf', '-inf')
                THEN format('A is {{}}, B is {{}}', {_class_label(ca)}, {_class_label(cb)})
            WHEN {ca} = 'big' THEN 'A value is beyond {beyond}'
            WHEN {cb} = 'big' THEN 'B value is beyond {beyond}'
            WHEN {ca} = 'wide' THEN 'the two values need more than {EXACT_DIGITS} digits to compare exactly; compared as text'
            WHEN {finite} THEN format('differs by {{}} (tolerance {{}})', {col('diff_text')}, {col('tol_text')}) END"""

    def _add(self, what: str, expr: str) -> str:
        self.prepared.append((f"__n_{self.rule.name}_{what}", expr))
        return self._col(what)

    def _read(self, side: str, x: str, duck_type: str, scale: float) -> None:
        """Prepared columns reading one side: its text, double, class and value."""
        add = self._add
        if _is_number_type(duck_type):
            txt = add(f"{side}_txt", f"CAST({x} AS VARCHAR)")
            dbl = add(f"{side}_dbl", f"CAST({x} AS DOUBLE)")
        elif duck_type == "BOOLEAN":  # a flag is not an amount
            txt = add(f"{side}_txt", f"CAST({x} AS VARCHAR)")
            dbl = add(f"{side}_dbl", "CAST(NULL AS DOUBLE)")
        else:
            txt = add(f"{side}_txt", f"trim(CAST({x} AS VARCHAR), {sql_literal(WHITESPACE)})")
            dbl = add(f"{side}_dbl", f"TRY_CAST({txt} AS DOUBLE)")  # the same test as unreadable()
        if _is_float(duck_type):
            cls = f"CASE WHEN isnan({dbl}) THEN 'nan' WHEN {dbl} = 'inf'::DOUBLE THEN '+inf' WHEN {dbl} = '-inf'::DOUBLE THEN '-inf' ELSE 'num' END"
        else:
            plain = f"replace({txt}, '_', '')"
            parts = add(f"{side}_parts", f"regexp_extract({plain}, {sql_literal(_NUMBER)}, ['s', 'i', 'f', 'x'])")
            written = f"(regexp_full_match({plain}, {sql_literal(_NUMBER)}) AND struct_extract({parts}, 'i') || struct_extract({parts}, 'f') <> '')"
            word_inf = f"regexp_full_match(lower({txt}), {sql_literal(_INF_WORD)})"
            cls = f"""CASE WHEN {dbl} IS NULL THEN 'bad' WHEN {written} THEN 'num' WHEN isnan({dbl}) THEN 'nan'
                WHEN isinf({dbl}) AND {word_inf} THEN (CASE WHEN {dbl} > 0 THEN '+inf' ELSE '-inf' END) ELSE 'big' END"""
        cls = add(f"{side}_cls0", cls)
        if self.float_mode:
            value = dbl if scale == 1.0 else f"({dbl} * {_double(scale)})"
            val = add(f"{side}_val", value)
            # Out of the double range: text such as 1e400, or a scale that overflows.
            add(f"{side}_cls", f"CASE WHEN {cls} = 'num' AND NOT isfinite({val}) THEN 'big' ELSE {cls} END")
            return
        # Exact: mantissa (HUGEINT) and exponent of the scaled value, from the decimal text.
        digits = f"(struct_extract({parts}, 'i') || struct_extract({parts}, 'f'))"
        sig = f"ltrim(rtrim({digits}, '0'), '0')"
        k_int, k_exp = _mantissa(scale)
        mant = add(f"{side}_mant", f"CASE WHEN {cls} <> 'num' THEN NULL WHEN {sig} = '' THEN 0::HUGEINT "
                                   f"ELSE TRY(TRY_CAST(struct_extract({parts}, 's') || {sig} AS HUGEINT) * {k_int}::HUGEINT) END")
        exp = add(f"{side}_exp", f"CASE WHEN {mant} = 0 THEN NULL ELSE TRY(CASE WHEN struct_extract({parts}, 'x') = '' THEN 0 ELSE TRY_CAST(struct_extract({parts}, 'x') AS BIGINT) END "
                                 f"- length(struct_extract({parts}, 'f')) + (length({digits}) - length(rtrim({digits}, '0'))) + {k_exp}) END")
        add(f"{side}_cls", f"CASE WHEN {cls} = 'num' AND ({mant} IS NULL OR ({mant} <> 0 AND {exp} IS NULL)) THEN 'big' ELSE {cls} END")

    def _exact_pair(self) -> None:
        add, col, rule = self._add, self._col, self.rule
        ma, mb, ea, eb = col("a_mant"), col("b_mant"), col("a_exp"), col("b_exp")
        # The common last decimal place (a zero has none), and both values as integers over it.
        e = add("e", f"coalesce(least({ea}, {eb}), {ea}, {eb}, 0)")
        ia = add("ia", f"CASE WHEN {ma} = 0 THEN 0::HUGEINT ELSE TRY({ma} * {_pow10(f'{ea} - {e}')}) END")
        ib = add("ib", f"CASE WHEN {mb} = 0 THEN 0::HUGEINT ELSE TRY({mb} * {_pow10(f'{eb} - {e}')}) END")
        d = add("d", f"TRY(abs({ia} - {ib}))")
        m = add("m", f"TRY(greatest(abs({ia}), abs({ib})))")
        # Each value over the common place must stay below 10^37, so |a - b| fits 128 bits.
        tests, overflow = [], [f"{ia} IS NULL", f"{ib} IS NULL", f"abs({ia}) >= {_TOO_WIDE}", f"abs({ib}) >= {_TOO_WIDE}"]
        t_int, t_exp = _mantissa(rule.abs_tol)
        if t_int == 0:
            tests.append(f"{d} = 0")
        else:  # d * 10^e <= t * 10^t_exp; an overflow decides (t has at most 17 digits)
            tests.append(f"""CASE WHEN {d} = 0 THEN TRUE
                WHEN {e} >= {t_exp} THEN coalesce(TRY({d} * {_pow10(f'{e} - {t_exp}')}) <= {t_int}, FALSE)
                ELSE coalesce({d} <= TRY({t_int}::HUGEINT * {_pow10(f'{t_exp} - {e}')}), TRUE) END""")
        r_int, r_exp = _mantissa(rule.rel_tol)
        if r_int:  # d <= r * 10^r_exp * m
            if r_exp >= 0:
                tests.append(f"coalesce({d} <= TRY({r_int}::HUGEINT * {m} * {_pow10(str(r_exp))}), TRUE)")
            else:  # d * 10^-r_exp <= r * m; an overflow on one side only decides
                lhs = add("rel_l", f"TRY({d} * {_pow10(str(-r_exp))})")
                rhs = add("rel_r", f"TRY({r_int}::HUGEINT * {m})")
                tests.append(f"CASE WHEN {lhs} IS NULL THEN FALSE WHEN {rhs} IS NULL THEN TRUE ELSE {lhs} <= {rhs} END")
                overflow.append(f"({lhs} IS NULL AND {rhs} IS NULL)")
        agree = f"({' OR '.join(tests)})"
        # Pairs too wide for 38 digits (1e30 against 1e-20) are compared by their text.
        too_wide = f"{col('a_cls')} = 'num' AND {col('b_cls')} = 'num' AND ({' OR '.join(overflow)})"
        for side in "ab":
            add(f"{side}_class", f"CASE WHEN {too_wide} THEN 'wide' ELSE {col(side + '_cls')} END")
        add("agree", agree)
        for what, integer in (("diff", d), ("mag", m)):  # as doubles, for severity rules (none beyond their range)
            value = f"TRY_CAST(CAST({integer} AS VARCHAR) || 'e' || {e} AS DOUBLE)"
            add(what, f"CASE WHEN isfinite({value}) THEN {value} END")
        add("diff_text", _decimal_text(d, e))
        add("tol_text", _tolerance_text(rule, col("mag")))

    def _float_pair(self, type_a: str, type_b: str) -> None:
        add, col, rule = self._add, self._col, self.rule
        va, vb = col("a_val"), col("b_val")
        diff = add("diff", f"abs({va} - {vb})")
        mag = add("mag", f"greatest(abs({va}), abs({vb}))")
        tol = add("tol", f"greatest({_double(rule.abs_tol)}, {_double(rule.rel_tol)} * {mag})")
        allowance = [f"{FLOAT_ULPS} * {_ulp(f'greatest({mag}, {tol})')}"]
        for side, duck_type, scale in (("a", type_a, rule.scale_a), ("b", type_b, rule.scale_b)):
            if duck_type in ("FLOAT", "REAL"):  # a 32-bit float carries only its own precision
                own = f"abs(CAST({col(side + '_dbl')} AS FLOAT))"
                ulp32 = f"(CAST(nextafter({own}, 'inf'::FLOAT) AS DOUBLE) - CAST({own} AS DOUBLE))"
                allowance.append(ulp32 if scale == 1.0 else f"{ulp32} * {_double(scale)}")
        add("agree", f"{diff} <= {tol} + {' + '.join(allowance)}")
        add("diff_text", f"CAST(round({diff}, 9) AS VARCHAR)")
        add("tol_text", f"CAST(round({tol}, 9) AS VARCHAR)")
        for side in "ab":
            add(f"{side}_class", col(side + "_cls"))


def hash_operand(rule, column: str, own_type: str, other_type: str, side: str) -> str:
    """What one side hashes for the fast equality check. Equal hashes must imply agreement,
    so both sides hash the same representation: the value itself when the types are equal,
    a common exact type for two numbers (a DECIMAL wide enough for both, or DOUBLE when a side
    is floating point and the rule compares in doubles anyway), text otherwise; the instant for
    naive timestamps read in different zones; the scaled number when the sides count in
    different units. Values whose operand cannot be trusted are left to ``unsettled``.

    Returns one or more comma-separated arguments of DuckDB's ``hash()`` (see ``hash_args``: a
    128-bit value is hashed with its double beside it); a 128-bit operand beyond 64 bits is never
    settled by hash (``unsettled``)."""
    operand, operand_type = _hash_form(rule, column, own_type, other_type, side)
    if operand_type == "UUID":  # 128 bits too, and no sign to tell its halves apart
        return f"CAST({operand} AS VARCHAR)"
    return hash_args(operand, operand_type)


def _hash_form(rule, column: str, own_type: str, other_type: str, side: str) -> tuple[str, str]:
    """The value one side hashes, and its DuckDB type."""
    if isinstance(rule, TimestampRule) and _sides_read_differently(rule):
        return _instant(rule, column, own_type, side), "TIMESTAMP WITH TIME ZONE"
    if isinstance(rule, NumericRule):
        if rule.scale_a != rule.scale_b:  # 4250 cents == 42.50 dollars
            operand, _ = _scaled_operand(rule, column, own_type, other_type, side)
            return operand, _scaled_type(rule, own_type, other_type, side)
        if own_type != other_type and _is_number_type(own_type) and _is_number_type(other_type):
            if _is_float(own_type) or _is_float(other_type):
                return f"CAST({column} AS DOUBLE)", "DOUBLE"  # what the float comparison reads
            common = _common_decimal(own_type, other_type)
            if common:
                return f"CAST({column} AS {common})", common
    if _same_type(own_type, other_type):
        return column, own_type
    return f"CAST({column} AS VARCHAR)", "VARCHAR"


def _is_wide(duck_type: str) -> bool:
    """A 128-bit integer or a DECIMAL stored as one (more than 18 digits)."""
    if duck_type in ("HUGEINT", "UHUGEINT"):
        return True
    return duck_type.startswith("DECIMAL(") and int(duck_type[8:].split(",")[0]) > 18


def _beyond_64_bits(operand: str, duck_type: str) -> str:
    """SQL true when a wide operand's unscaled integer needs more than 64 bits (see hash_operand)."""
    limit = Decimal(2**63).scaleb(-_fraction_digits(duck_type) if duck_type.startswith("DECIMAL") else 0)
    return f"abs({operand}) >= CAST({sql_literal(format(limit, 'f'))} AS {duck_type})"


def hash_args(expr: str, duck_type: str) -> str:
    """``expr`` as arguments of DuckDB's ``hash()``. DuckDB hashes a 128-bit integer (HUGEINT,
    and a DECIMAL of more than 18 digits) as the XOR of the hashes of its two 64-bit halves, so
    0 and -1 hash alike (and 1 and 2^64, and -0.02 and 0.01 at scale 2): the value as a double is
    hashed beside it, which tells such values apart."""
    return f"{expr}, CAST({expr} AS DOUBLE)" if _is_wide(duck_type) else expr


def unsettled(rule, column: str, own_type: str, other_type: str, side: str) -> str | None:
    """SQL true when equal hashes cannot settle ``column``'s value, or None when they always can:
    a value the rule cannot read (a type mismatch: evaluation reports it even when both sides
    hold the same text, and two unreadable timestamps would hash as the same null instant), or
    a scaled number whose hashed operand is not exact (a non-finite double, a text with more
    digits than the hashed decimal keeps, an overflow)."""
    tests = []
    if isinstance(rule, NumericRule) and not _is_number_type(own_type):
        tests.append(f"{_double_of(column, own_type)} IS NULL")
    elif isinstance(rule, TimestampRule) and not (own_type.startswith("TIMESTAMP") or own_type == "DATE"):
        tests.append(f"{_instant(rule, column, own_type, side)} IS NULL")  # epochs too: out of range, NaN or inf
    if isinstance(rule, NumericRule) and rule.scale_a != rule.scale_b:
        operand, loose = _scaled_operand(rule, column, own_type, other_type, side)
        tests.append(f"NOT isfinite({operand})" if _float_mode(own_type, other_type) else f"{operand} IS NULL")
        tests += [loose] if loose else []
    operand, operand_type = _hash_form(rule, column, own_type, other_type, side)
    if _is_wide(operand_type):
        tests.append(_beyond_64_bits(operand, operand_type))
    return f"({column} IS NOT NULL AND ({' OR '.join(tests)}))" if tests else None


def _scaled_operand(rule: NumericRule, column: str, own_type: str, other_type: str, side: str) -> tuple[str, str | None]:
    """The scaled value one side hashes when the scales differ, and SQL true when that value
    may be inexact (a text with more fraction digits than the hashed decimal keeps)."""
    scale = rule.scale_a if side == "a" else rule.scale_b
    if _float_mode(own_type, other_type):  # exactly the product the float comparison computes
        return f"({_double_of(column, own_type)} * {_double(scale)})", None
    types = {"a": own_type if side == "a" else other_type, "b": other_type if side == "a" else own_type}
    target = max(_fraction_digits(types[s]) + _scale_digits(getattr(rule, f"scale_{s}")) for s in "ab")
    own_digits, scale_digits = _fraction_digits(own_type), _scale_digits(scale)
    if own_digits + scale_digits > EXACT_DIGITS or target > EXACT_DIGITS:
        return "CAST(NULL AS DOUBLE)", "TRUE"  # never settled by hash; evaluation decides
    factor = f"CAST({sql_literal(_plain(scale))} AS DECIMAL({EXACT_DIGITS}, {scale_digits}))"
    if _is_number_type(own_type):
        value, loose = f"TRY_CAST({column} AS DECIMAL({EXACT_DIGITS}, {own_digits}))", None
    else:
        text = f"trim(CAST({column} AS VARCHAR), {sql_literal(WHITESPACE)})"
        value = f"TRY_CAST({text} AS DECIMAL({EXACT_DIGITS}, {own_digits}))"
        loose = f"NOT regexp_full_match({text}, '[+-]?[0-9]*(\\.[0-9]{{0,{own_digits}}})?')"
    return f"TRY(CAST({value} * {factor} AS DECIMAL({EXACT_DIGITS}, {target})))", loose


def _scaled_type(rule: NumericRule, own_type: str, other_type: str, side: str) -> str:
    """The type of ``_scaled_operand``'s value (DOUBLE for its float product and its NULL)."""
    if _float_mode(own_type, other_type):
        return "DOUBLE"
    types = {"a": own_type if side == "a" else other_type, "b": other_type if side == "a" else own_type}
    target = max(_fraction_digits(types[s]) + _scale_digits(getattr(rule, f"scale_{s}")) for s in "ab")
    own = _fraction_digits(own_type) + _scale_digits(rule.scale_a if side == "a" else rule.scale_b)
    return f"DECIMAL({EXACT_DIGITS}, {target})" if max(target, own) <= EXACT_DIGITS else "DOUBLE"


def _fraction_digits(duck_type: str) -> int:
    """Digits after the point a side's values carry when hashed exactly."""
    if duck_type.startswith("DECIMAL"):
        return int(duck_type.split(",")[1].rstrip(") "))
    return 0 if duck_type in _INT_DIGITS or duck_type == "BOOLEAN" else _TEXT_HASH_DIGITS


def _common_decimal(type_a: str, type_b: str) -> str | None:
    """A DECIMAL holding every value of two integer/decimal types exactly, if there is one."""
    shapes = []
    for duck_type in (type_a, type_b):
        if duck_type in _INT_DIGITS:
            shapes.append((_INT_DIGITS[duck_type], 0))
        else:
            width, scale = (int(x) for x in duck_type[duck_type.index("(") + 1:-1].split(","))
            shapes.append((width - scale, scale))
    scale = max(s for _, s in shapes)
    if max(i for i, _ in shapes) + scale > EXACT_DIGITS:
        return None
    return f"DECIMAL({EXACT_DIGITS}, {scale})"


def _exact_equal(a: str, b: str, type_a: str, type_b: str) -> str:
    """``exact`` without aliases: the same type natively; two integers/decimals as numbers
    (42 = 42.00); a float against a number in the float's own precision (42 = 42.0, 0.1
    DECIMAL = 0.1 DOUBLE, 0 = -0.0); anything else as text."""
    if _same_type(type_a, type_b):
        return f"{a} = {b}"
    families = {_family(type_a), _family(type_b)}
    if families <= {"int", "decimal"}:
        return f"{_canonical_number(a, type_a)} = {_canonical_number(b, type_b)}"
    if families <= {"int", "decimal", "float"}:
        precision = "FLOAT" if "FLOAT" in (type_a, type_b) or "REAL" in (type_a, type_b) else "DOUBLE"
        return f"{_rounded(a, type_a, precision)} = {_rounded(b, type_b, precision)}"
    return f"CAST({a} AS VARCHAR) = CAST({b} AS VARCHAR)"


def _rounded(x: str, duck_type: str, precision: str) -> str:
    """``x`` rounded to the nearest FLOAT/DOUBLE: decimals and 128-bit integers through their
    text, which DuckDB converts with correct rounding."""
    if duck_type.startswith("DECIMAL") or duck_type in ("HUGEINT", "UHUGEINT"):
        return f"CAST(CAST({x} AS VARCHAR) AS {precision})"
    return f"CAST({x} AS {precision})"


def _family(duck_type: str) -> str:
    if duck_type in _INT_DIGITS:
        return "int"
    if duck_type.startswith("DECIMAL"):
        return "decimal"
    return "float" if _is_float(duck_type) else "other"


def _canonical_number(x: str, duck_type: str) -> str:
    """Decimal text without trailing fraction zeros: 42.50 -> '42.5', 42.00 -> '42'."""
    text = f"CAST({x} AS VARCHAR)"
    return f"(CASE WHEN contains({text}, '.') THEN rtrim(rtrim({text}, '0'), '.') ELSE {text} END)" if duck_type.startswith("DECIMAL") else text


def _is_number_type(duck_type: str) -> bool:
    return duck_type in _INT_DIGITS or _is_float(duck_type) or duck_type.startswith("DECIMAL")


def _is_float(duck_type: str) -> bool:
    return duck_type in _FLOAT_TYPES


def _float_mode(type_a: str, type_b: str) -> bool:
    return _is_float(type_a) or _is_float(type_b)


def _same_type(type_a: str, type_b: str) -> bool:
    return type_a == type_b


def _double_of(x: str, duck_type: str) -> str:
    """A side's value as a double (NULL when it is not a number), as the float comparison reads it."""
    if _is_number_type(duck_type):
        return f"CAST({x} AS DOUBLE)"
    if duck_type == "BOOLEAN":  # a flag is not an amount
        return "CAST(NULL AS DOUBLE)"
    return f"TRY_CAST(trim(CAST({x} AS VARCHAR), {sql_literal(WHITESPACE)}) AS DOUBLE)"


def _mantissa(value: float) -> tuple[int, int]:
    """(m, e) with value == m * 10**e exactly, for the decimal the spec wrote (0.01 -> (1, -2))."""
    sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    if not any(digits):
        return 0, 0
    return (-1 if sign else 1) * int("".join(map(str, digits))), int(exponent)


def _scale_digits(scale: float) -> int:
    return max(0, -_mantissa(scale)[1])


def _plain(value: float) -> str:
    return format(Decimal(repr(float(value))).normalize(), "f")


def _double(value: float) -> str:
    if not math.isfinite(value):  # the spec refuses them; never write inf/nan into SQL
        raise ValueError(f"not a finite number: {value!r}")
    return f"CAST({float(value)!r} AS DOUBLE)"


def _pow10(exponent: str) -> str:
    """10^k as HUGEINT for 0 <= k <= 38, else NULL (an overflow)."""
    return (f"(CASE WHEN ({exponent}) BETWEEN 0 AND {EXACT_DIGITS} "
            f"THEN CAST('1' || repeat('0', CAST(({exponent}) AS BIGINT)) AS HUGEINT) END)")


def _ulp(x: str) -> str:
    """The gap from a non-negative double to the next one (the largest finite gap at the top)."""
    return f"(CASE WHEN isinf(nextafter({x}, 'inf'::DOUBLE)) THEN {2.0 ** 971!r} ELSE nextafter({x}, 'inf'::DOUBLE) - {x} END)"


def _decimal_text(d: str, e: str) -> str:
    """Plain decimal text of d * 10^e (d >= 0), e.g. (2, -2) -> '0.02'."""
    s = f"CAST({d} AS VARCHAR)"
    padded = f"lpad({s}, CAST(-({e}) + 1 AS INTEGER), '0')"
    whole = f"left({padded}, CAST(length({padded}) + ({e}) AS INTEGER))"
    frac = f"rtrim(right({padded}, CAST(-({e}) AS INTEGER)), '0')"
    return f"""(CASE WHEN {d} IS NULL THEN NULL WHEN {d} = 0 THEN '0'
        WHEN {e} BETWEEN 0 AND 20 THEN {s} || repeat('0', CAST({e} AS BIGINT))
        WHEN {e} BETWEEN -40 AND -1 THEN {whole} || CASE WHEN {frac} = '' THEN '' ELSE '.' || {frac} END
        ELSE {s} || 'e' || CAST({e} AS VARCHAR) END)"""


def _tolerance_text(rule: NumericRule, magnitude: str) -> str:
    if not rule.rel_tol:
        return sql_literal(_plain(rule.abs_tol))
    return f"CAST(round(greatest({_double(rule.abs_tol)}, {_double(rule.rel_tol)} * {magnitude}), 9) AS VARCHAR)"


def _class_label(cls: str) -> str:
    return f"CASE {cls} WHEN 'nan' THEN 'NaN' WHEN '+inf' THEN '+inf' WHEN '-inf' THEN '-inf' ELSE 'a finite number' END"


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
