"""``sample:``: a deterministic key-hash sample, the same keys on both sides and in every run with
the same seed; the mismatch rate with a 95% Wilson interval; and a sampled run resolves nothing
it did not draw."""

from __future__ import annotations

import math

import pytest

from recon_pipelines import pipeline, sampling
from recon_pipelines import pipeline
from recon_pipelines.snapshots import direct_side
from recon_pipelines.spec import parse_spec
from recon_pipelines.spec.loader import SpecError
from recon_pipelines.tracker import Tracker

N = 2000
BAD = set(range(0, N, 7))  # keys whose amount differs on B


def _write(folder, bad=BAD) -> None:
    (folder / "a.csv").write_text("id,amount\n" + "".join(f"{i},{i}\n" for i in range(N)))
    (folder / "b.csv").write_text("ref,amount\n" + "".join(f"{i},{i + 1 if i in bad else i}\n" for i in range(N)))


def _spec(folder, **sample):
    return parse_spec({"name": "sampled", "key": [{"name": "id", "b": "ref"}], "fields": {"amount": "exact"},
                       "source_a": {"type": "file", "path": str(folder / "a.csv")},
                       "source_b": {"type": "file", "path": str(folder / "b.csv")},
                       **({"sample": sample} if sample else {})})


def _keys(spec) -> tuple[set[str], set[str]]:
    a, b = direct_side(spec, "a"), direct_side(spec, "b")
    below = sampling.threshold(spec, a, b)
    picked = []
    for side in (a, b):
        s = sampling.sampled(spec, side, below)
        picked.append(set(sampling.sampled_keys(spec, s, s)))
    return picked[0], picked[1]


def test_the_same_keys_on_both_sides_and_across_runs(tmp_path):
    _write(tmp_path)
    spec = _spec(tmp_path, fraction=0.1, seed=42)
    a, b = _keys(spec)
    assert a == b and 100 < len(a) < 300  # about 10% of 2000
    assert _keys(_spec(tmp_path, fraction=0.1, seed=42)) == (a, b)
    other, _ = _keys(_spec(tmp_path, fraction=0.1, seed=7))
    assert other != a and len(other & a) < len(a) / 2
    # rows: N draws exactly N keys, the same on each side.
    a20, b20 = _keys(_spec(tmp_path, rows=20, seed=42))
    assert a20 == b20 and len(a20) == 20


def _reference_wilson(x: int, n: int) -> tuple[float, float]:
    # Wilson (1927): (p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = Phi^-1(0.975)
    z = 1.96  # the textbook's rounded value
    p = x / n
    denominator = 1 + z ** 2 / n
    centre = p + z ** 2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2))
    return (centre - spread) / denominator, (centre + spread) / denominator


@pytest.mark.parametrize("x, n", [(0, 10), (3, 10), (10, 10), (29, 200), (1, 1000)])
def test_wilson_interval_against_the_textbook_formula(x, n):
    low, high = sampling.wilson(x, n)
    ref_low, ref_high = _reference_wilson(x, n)
    assert low == pytest.approx(ref_low, abs=2e-4) and high == pytest.approx(ref_high, abs=2e-4)
    assert low <= x / n <= high


def test_run_reports_the_sample_and_its_interval(tmp_path):
    _write(tmp_path)
    spec = _spec(tmp_path, fraction=0.1, seed=42)
    result = pipeline.run(spec)
    keys, _ = _keys(spec)
    expected_bad = {k for k in keys if int(k) in BAD}
    assert set(result.discrepancies.column("key").to_pylist()) == expected_bad
    s = result.summary()["sample"]
    assert (s["keys_sampled"], s["keys_with_discrepancy"]) == (len(keys), len(expected_bad))
    low, high = _reference_wilson(len(expected_bad), len(keys))
    assert s["mismatch_rate_ci95_low"] == pytest.approx(low, abs=2e-4)
    assert s["mismatch_rate_ci95_high"] == pytest.approx(high, abs=2e-4)
    assert result.match.rows_a == len(keys)


def _tracked_run(spec, tmp_path, tracker, run_id):
    scope = pipeline.RunScope.full()
    folder = pipeline.RunFolder.of(tmp_path / "runs" / run_id, spec, scope)
    for side in "ab":
        pipeline.take_snapshot(spec, side, scope, folder)
    pipeline.match_pairs(spec, folder)
    pipeline.find_discrepancies(spec, folder)
    return pipeline.update_tracker(spec, folder, scope, tracker, run_id)


def test_a_sampled_run_resolves_only_keys_it_drew(tmp_path):
    _write(tmp_path)
    tracker = Tracker(f"sqlite:///{tmp_path / 't.sqlite'}")
    full = _spec(tmp_path)
    _tracked_run(full, tmp_path, tracker, "full-1")
    open_keys = {r["key"] for r in tracker.discrepancies("sampled") if r["status"] in ("new", "open")}
    assert open_keys == {str(k) for k in BAD}
    _write(tmp_path, bad=set())  # everything fixed on B
    sampled_spec = _spec(tmp_path, fraction=0.1, seed=42)
    drawn, _ = _keys(sampled_spec)
    outcome = _tracked_run(sampled_spec, tmp_path, tracker, "sample-1")
    assert outcome.held is None  # no export guard on a sample
    still_open = {r["key"] for r in tracker.discrepancies("sampled") if r["status"] in ("new", "open")}
    assert still_open == {str(k) for k in BAD} - drawn  # outside the sample: still open
    assert drawn & {str(k) for k in BAD}  # and the sample did resolve some


def test_spec_refuses_both_sizes_and_a_key_mapping(tmp_path):
    with pytest.raises(SpecError, match="exactly one of fraction or rows"):
        _spec(tmp_path, fraction=0.1, rows=5)
    with pytest.raises(SpecError, match="sample"):
        parse_spec({"name": "m", "key": "id", "fields": {}, "sample": {"rows": 5},
                    "source_a": {"type": "file", "path": "a.csv"}, "source_b": {"type": "file", "path": "b.csv"},
                    "key_mapping": {"source": {"type": "file", "path": "m.csv"}, "a": "x", "b": "y"}})


def test_composite_keys_are_drawn_alike_and_match_the_discrepancy_keys(tmp_path):
    (tmp_path / "a.csv").write_text("region,id,amount\n" + "".join(f"r{i % 3},{i},{i}\n" for i in range(600)))
    (tmp_path / "b.csv").write_text("region,id,amount\n" + "".join(f"r{i % 3},{i},{i + (i % 5 == 0)}\n" for i in range(600)))
    spec = parse_spec({"name": "comp", "key": ["region", "id"], "fields": {"amount": "exact"}, "sample": {"fraction": 0.2},
                       "source_a": {"type": "file", "path": str(tmp_path / "a.csv")},
                       "source_b": {"type": "file", "path": str(tmp_path / "b.csv")}})
    result = pipeline.run(spec)
    s = result.summary()["sample"]
    found = set(result.discrepancies.column("key").to_pylist())
    assert result.match.rows_a == result.match.rows_b == result.match.matched == s["keys_sampled"]
    assert found and s["keys_with_discrepancy"] == len(found)  # the sample's keys are the engine's keys


def test_dagster_discrepancies_asset_shows_the_sample(tmp_path):
    import dagster as dg

    from recon_pipelines.dagster_defs import build_definitions
    from recon_pipelines.dagster_defs.resources import ReconResource

    _write(tmp_path)
    spec = _spec(tmp_path, rows=50, seed=3)
    defs = build_definitions(specs=[spec], recon=ReconResource(storage_dir=str(tmp_path / "s"),
                                                                tracker_url=f"sqlite:///{tmp_path / 't.sqlite'}"))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("reconcile_sampled").execute_in_process(instance=instance)
    (meta,) = [e.materialization.metadata for e in result.get_asset_materialization_events()
               if e.materialization.asset_key.path[-1] == "discrepancies"]
    assert meta["sample/keys_sampled"].value == 50
    x = meta["sample/keys_with_discrepancy"].value
    assert meta["discrepancies"].value == x
    assert meta["sample/mismatch_rate_ci95_low"].value <= x / 50 <= meta["sample/mismatch_rate_ci95_high"].value
