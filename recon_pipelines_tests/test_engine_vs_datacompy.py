"""Differential test against datacompy on the rules both express, over a few thousand random rows.

Where the two tools mean the same thing:
- ``numeric`` with only ``abs_tol``, on finite doubles: datacompy's ``np.isclose(a, b, atol=t,
  rtol=0)`` is |a - b| <= t, as ours. Ours adds a few ulps for the rounding of doubles and
  np.isclose does not, so rows within 1e-9 of the boundary are left out; the values are
  continuous, so such rows are rare.
- ``numeric`` with only ``rel_tol``: datacompy measures it against the second frame only
  (|a - b| <= r * |b|), ours against the larger magnitude (r * max(|a|, |b|)). They coincide
  where |b| >= |a|, and only those rows are compared.
- ``exact`` on strings, and ``string`` with ``normalize: [trim, lower]`` against datacompy's
  ``ignore_spaces=True, ignore_case=True`` (ASCII text and ASCII blanks only, where Python's
  strip and upper-casing agree with ours). datacompy applies these flags to every string column,
  so each string setting is its own datacompy run.
- Nulls: a null on both sides agrees, a null on one side differs, in both tools.
"""

from __future__ import annotations

import datacompy
import numpy as np
import pandas as pd
import pyarrow as pa

from recon_pipelines_tests.test_engine_rules import make_spec, run

ROWS = 3000
ABS_TOL, REL_TOL = 0.01, 0.001


def _sides(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = np.arange(ROWS)
    amount = rng.uniform(-1e7, 1e7, ROWS) * rng.choice([1e-4, 1.0], ROWS)
    ratio = rng.uniform(-1e3, 1e3, ROWS)
    shift = rng.choice([0.0, 0.002, 0.008, 0.012, 0.5], ROWS) * rng.choice([-1, 1], ROWS)
    rel = rng.choice([0.0, 0.0005, 0.00099, 0.00101, 0.01], ROWS) * rng.choice([-1, 1], ROWS)
    words = np.array(["alpha", "Beta", "GAMMA", "delta", "epsilon"])
    name = words[rng.integers(0, 5, ROWS)]
    other_name = np.where(rng.random(ROWS) < 0.1, words[rng.integers(0, 5, ROWS)], name)
    label = words[rng.integers(0, 5, ROWS)]
    pad = np.array(["", " ", "\t", "  \n"])
    other_label = [
        (pad[rng.integers(0, 4)] + (w.upper() if rng.random() < 0.3 else w) + pad[rng.integers(0, 4)])
        if rng.random() > 0.1 else words[rng.integers(0, 5)]
        for w in label
    ]
    a = pd.DataFrame({"id": ids, "amount": amount, "ratio": ratio, "name": name, "label": label})
    b = pd.DataFrame({"id": ids, "amount": amount + shift, "ratio": ratio * (1 + rel), "name": other_name, "label": other_label})
    for frame in (a, b):  # some nulls on each side
        for column in ("amount", "ratio", "name", "label"):
            frame.loc[rng.random(ROWS) < 0.02, column] = None
    return a, b


def _datacompy_mismatches(a: pd.DataFrame, b: pd.DataFrame, column: str, **options) -> set[int]:
    compare = datacompy.PandasCompare(a[["id", column]], b[["id", column]], join_columns="id", **options)
    rows = compare.intersect_rows
    return set(rows.loc[~rows[f"{column}_match"], "id"].astype(int))


def test_engine_agrees_with_datacompy_where_their_rules_coincide():
    a, b = _sides(seed=20261129)
    spec = make_spec(fields={
        "amount": {"compare": "numeric", "abs_tol": ABS_TOL},
        "ratio": {"compare": "numeric", "rel_tol": REL_TOL},
        "name": "exact",
        "label": {"compare": "string", "normalize": ["trim", "lower"]},
    })
    result = run(spec, pa.Table.from_pandas(a, preserve_index=False), pa.Table.from_pandas(b, preserve_index=False))
    ours: dict[str, set[int]] = {}
    for row in result.discrepancies.to_pylist():
        ours.setdefault(row["field"], set()).add(int(row["key"]))

    amount_theirs = _datacompy_mismatches(a, b, "amount", abs_tol=ABS_TOL)
    near = set(a["id"][(np.abs(np.abs(a["amount"] - b["amount"]) - ABS_TOL) <= 1e-9).to_numpy()])
    assert ours["amount"] - near == amount_theirs - near
    ratio_theirs = _datacompy_mismatches(a, b, "ratio", rel_tol=REL_TOL)
    coincide = set(a["id"][(b["ratio"].abs() >= a["ratio"].abs()) | a["ratio"].isna() | b["ratio"].isna()])
    assert ours["ratio"] & coincide == ratio_theirs & coincide
    assert ours["name"] == _datacompy_mismatches(a, b, "name")
    assert ours["label"] == _datacompy_mismatches(a, b, "label", ignore_spaces=True, ignore_case=True)
    # The data exercises both outcomes of every rule.
    for field in ("amount", "ratio", "name", "label"):
        assert 30 < len(ours[field]) < ROWS - 30, field
