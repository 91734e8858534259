"""Seeded two-sided data that exercises every rule type, for the Spark engine's tests.

Side B is side A with drift planted in chosen rows: each kind of change lands either within a
rule (a tolerance, the lag, a normalisation, an alias, an allowed null) or beyond it, plus
one-sided rows, duplicate keys and null/blank keys on both sides. ``PLANTED`` lists what was
planted, so a test can check that the data really exercises each rule.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

FIELDS = {
    "status": {"compare": "exact", "values": {"active": ["ACTIVE", "A"]}},
    "plan": "exact",
    "amount": {"compare": "numeric", "abs_tol": 0.01},
    "ratio": {"compare": "numeric", "rel_tol": 0.001},
    "qty": {"compare": "numeric"},
    "price_text": {"compare": "numeric", "abs_tol": 0.005},
    "updated_at": {"compare": "timestamp", "lag": "60s"},
    "seen_epoch": {"compare": "timestamp", "lag": "5s"},
    "email": {"compare": "string", "normalize": ["trim", "lower"]},
    "note": {"compare": "exact", "nulls": {"both_null": "differ"}},
    "country": {"compare": "exact", "nulls": {"allow_null_in": ["b"]}},
    "is_paying": "exact",
}


def generate(rows: int, folder: Path, seed: int = 7, fmt: str = "parquet") -> dict[str, Path]:
    """Write a.<fmt> and b.<fmt> into ``folder``; returns their paths."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:08d}" for i in range(rows)], dtype=object)
    a = {
        "id": ids.copy(),
        "status": rng.choice(np.array(["active", "closed", "paused"], dtype=object), rows),
        "plan": rng.choice(np.array(["free", "pro", "team"], dtype=object), rows),
        "amount": [Decimal(int(c)).scaleb(-2) for c in rng.integers(0, 10_000_000, rows)],
        "ratio": rng.random(rows) * 100,
        "qty": rng.integers(0, 1000, rows).astype(np.int32),
        "price_text": np.array([f"{v / 100:.2f}" for v in rng.integers(0, 100_000, rows)], dtype=object),
        "updated_at": (np.datetime64("2026-01-01T00:00:00", "us")
                       + rng.integers(0, 300 * 86400, rows).astype("timedelta64[s]")),
        "seen_epoch": rng.integers(1_700_000_000, 1_800_000_000, rows),
        "email": np.array([f"user{i}@example.com" for i in range(rows)], dtype=object),
        "note": np.where(rng.random(rows) < 0.02, None, "ok").astype(object),
        "country": rng.choice(np.array(["DE", "FR", "US", None], dtype=object), rows, p=[0.3, 0.3, 0.39, 0.01]),
        "is_paying": rng.random(rows) < 0.5,
    }
    a["price_text"][rng.choice(rows, rows // 500, replace=False)] = "n/a"  # unreadable on both sides
    b = {name: np.array(values, dtype=object) if not isinstance(values, np.ndarray) else values.copy()
         for name, values in a.items()}
    b["qty"] = b["qty"].astype(np.int64)  # B counts in a wider integer: compared as numbers

    def pick(share: float) -> np.ndarray:
        return rng.choice(rows, max(1, int(rows * share)), replace=False)

    for i in pick(0.003):
        b["status"][i] = rng.choice(["ACTIVE", "A"]) if a["status"][i] == "active" else "active"
    b["plan"][pick(0.003)] = "enterprise"
    for i in pick(0.003):
        b["amount"][i] = a["amount"][i] + Decimal("0.01")  # at the tolerance: agrees
    for i in pick(0.003):
        b["amount"][i] = a["amount"][i] + Decimal("1.50")
    within, beyond = pick(0.003), pick(0.003)
    b["ratio"][within] *= 1.0005
    b["ratio"][beyond] *= 1.01
    b["qty"][pick(0.003)] += 1
    for i in pick(0.003):
        b["price_text"][i] = f" {a['price_text'][i]} "  # padded: the same number
    b["price_text"][pick(0.002)] = "12.345"
    b["updated_at"][pick(0.003)] += np.timedelta64(30, "s")
    b["updated_at"][pick(0.003)] += np.timedelta64(2, "h")
    b["seen_epoch"][pick(0.003)] += 3
    b["seen_epoch"][pick(0.003)] += 3600
    for i in pick(0.003):
        b["email"][i] = f"  {a['email'][i].upper()}"
    for i in pick(0.003):
        b["email"][i] = f"other{i}@example.com"
    b["note"][pick(0.002)] = None
    b["country"][pick(0.003)] = None  # allowed on B
    a_null_country = pick(0.002)
    b["is_paying"][pick(0.003)] ^= True

    keep = np.ones(rows, dtype=bool)
    keep[pick(0.004)] = False  # only in A
    table_a = _table(a)
    a_country = table_a.column("country").to_pylist()
    for i in a_null_country:
        a_country[i] = None  # a null on A facing a value: a discrepancy
    table_a = table_a.set_column(table_a.schema.get_field_index("country"), "country", pa.array(a_country, pa.string()))
    table_b = _table(b).filter(pa.array(keep))
    extra = _table({k: v[:max(1, rows // 250)] for k, v in b.items()})  # only in B: new ids
    extra = extra.set_column(0, "id", pa.array([f"N{i:08d}" for i in range(extra.num_rows)], pa.string()))
    table_b = pa.concat_tables([table_b, extra])

    # Duplicate keys on each side, and null or blank keys (every kind of whitespace).
    table_a = pa.concat_tables([table_a, table_a.slice(10, 3), _with_ids(table_a.slice(20, 4), [None, "", " \t", "\u00a0"])])
    table_b = pa.concat_tables([table_b, table_b.slice(40, 2), table_b.slice(40, 1), _with_ids(table_b.slice(50, 3), [None, None, "\n"])])
    order = rng.permutation(table_b.num_rows)
    table_b = table_b.take(pa.array(order))

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for side, table in (("a", table_a), ("b", table_b)):
        path = folder / f"{side}.{fmt}"
        if fmt == "parquet":
            pq.write_table(table, path, row_group_size=32 * 1024)
        else:
            import pyarrow.csv as pacsv

            pacsv.write_csv(table, path)
        paths[side] = path
    return paths


def _table(columns: dict) -> pa.Table:
    types = {"id": pa.string(), "status": pa.string(), "plan": pa.string(), "amount": pa.decimal128(12, 2),
             "ratio": pa.float64(), "qty": None, "price_text": pa.string(), "updated_at": pa.timestamp("us"),
             "seen_epoch": pa.int64(), "email": pa.string(), "note": pa.string(), "country": pa.string(),
             "is_paying": pa.bool_()}
    arrays = {}
    for name, values in columns.items():
        if name == "qty":
            arrays[name] = pa.array(values)
        else:
            arrays[name] = pa.array(list(values) if types[name] in (pa.string(), pa.decimal128(12, 2)) else values, types[name])
    return pa.table(arrays)


def _with_ids(table: pa.Table, ids: list) -> pa.Table:
    return table.set_column(0, "id", pa.array(ids, pa.string()))


def write_spec(folder: Path, paths: dict[str, Path], name: str = "spark_every_rule", engine: dict | None = None) -> Path:
    spec = {
        "name": name,
        "source_a": {"type": "file", "path": str(paths["a"])},
        "source_b": {"type": "file", "path": str(paths["b"])},
        "key": "id",
        "fields": FIELDS,
    }
    if engine:
        spec["engine"] = engine
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path
