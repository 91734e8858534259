"""The payments example: app ledger (CSV) vs a processor's paginated transactions API,
served by a real HTTP server on 127.0.0.1 that rate-limits and fails like the real thing."""

from __future__ import annotations

from pathlib import Path

import pytest

import recon_pipelines
from recon_pipelines import pipeline
from recon_pipelines.spec import load_spec
from recon_pipelines_tests.http_fakes import fake_records_api

SPEC = Path(recon_pipelines.__file__).parent / "examples" / "payments_vs_processor.yaml"
TOKEN = "sk_test_do-not-log-me"

LEDGER = """payment_id,amount,currency,status,captured_at
p1,42.50,usd,captured,2026-11-20T10:00:00Z
p2,10.00,USD,captured,2026-11-20T10:05:00Z
p3,99.99,EUR,refunded,2026-11-20T11:00:00Z
p4,700.00,USD,captured,2026-11-20T12:00:00Z
p5,5.00,USD,captured,2026-11-20T12:30:00Z
"""


def processor_records() -> list[dict]:
    records = [
        {"id": "tx_1", "payment_ref": "p1", "amount_cents": 4250, "currency": "USD", "status": "succeeded", "created": "2026-11-20T10:01:00Z"},
        {"id": "tx_2", "payment_ref": "p2", "amount_cents": 1001, "currency": "USD", "status": "SUCCEEDED", "created": "2026-11-20T10:05:00Z"},
        {"id": "tx_3", "payment_ref": "p3", "amount_cents": 9999, "currency": "EUR", "status": "refunded", "created": "2026-11-20T13:00:00Z"},
        {"id": "tx_4", "payment_ref": "p4", "amount_cents": 50000, "currency": "USD", "status": "succeeded", "created": "2026-11-20T12:00:00Z"},
        {"id": "tx_9", "payment_ref": "p9", "amount_cents": 100, "currency": "USD", "status": "succeeded", "created": "2026-11-20T14:00:00Z"},
    ]
    # Padding so the API really paginates (cursor, 100 per page): 250 agreeing payments.
    return records + [
        {"id": f"tx_x{i}", "payment_ref": f"x{i}", "amount_cents": 100 + i, "currency": "USD", "status": "succeeded",
         "created": "2026-11-20T15:00:00Z"}
        for i in range(250)
    ]


@pytest.fixture
def ledger(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "ledger.csv"
    path.write_text(LEDGER + "".join(f"x{i},{(100 + i) / 100:.2f},USD,captured,2026-11-20T15:00:00Z\n" for i in range(250)))
    monkeypatch.setenv("PAYMENTS_LEDGER", str(path))
    monkeypatch.setenv("PROCESSOR_API_TOKEN", TOKEN)
    return path


def test_payments_reconcile_against_a_paginated_api(ledger, monkeypatch):
    with fake_records_api(processor_records(), style="cursor", page_size=100, token=TOKEN, path="/v1/transactions") as api:
        monkeypatch.setenv("PROCESSOR_API_URL", api.url)
        api.fail_next(429, headers={"Retry-After": "0"})  # rate limited once, then served
        api.fail_next(500)                                # and one server error: retried
        result = pipeline.run(load_spec(SPEC))
    found = {(r["kind"], r["key"], r["field"]): r for r in result.discrepancies.to_pylist()}
    assert set(found) == {
        ("field_mismatch", "p2", "amount"),       # 10.00 vs 1001 cents
        ("field_mismatch", "p3", "captured_at"),  # two hours apart, lag is 5 minutes
        ("field_mismatch", "p4", "amount"),       # 700.00 vs 500.00
        ("only_in_a", "p5", None),                # captured in the app, unknown to the processor
        ("only_in_b", "p9", None),
    }
    assert found[("only_in_a", "p5", None)]["severity"] == "critical"
    assert found[("field_mismatch", "p4", "amount")]["severity"] == "critical"  # a $200 difference
    assert found[("field_mismatch", "p2", "amount")]["severity"] == "info"      # a cent
    assert result.match.matched == 254
    pages = [r for r in api.requests if r.path == "/v1/transactions"]
    assert len(pages) == 3 + 2  # three pages, plus the 429 and the 500
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in pages)


def test_a_processor_that_stays_down_fails_with_a_clear_error(ledger, monkeypatch):
    from recon_pipelines.sources.base import SourceError

    with fake_records_api(processor_records(), style="cursor", token=TOKEN, path="/v1/transactions") as api:
        monkeypatch.setenv("PROCESSOR_API_URL", api.url)
        api.fail_next(503, headers={"Retry-After": "0"}, times=20)
        spec = load_spec(SPEC)
        spec = spec.model_copy(update={"source_b": spec.source_b.model_copy(update={"max_retries": 2, "max_backoff": 0.01})})
        with pytest.raises(SourceError) as excinfo:
            pipeline.run(spec)
    message = str(excinfo.value)
    assert "processor" in message and "503" in message and TOKEN not in message


# --------------------------------------------------------------------------- payouts against charges (match: rules)

PAYOUTS_SPEC = Path(recon_pipelines.__file__).parent / "examples" / "payouts_vs_charges.yaml"


def _seeded(tmp_path, monkeypatch, seed: int):
    from recon_pipelines.examples.payouts import generate

    truth = generate(tmp_path / "payouts", seed=seed)
    monkeypatch.setenv("PAYOUTS_DATA", str(tmp_path / "payouts"))
    return truth


@pytest.mark.parametrize("seed", [17, 2026])
def test_payouts_find_exactly_the_seeded_gaps(tmp_path, monkeypatch, seed):
    """Split payments, fees, a missing charge, an ambiguous pair: the generator's ground truth,
    no more, no less; the gap of the missing charge to the cent (Python's decimal)."""
    from decimal import Decimal

    truth = _seeded(tmp_path, monkeypatch, seed)
    result = pipeline.run(load_spec(PAYOUTS_SPEC))
    found = {(r["kind"], r["key"]): r for r in result.discrepancies.to_pylist()}
    assert set(found) == set(truth.expected)
    for (kind, key), gap in truth.expected.items():
        if gap is not None:
            assert Decimal(str(found[(kind, key)]["difference"])) == gap
    groups = result.groups
    assert (groups.groups_mismatched, groups.ambiguous, groups.unmatched_a, groups.unmatched_b) == (1, 1, 1, 1)
    assert groups.window_matches == 6 + 2  # the unreferenced charges' payouts and the split payments
    assert result.match.matched == 40  # the direct charges, by key


def test_recon_run_reports_the_new_kinds_and_exits_1(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from recon_pipelines.cli import main as recon

    truth = _seeded(tmp_path, monkeypatch, 17)
    result = CliRunner().invoke(recon, ["run", str(PAYOUTS_SPEC), "--format", "json"])
    assert result.exit_code == 1, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {(r["kind"], r["key"]) for r in rows} == set(truth.expected)
    assert "1 with sums that differ" in result.stderr and "1 ambiguous" in result.stderr


def test_group_discrepancies_keep_their_ids_in_the_tracker(tmp_path, monkeypatch):
    """Tracked twice: the same ids (from the group reference, or the sorted members), seen again."""
    from recon_pipelines.tracker import Tracker

    truth = _seeded(tmp_path, monkeypatch, 17)
    tracker = Tracker(f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    spec = load_spec(PAYOUTS_SPEC)
    first = pipeline.run(spec, tracker=tracker, run_id="run-1")
    second = pipeline.run(spec, tracker=tracker, run_id="run-2")
    assert len(first.outcome.new_ids) == len(truth.expected)
    assert second.outcome.new_ids == [] and second.outcome.resolved_ids == []
    assert sorted(first.discrepancies.column("id").to_pylist()) == sorted(second.discrepancies.column("id").to_pylist())
    assert first.summary()["groups"]["groups_mismatched"] == 1


def test_the_asset_graph_counts_groups_and_reports_the_seeded_gaps(tmp_path, monkeypatch):
    import dagster as dg

    from recon_pipelines.dagster_defs import build_definitions
    from recon_pipelines.dagster_defs.resources import ReconResource

    truth = _seeded(tmp_path, monkeypatch, 17)
    recon = ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    defs = build_definitions(specs=[load_spec(PAYOUTS_SPEC)], recon=recon)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("reconcile_payouts_vs_charges").execute_in_process(instance=instance)
    assert result.success
    meta = {e.materialization.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}
    pairs = meta["matched_pairs"]
    assert (pairs["groups/groups_matched"], pairs["groups/groups_mismatched"], pairs["groups/ambiguous"],
            pairs["groups/unmatched_a"], pairs["groups/unmatched_b"]) == (120, 1, 1, 1, 1)
    found = meta["discrepancies"]
    assert found["discrepancies"] == len(truth.expected)
    assert (found["kind/group_mismatch"], found["kind/ambiguous_match"], found["kind/unmatched_a"]) == (1, 1, 1)
    assert meta["tracker_state"]["new"] == len(truth.expected)
