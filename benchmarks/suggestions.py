"""Suggested matches (engine/suggest.py): precision and recall on a labelled set.

    .venv/bin/python -m benchmarks.suggestions [--customers 2000,20000]

The set (benchmarks/linkage_data.py) keys customers by email; 5% changed their email in the
CRM, with a typo in the surname, swapped first and last names, a missing phone or another
city on top, and 4% exist on one side only (half of them relatives of a changed customer:
same surname, home phone and city). Precision: the share of suggested pairs that are labelled
pairs; recall: the share of labelled pairs suggested. Each configuration compares fewer fields.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.linkage_data import labelled_set
from recon_pipelines.engine import Side, compare, suggest
from recon_pipelines.spec import load_spec

FIELDS = ["first_name", "last_name", "birth_date", "phone", "city"]
SIMILARITY = {"first_name": "name", "last_name": "name", "phone": "exact", "birth_date": "text", "city": "text"}
CONFIGURATIONS = {
    "names, birth date, phone, city": FIELDS,
    "names, birth date, city": ["first_name", "last_name", "birth_date", "city"],
    "names, city": ["first_name", "last_name", "city"],
}


def spec_for(folder: Path, compared: list[str], threshold: float):
    fields = "\n".join(f"  - {{name: {f}, compare: exact}}" for f in FIELDS)
    compare_fields = ", ".join(f"{{field: {f}, similarity: {SIMILARITY[f]}}}" for f in compared)
    path = folder / "spec.yaml"
    path.write_text(f"""name: by_email
source_a: {{type: file, path: {folder / 'crm.parquet'}}}
source_b: {{type: file, path: {folder / 'billing.parquet'}}}
key: email
fields:
{fields}
suggest: {{compare: [{compare_fields}], threshold: {threshold}, per_record: 1}}
""")
    return load_spec(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", default="2000,20000")
    parser.add_argument("--thresholds", default="0.5,0.9,0.99")
    args = parser.parse_args()
    print("| customers | unmatched A x B | compared fields | threshold | suggested | precision | recall | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for customers in (int(float(c)) for c in args.customers.split(",")):
        data = labelled_set(customers)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            pq.write_table(pa.Table.from_pylist(data.crm), folder / "crm.parquet")
            pq.write_table(pa.Table.from_pylist(data.billing), folder / "billing.parquet")
            columns = {c: c for c in ["email", *FIELDS]}
            side_a = Side(f"read_parquet('{folder / 'crm.parquet'}')", columns)
            side_b = Side(f"read_parquet('{folder / 'billing.parquet'}')", columns)
            for label, compared in CONFIGURATIONS.items():
                for threshold in (float(t) for t in args.thresholds.split(",")):
                    spec = spec_for(folder, compared, threshold)
                    unmatched = suggest.unmatched_keys(compare(spec, side_a, side_b).discrepancies)
                    started = time.perf_counter()
                    found = suggest.suggest(spec, side_a, side_b, *unmatched)
                    seconds = time.perf_counter() - started
                    got = {(p.key_a, p.key_b) for p in found.pairs}
                    right = len(got & data.truth)
                    print(f"| {customers:,} | {len(unmatched[0])} x {len(unmatched[1])} | {label} | {threshold} | "
                          f"{len(got)} | {right / max(len(got), 1):.3f} | {right / len(data.truth):.3f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
