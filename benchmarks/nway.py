"""N-way engine cost, as ratios to the two-source engine on the same files.

    .venv/bin/python -m benchmarks.nway --rows 1e6 [--repeat 3]

Uses the benchmark's data (benchmarks/generate.py: a.parquet, b.parquet, 2% drift) as systems:
N=3 is (a, b, a'), N=4 (a, b, a', b'), where a' and b' are copies, so the discrepancies are those
of A against B. Reports the fastest of ``--repeat`` runs of:

- ``pairwise``: engine.compare(a, b), the two-source engine;
- ``nway N``: engine.nway.compare_systems over N systems, one pass;
- ``pairwise x C(N,2)``: what N-way by pairwise runs would cost (the pairwise time times the pairs).

Each N-way run is also checked against the pairwise engine's A-vs-B result (the copies add no
discrepancy of their own): AGREES when the (key, field) sets are equal.
"""

from __future__ import annotations

import argparse
import shutil
import time
from math import comb

from benchmarks import generate as gen


def main(argv: list[str] | None = None) -> None:
    from recon_pipelines.engine import Side, compare, side_columns
    from recon_pipelines.engine.nway import compare_systems
    from recon_pipelines.spec import parse_spec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=1e6)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    rows = int(args.rows)
    gen.ensure(rows)
    folder = gen.data_dir(rows)
    for copy, of in (("c.parquet", "a.parquet"), ("d.parquet", "b.parquet")):
        if not (folder / copy).exists():
            shutil.copy(folder / of, folder / copy)
    files = {"a": "a.parquet", "b": "b.parquet", "c": "c.parquet", "d": "d.parquet"}
    scan = lambda name: f"read_parquet('{folder / files[name]}')"  # noqa: E731

    def fastest(run) -> float:
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return min(times)

    pair_spec = parse_spec({"name": "bench", "source_a": {"type": "file", "path": str(folder / "a.parquet")},
                            "source_b": {"type": "file", "path": str(folder / "b.parquet")}, "key": "id",
                            "fields": gen.SPEC_FIELDS})
    found: dict = {}
    pairwise = fastest(lambda: found.update(pair=compare(pair_spec, Side(scan("a"), side_columns(pair_spec, "a")),
                                                         Side(scan("b"), side_columns(pair_spec, "b")))))
    pair_rows = found["pair"].discrepancies.to_pylist()
    # What A against B reports, in N-way terms: the same (key, field) pairs, the same missing keys.
    expected = {(r["key"], r["field"]) for r in pair_rows if r["kind"] == "field_mismatch"}
    expected |= {(r["key"], None) for r in pair_rows if r["kind"] in ("only_in_a", "only_in_b")}
    print(f"rows per system: {rows:,}")
    print(f"pairwise (two-source engine): {pairwise:.2f} s")
    for n in (3, 4):
        systems = list(files)[:n]
        spec = parse_spec({"name": "bench", "sources": {s: {"type": "file", "path": str(folder / files[s])} for s in systems},
                           "key": "id", "fields": gen.SPEC_FIELDS})
        seconds = fastest(lambda: found.update(nway=compare_systems(spec, {s: Side(scan(s), spec.columns_of(s), s)
                                                                            for s in systems})))
        got = {(r["key"], r["field"]) for r in found["nway"].discrepancies.to_pylist()}
        print(f"  N={n}: {'AGREES with' if got == expected else 'DIFFERS from'} the pairwise engine's A vs B "
              f"({len(got):,} discrepancies)")
        pairs = comb(n, 2)
        print(f"nway N={n}: {seconds:.2f} s = {seconds / pairwise:.1f}x one pairwise run; "
              f"{pairs} pairwise runs would take {pairs:.0f}x ({seconds / (pairwise * pairs):.2f} of that)")


if __name__ == "__main__":
    main()
