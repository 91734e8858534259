"""Suggested matches (engine/suggest.py): scored pairs of records no key paired, decided by an
operator, and used by the next run. Labels come from the generator (benchmarks/linkage_data.py),
never from the engine."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.linkage_data import labelled_set
from recon_pipelines import pipeline
from recon_pipelines.engine import Side, compare, suggest
from recon_pipelines.spec import load_spec
from recon_pipelines.tracker import Scope, Tracker
from recon_pipelines.tracker.lifecycle import TransitionError
from recon_pipelines.tracker.matches import decide, decided_pairs

COLUMNS = ["email", "first_name", "last_name", "birth_date", "phone", "city"]
SPEC = """
name: customers_by_email
source_a: {{type: file, path: {a}, name: crm}}
source_b: {{type: file, path: {b}, name: billing}}
key: email
fields:
  - {{name: first_name, compare: exact}}
  - {{name: last_name, compare: exact}}
  - {{name: birth_date, compare: exact}}
  - {{name: phone, compare: exact}}
  - {{name: city, compare: exact}}
suggest:
  compare:
    - {{field: first_name, similarity: name}}
    - {{field: last_name, similarity: name}}
    - birth_date
    - {{field: phone, similarity: exact}}
    - city
{extra}
"""


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("linkage")
    data = labelled_set(customers=1000, seed=11)
    a, b = write_csv(folder / "crm.csv", data.crm), write_csv(folder / "billing.csv", data.billing)
    return data, a, b, folder


def spec_file(folder: Path, a: Path, b: Path, extra: str = "", name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(SPEC.format(a=a, b=b, extra=extra), encoding="utf-8")
    return path


def suggested(rows) -> set[tuple[str, str]]:
    return {(r["value_a"], r["value_b"]) for r in rows if r["kind"] == "suggested_match"}


def test_recon_run_suggests_the_labelled_pairs_with_high_precision_and_recall(labelled):
    data, a, b, folder = labelled
    proc = subprocess.run([sys.executable, "-m", "recon_pipelines.cli", "run", str(spec_file(folder, a, b)),
                           "--format", "json", "--tracker-url", f"sqlite:///{folder / 'absent.sqlite'}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    got = suggested(rows)
    true = got & data.truth
    assert len(true) / len(got) >= 0.95  # precision (measured 0.99: benchmarks/README.md)
    assert len(true) / len(data.truth) >= 0.95  # recall
    assert "suggested pairs" in proc.stderr
    assert not (folder / "absent.sqlite").exists()  # an untracked run reads decisions, never creates a tracker


def test_suggestions_leave_every_other_discrepancy_as_it_was(labelled):
    data, a, b, folder = labelled
    with_suggest = pipeline.run(load_spec(spec_file(folder, a, b)))
    plain_spec = load_spec(spec_file(folder, a, b)).model_copy(update={"suggest": None})
    plain = pipeline.run(plain_spec)
    others = with_suggest.discrepancies.filter(pa.compute.not_equal(with_suggest.discrepancies["kind"], "suggested_match"))
    assert sorted(others.column("id").to_pylist()) == sorted(plain.discrepancies.column("id").to_pylist())
    # Each labelled pair is still reported as missing on both sides until someone decides.
    only_a = {r["key"] for r in plain.discrepancies.to_pylist() if r["kind"] == "only_in_a"}
    only_b = {r["key"] for r in plain.discrepancies.to_pylist() if r["kind"] == "only_in_b"}
    assert all(ka in only_a and kb in only_b for ka, kb in data.truth)


def test_confirming_pairs_the_records_on_the_next_run_and_rejecting_stops_the_suggestion(labelled, tracker_url):
    data, a, b, folder = labelled
    spec = load_spec(spec_file(folder, a, b))
    tracker = Tracker(tracker_url)
    first = pipeline.run(spec, tracker=tracker, run_id="run-1")
    rows = {(r["value_a"], r["value_b"]): r for r in first.discrepancies.to_pylist() if r["kind"] == "suggested_match"}
    right = sorted(set(rows) & data.truth)
    confirm, reject = right[0], right[1]
    decide(tracker, rows[confirm]["id"], "confirmed", "tester", note="same birth date and phone")
    decide(tracker, rows[reject]["id"], "rejected", "tester")
    assert decided_pairs(tracker, spec.name, "confirmed") == [confirm]

    second = pipeline.run(spec, tracker=tracker, run_id="run-2")
    after = second.discrepancies.to_pylist()
    keys = {(r["kind"], r["key"]) for r in after}
    # The confirmed pair is compared as one record: neither side is missing any more ...
    assert ("only_in_a", confirm[0]) not in keys and ("only_in_b", confirm[1]) not in keys
    # ... and the rejected one stays unmatched, no longer suggested.
    assert ("only_in_a", reject[0]) in keys and ("only_in_b", reject[1]) in keys
    assert not suggested(after) & {confirm, reject}
    by_key = {(r["kind"], r["key"]): r for r in tracker.discrepancies(spec.name)}
    assert by_key[("only_in_a", confirm[0])]["status"] == "resolved"
    assert by_key[("only_in_a", reject[0])]["status"] != "resolved"
    history = tracker.history(rows[confirm]["id"])
    assert history[-1]["actor"] == "tester" and "confirmed" in history[-1]["note"]


def test_a_record_is_confirmed_with_one_counterpart_only(tmp_path, labelled):
    data, a, b, folder = labelled
    spec = load_spec(spec_file(folder, a, b))
    tracker = Tracker(f"sqlite:///{tmp_path / 't.sqlite'}")
    first = pipeline.run(spec, tracker=tracker, run_id="run-1")
    rows = [r for r in first.discrepancies.to_pylist() if r["kind"] == "suggested_match"]
    one = rows[0]
    decide(tracker, one["id"], "confirmed", "tester")
    # A second suggestion naming the same A record (made up here as the engine would report it).
    other = dict(one, id="f" * 24, key=f"{one['value_a']} ↔ someone-else", value_b="someone-else")
    tracker.apply_run(spec.name, run_id="run-x", found=pa.Table.from_pylist([other], schema=first.discrepancies.schema),
                      scope=Scope.of_keys([]))
    with pytest.raises(TransitionError, match="already confirmed"):
        decide(tracker, other["id"], "confirmed", "tester")
    with pytest.raises(TransitionError, match="not a suggested match"):
        only = next(r for r in first.discrepancies.to_pylist() if r["kind"] == "only_in_b")
        decide(tracker, only["id"], "confirmed", "tester")


def test_cli_confirm_and_the_untracked_run_that_follows(tmp_path, labelled):
    data, a, b, folder = labelled
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    spec = spec_file(folder, a, b)
    cli = [sys.executable, "-m", "recon_pipelines.cli"]
    tracked = subprocess.run([*cli, "run", str(spec), "--track", "--tracker-url", url, "--format", "json"],
                             capture_output=True, text=True, timeout=600)
    assert tracked.returncode == 1, tracked.stderr
    listed = subprocess.run([*cli, "suggestions", "--tracker-url", url, "list", "--format", "json"],
                            capture_output=True, text=True, timeout=120)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    pick = next(r for r in rows if (r["value_a"], r["value_b"]) in data.truth)
    done = subprocess.run([*cli, "suggestions", "--tracker-url", url, "confirm", pick["id"], "--note", "checked"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "confirmed" in done.stdout, done.stderr
    again = subprocess.run([*cli, "suggestions", "--tracker-url", url, "confirm", pick["id"]],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "resolved" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    untracked = subprocess.run([*cli, "run", str(spec), "--tracker-url", url, "--format", "json"],
                               capture_output=True, text=True, timeout=600)
    keys = {(json.loads(line)["kind"], json.loads(line)["key"]) for line in untracked.stdout.splitlines()}
    assert ("only_in_a", pick["value_a"]) not in keys and ("only_in_b", pick["value_b"]) not in keys


def test_past_max_pairs_nothing_is_scored_unless_blocked(labelled):
    data, a, b, folder = labelled
    bounded = load_spec(spec_file(folder, a, b, "  max_pairs: 10", name="bounded.yaml"))
    result = pipeline.run(bounded)
    assert not suggested(result.discrepancies.to_pylist())
    assert "max_pairs" in result.suggestions["skipped"]
    blocked = load_spec(spec_file(folder, a, b, "  max_pairs: 10\n  block_on: [birth_date]", name="blocked.yaml"))
    result = pipeline.run(blocked)
    got = suggested(result.discrepancies.to_pylist())
    crm, billing = {r["email"]: r for r in data.crm}, {r["email"]: r for r in data.billing}
    assert got and all(crm[ka]["birth_date"] == billing[kb]["birth_date"] for ka, kb in got)  # scored within blocks only
    unmatched = result.counts_by_kind["only_in_a"] * result.counts_by_kind["only_in_b"]
    assert 0 < result.suggestions["scored_pairs"] < unmatched / 10


def test_a_confirmed_pair_rekeys_integer_keys(tmp_path):
    a = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["Ann", "Bo", "Cy"]})
    b = pa.table({"id": pa.array([1, 2, 30], pa.int64()), "name": ["Ann", "Bo", "Cy"]})
    pq.write_table(a, tmp_path / "a.parquet")
    pq.write_table(b, tmp_path / "b.parquet")
    path = tmp_path / "s.yaml"
    path.write_text(f"""
name: ints
source_a: {{type: file, path: {tmp_path / 'a.parquet'}}}
source_b: {{type: file, path: {tmp_path / 'b.parquet'}}}
key: id
fields: [{{name: name, compare: exact}}]
suggest: {{compare: [name]}}
""")
    spec = load_spec(path)
    side_a = Side(f"read_parquet('{tmp_path / 'a.parquet'}')", {"id": "id", "name": "name"})
    side_b = Side(f"read_parquet('{tmp_path / 'b.parquet'}')", {"id": "id", "name": "name"})
    assert compare(spec, side_a, side_b).counts_by_kind == {"only_in_a": 1, "only_in_b": 1}
    assert compare(spec, side_a, suggest.rekeyed(spec, side_b, [("3", "30")])).counts_by_kind == {}


@pytest.mark.parametrize("extra, message", [
    ("  block_on: [nickname]", "suggest.block_on: unknown field"),
    ("sample: {fraction: 0.5}", "suggest: a sample"),
])
def test_bad_suggest_specs_name_the_field(tmp_path, extra, message):
    path = spec_file(tmp_path, tmp_path / "a.csv", tmp_path / "b.csv", extra)
    proc = subprocess.run([sys.executable, "-m", "recon_pipelines.cli", "validate", "--offline", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr + proc.stdout


def test_the_triage_page_confirms_a_suggestion_as_the_signed_in_operator(tmp_path):
    from recon_pipelines.engine import DISCREPANCY_SCHEMA
    from recon_pipelines_tests.web_server import RECON, csrf_of, running, seed, signed_in

    tracker = Tracker(f"sqlite:///{tmp_path / 'web.sqlite'}")
    seed(tracker)
    suggestion = {"id": "s" * 24, "reconciliation": RECON, "kind": "suggested_match", "key": "c-1 ↔ b-9",
                  "reason": "suggested_match", "value_a": "c-1", "value_b": "b-9", "severity": "info",
                  "detail": "match probability 0.981: name equal, city differs"}
    tracker.apply_run(RECON, "run-2", pa.Table.from_pylist([suggestion], schema=DISCREPANCY_SCHEMA),
                      scope=Scope.of_keys([]))
    with running(tracker) as base:
        viewer = signed_in(base, "victor")
        page = viewer.get(f"/d/{suggestion['id']}")
        assert "confirm match" not in page.text  # a viewer reads only
        assert viewer.post("/suggestions", data={"csrf": csrf_of(page.text), "id": suggestion["id"],
                                                 "decision": "confirmed"}).status_code == 403
        operator = signed_in(base, "alice")
        page = operator.get(f"/d/{suggestion['id']}")
        assert "confirm match" in page.text
        form = {"csrf": csrf_of(page.text), "id": suggestion["id"], "decision": "confirmed", "note": "same person",
                "back": f"/d/{suggestion['id']}"}
        assert operator.post("/suggestions", data=form).status_code == 303
    assert decided_pairs(tracker, RECON, "confirmed") == [("c-1", "b-9")]
    last = tracker.history(suggestion["id"])[-1]
    assert (last["actor"], last["to_status"]) == ("alice", "resolved") and "same person" in last["note"]


def test_the_demo_customers_whose_email_differs_are_suggested_exactly(tmp_path, monkeypatch):
    import recon_pipelines
    from recon_pipelines.demo.generate import generate_demo, load_ground_truth

    data = tmp_path / "demo"
    generate_demo(data)
    truth = {tuple(pair) for pair in load_ground_truth(data)["suggested_matches"]["crm_contacts_by_email"]}
    assert len(truth) == 5
    monkeypatch.setenv("RECON_DEMO_DATA", str(data))
    spec = load_spec(Path(recon_pipelines.__file__).parent / "examples" / "crm_contacts_by_email.yaml")
    result = pipeline.run(spec)
    assert suggested(result.discrepancies.to_pylist()) == truth
    # Each pair is still reported missing on both sides: a suggestion resolves nothing by itself.
    keys = {(r["kind"], r["key"]) for r in result.discrepancies.to_pylist()}
    assert all(("only_in_a", a) in keys and ("only_in_b", b) in keys for a, b in truth)
