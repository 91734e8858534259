"""Three or more systems in one reconciliation (issue 16): the spec, the engine against a reference
written independently in plain Python (Decimal arithmetic, no SQL), and `recon run`."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from recon_pipelines.cli import main as recon
from recon_pipelines.nway_pipeline import run_nway
from recon_pipelines.spec import SpecError, load_spec, parse_spec

TOL = Decimal("0.05")
AMOUNTS = ["10.00", "10.03", "10.06", "10.09"]  # steps of 0.03 against a 0.05 tolerance: never on the boundary
PLAN_ALIASES = {"a": ["A", "alpha"], "b": ["B", "beta"]}
NOTES = ["Foo", " foo", "bar", "BAR ", "baz"]


# --------------------------------------------------------------------------- random systems and their spec


def _systems(n: int) -> list[str]:
    return ["crm", "billing", "warehouse", "ledger"][:n]


def _make_data(tmp_path: Path, n: int, seed: int) -> dict[str, list[dict]]:
    """Per system: records under the spec's names (key, amount, plan, note), written to Parquet
    under column names of the system's own; a few invalid and duplicate keys."""
    rng = random.Random(seed)
    data: dict[str, list[dict]] = {}
    for i, system in enumerate(_systems(n)):
        rows = []
        for key in range(1, 61):
            if rng.random() < 0.15:
                continue
            plan = rng.choice(list(PLAN_ALIASES))
            rows.append({
                "key": key,
                "amount": None if rng.random() < 0.1 else rng.choice(AMOUNTS),
                "plan": rng.choice([plan, *PLAN_ALIASES[plan]]),
                "note": None if rng.random() < 0.05 else rng.choice(NOTES),
            })
        if rng.random() < 0.7:
            rows.append({"key": None, "amount": "1.00", "plan": "a", "note": "x"})
        if rng.random() < 0.7:
            rows.append(dict(rng.choice(rows[:-1])))  # a duplicate key
        data[system] = rows
        table = pa.table({f"id_{i}": pa.array([r["key"] for r in rows], pa.int64()),
                          f"amount_{i}": pa.array([r["amount"] for r in rows], pa.string()),
                          f"plan_{i}": pa.array([r["plan"] for r in rows], pa.string()),
                          f"note_{i}": pa.array([r["note"] for r in rows], pa.string())})
        pq.write_table(table, tmp_path / f"{system}.parquet")
    return data


def _spec(tmp_path: Path, n: int) -> dict:
    systems = _systems(n)

    def columns(name: str) -> dict:
        return {s: f"{name}_{i}" for i, s in enumerate(systems)}

    return {
        "name": "random_systems",
        "sources": {s: {"type": "file", "path": str(tmp_path / f"{s}.parquet")} for s in systems},
        "key": {"name": "key", "columns": columns("id")},
        "fields": {
            "amount": {"compare": "numeric", "abs_tol": float(TOL), "columns": columns("amount"),
                       "system_of_record": [systems[1], systems[0]], "nulls": {"allow_null_in": [systems[2]]}},
            "plan": {"compare": "exact", "values": PLAN_ALIASES, "columns": columns("plan")},
            "note": {"compare": "string", "normalize": ["trim", "lower"], "columns": columns("note"),
                     "system_of_record": systems[2]},
        },
    }


# --------------------------------------------------------------------------- the reference


def _agree(field: str, spec: dict, x: str, vx, y: str, vy) -> bool:
    allowed = spec["fields"][field].get("nulls", {}).get("allow_null_in", [])
    if vx is None and vy is None:
        return True
    if vx is None or vy is None:
        return (vx is None and x in allowed) or (vy is None and y in allowed)
    if field == "amount":
        return abs(Decimal(vx) - Decimal(vy)) <= TOL
    if field == "plan":
        canonical = {alias: name for name, aliases in PLAN_ALIASES.items() for alias in [name, *aliases]}
        return canonical.get(vx, vx) == canonical.get(vy, vy)
    return vx.strip().lower() == vy.strip().lower()


def _reference(spec: dict, data: dict[str, list[dict]]) -> set[tuple]:
    systems = list(spec["sources"])
    expected: set[tuple] = set()
    per_system: dict[str, dict[int, dict]] = {}
    duplicated: set[int] = set()
    for s in systems:
        counts: dict[int, int] = {}
        for row in data[s]:
            if row["key"] is None:
                continue
            counts[row["key"]] = counts.get(row["key"], 0) + 1
        for key, count in counts.items():
            if count > 1:
                duplicated.add(key)
                expected.add(("duplicate_key_in_system", str(key), None, "duplicate_key", s, s, None))
        if any(row["key"] is None for row in data[s]):
            expected.add(("invalid_key_in_system", "<null>", None, "invalid_key", s, s, None))
        per_system[s] = {row["key"]: row for row in data[s] if row["key"] is not None}
    keys = sorted(set().union(*per_system.values()) - duplicated)
    n = len(systems)
    for key in keys:
        holders = [s for s in systems if key in per_system[s]]
        if len(holders) < n:
            lacking = [s for s in systems if s not in holders]
            if 2 * len(holders) > n:
                reason, odd = "missing_in_some", lacking
            elif 2 * len(holders) < n:
                reason, odd = "only_in_some", holders
            else:
                reason, odd = "split", []
            expected.add(("missing_in_systems", str(key), None, reason, ",".join(holders), ",".join(odd) or None, None))
        if len(holders) < 2:
            continue
        for field, options in spec["fields"].items():
            value = {s: per_system[s][key][field] for s in holders}
            agree = {(x, y): _agree(field, spec, x, value[x], y, value[y]) for x in holders for y in holders}
            sor = options.get("system_of_record", [])
            sor = [sor] if isinstance(sor, str) else sor
            ranked = [s for s in sor if s in holders]
            if ranked:
                reference, reason = ranked[0], "differs_from_system_of_record"
            else:
                scores = {x: sum(agree[x, y] for y in holders) for x in holders}
                best = max(scores.values())
                reference = next(x for x in holders if scores[x] == best) if 2 * best > len(holders) else None
                reason = "differs_from_majority" if reference else "no_majority"
            if reference is None:
                if all(agree[x, y] for x in holders for y in holders):
                    continue
                odd = []
            else:
                odd = [x for x in holders if x != reference and not agree[x, reference]]
                if not odd:
                    continue
            expected.add(("systems_disagree", str(key), field, reason, ",".join(holders), ",".join(odd) or None, reference))
    return expected


COLUMNS = ("kind", "key", "field", "reason", "systems", "odd_ones_out", "reference_system")


@pytest.mark.parametrize("n, seed", [(3, 1), (3, 2), (3, 3), (4, 4), (4, 5), (4, 6)])
def test_engine_matches_the_plain_python_reference(tmp_path, n, seed):
    data = _make_data(tmp_path, n, seed)
    raw = _spec(tmp_path, n)
    result = run_nway(parse_spec(raw, source_file=tmp_path / "spec.yaml"))
    rows = result.discrepancies.to_pylist()
    got = {tuple(row[c] for c in COLUMNS) for row in rows}
    assert len(got) == len(rows)  # one row per verdict
    want = _reference(raw, data)
    assert got == want
    kinds = {row[0] for row in want}
    assert {"systems_disagree", "missing_in_systems"} <= kinds  # the random data exercised the verdicts
    # The largest difference between the reference and an odd one out, in Decimal.
    for row in rows:
        if row["kind"] == "systems_disagree" and row["field"] == "amount" and row["odd_ones_out"]:
            values = json.loads(row["system_values"])
            reference = Decimal(values[row["reference_system"]] or "0")
            gaps = [abs(Decimal(values[s]) - reference) for s in row["odd_ones_out"].split(",")
                    if values[s] is not None and values[row["reference_system"]] is not None]
            if gaps:
                assert Decimal(str(row["difference"])) == max(gaps)


def test_ids_are_stable_and_distinct_from_pairwise_ids(tmp_path):
    from recon_pipelines.engine import discrepancy_id

    _make_data(tmp_path, 3, 7)
    spec = parse_spec(_spec(tmp_path, 3), source_file=tmp_path / "spec.yaml")
    first, second = run_nway(spec).discrepancies, run_nway(spec).discrepancies
    assert first.column("id").to_pylist() == second.column("id").to_pylist()
    ids = first.column("id").to_pylist()
    assert len(set(ids)) == len(ids)
    pairwise = {discrepancy_id(spec.name, k, key, f) for k, key, f in
                zip(first.column("kind").to_pylist(), first.column("key").to_pylist(), first.column("field").to_pylist())}
    assert not pairwise & set(ids)


def test_tolerance_is_judged_against_the_reference_never_chained(tmp_path):
    """10.00 ~ 10.03 ~ 10.06 with abs_tol 0.05: the middle one is the majority and nobody is odd;
    with the first as the system of record, the last is odd although it agrees with the middle."""
    for i, (system, amount) in enumerate((("crm", "10.00"), ("billing", "10.03"), ("warehouse", "10.06"))):
        pq.write_table(pa.table({"id": [1], "amount": [amount]}), tmp_path / f"{system}.parquet")
    raw = {"name": "chain", "sources": {s: {"type": "file", "path": str(tmp_path / f"{s}.parquet")}
                                        for s in ("crm", "billing", "warehouse")},
           "key": "id", "fields": {"amount": {"compare": "numeric", "abs_tol": 0.05}}}
    assert run_nway(parse_spec(raw, source_file=tmp_path / "s.yaml")).discrepancies.num_rows == 0
    raw["fields"]["amount"]["system_of_record"] = "crm"
    (row,) = run_nway(parse_spec(raw, source_file=tmp_path / "s.yaml")).discrepancies.to_pylist()
    assert (row["reference_system"], row["odd_ones_out"], row["reason"]) == ("crm", "warehouse", "differs_from_system_of_record")
    assert "the majority (crm, billing, warehouse)" not in row["detail"]  # every value agrees with the majority's


def test_a_key_mapping_translates_one_systems_ids(tmp_path):
    pq.write_table(pa.table({"id": [1, 2, 3], "plan": ["a", "b", "a"]}), tmp_path / "crm.parquet")
    pq.write_table(pa.table({"id": [1, 2, 3], "plan": ["a", "b", "b"]}), tmp_path / "billing.parquet")
    pq.write_table(pa.table({"wid": ["W1", "W2", "W3", "W9"], "plan": ["a", "b", "b", "a"]}), tmp_path / "warehouse.parquet")
    pq.write_table(pa.table({"customer": [1, 2, 3], "wh": ["W1", "W2", "W3"]}), tmp_path / "map.parquet")
    raw = {"name": "mapped", "sources": {s: {"type": "file", "path": str(tmp_path / f"{s}.parquet")}
                                         for s in ("crm", "billing", "warehouse")},
           "key": {"name": "id", "columns": {"warehouse": "wid"}},
           "key_mappings": {"warehouse": {"source": {"type": "file", "path": str(tmp_path / "map.parquet")},
                                          "key": "customer", "id": "wh"}},
           "fields": {"plan": "exact"}}
    rows = run_nway(parse_spec(raw, source_file=tmp_path / "s.yaml")).discrepancies.to_pylist()
    got = {(r["kind"], r["key"], r["odd_ones_out"]) for r in rows}
    assert got == {("systems_disagree", "3", "crm"), ("unmapped_in_system", "W9", "warehouse")}


# --------------------------------------------------------------------------- the spec


GOOD = {
    "name": "three",
    "sources": {"crm": {"type": "file", "path": "crm.csv"}, "billing": {"type": "file", "path": "billing.csv"},
                "warehouse": {"type": "file", "path": "warehouse.parquet"}},
    "key": {"name": "id", "columns": {"billing": "crm_id"}},
    "fields": {"plan": {"compare": "exact", "system_of_record": "billing"}},
}


def test_short_forms_fill_every_system():
    spec = parse_spec(GOOD)
    assert spec.key[0].columns == {"crm": "id", "billing": "crm_id", "warehouse": "id"}
    assert spec.field("plan").system_of_record == ["billing"]
    assert spec.field("plan").pair_rule("crm", "billing").a == "plan"


@pytest.mark.parametrize("change, message", [
    ({"fields": {"plan": {"system_of_record": "erp"}}}, "fields.plan.system_of_record: unknown system(s) 'erp'"),
    ({"key": {"name": "id", "columns": {"erp": "x"}}}, "key.id.columns: unknown system(s) 'erp'"),
    ({"fields": {"plan": {"nulls": {"allow_null_in": ["erp"]}}}}, "fields.plan.nulls.allow_null_in: unknown system(s)"),
    ({"fields": {"plan": {"abs_tol": 0.1}}}, "fields.plan.abs_tol: does not apply to compare: exact"),
    ({"key_mappings": {"erp": {"source": {"type": "file", "path": "m.csv"}, "key": "k", "id": "i"}}},
     "key_mappings: unknown system(s) 'erp'"),
    ({"sources": {"crm": {"type": "file", "path": "a.csv"}, "billing": {"type": "file", "path": "b.csv"}}},
     "sources: name 3 or more systems"),
    ({"source_a": {"type": "file", "path": "a.csv"}}, "source_a: a spec with sources: names every system there"),
])
def test_bad_specs_name_the_option(change, message):
    raw = {**GOOD, **change}
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    assert message in str(info.value)


def test_active_is_refused_on_two_sources():
    with pytest.raises(SpecError, match="source_a.active: active counts are an N-way summary"):
        parse_spec({"name": "two", "source_a": {"type": "file", "path": "a.csv", "active": "x = 1"},
                    "source_b": {"type": "file", "path": "b.csv"}, "key": "id"})


def test_recon_run_on_a_bad_spec_exits_2_with_one_line(tmp_path):
    file = tmp_path / "three.yaml"
    file.write_text(yaml.safe_dump({**GOOD, "fields": {"plan": {"system_of_record": "erp"}}}, sort_keys=False))
    result = CliRunner().invoke(recon, ["run", str(file)])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "fields.plan.system_of_record: unknown system(s) 'erp' (the systems are crm, billing, warehouse)" in result.stderr


# --------------------------------------------------------------------------- the demo


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    from recon_pipelines.demo import DEMO_DATA_ENV, generate_demo

    folder = tmp_path_factory.mktemp("nway_demo")
    truth = generate_demo(folder)
    patch = pytest.MonkeyPatch()
    patch.setenv(DEMO_DATA_ENV, str(folder))
    yield folder, truth
    patch.undo()


def test_recon_run_on_the_three_way_demo(demo_data, tmp_path):
    from recon_pipelines.demo import DEMO_SPECS_DIR

    _, truth = demo_data
    out = tmp_path / "found.json"
    result = CliRunner().invoke(recon, ["run", str(DEMO_SPECS_DIR / "customers_three_way.yaml"), "--format", "json",
                                        "-o", str(out)])
    assert result.exit_code == 1, result.output
    counts = truth["active_counts"]
    assert result.output.splitlines()[0] == (
        f"active: crm {counts['crm']} / billing {counts['billing']} / warehouse {counts['warehouse']}")
    assert (counts["crm"], counts["billing"], counts["warehouse"]) == (847, 839, 851)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = truth["reconciliations"]["customers_three_way"]["discrepancies"]
    assert len(rows) == len(expected) == truth["reconciliations"]["customers_three_way"]["total"]
    columns = (*COLUMNS, "severity")
    assert {tuple(r[c] for c in columns) for r in rows} == {tuple(d[c] for c in columns) for d in expected}
    by_triple = {(r["kind"], r["key"], r["field"]): r for r in rows}
    for item in expected:
        if "difference" in item:  # the generator's own amounts (Decimal), against the engine's
            assert by_triple[item["kind"], item["key"], item["field"]]["difference"] == pytest.approx(item["difference"], abs=1e-6)
    for system in ("crm", "billing", "warehouse"):  # each is named where it is involved, and odd somewhere
        assert any(system in (r["odd_ones_out"] or "").split(",") for r in rows)
    # The breakdown explains the gaps: per pair of systems, the records active in one and not the
    # other, summed over the lines, are the difference of their counts.
    lines = [line.strip() for line in result.output.splitlines()[1:] if line.startswith("  ")]
    assert "5 active in crm, warehouse; missing in billing" in lines
    assert "4 active in warehouse; missing in crm, billing" in lines
    active_in = []
    for line in lines:
        if " active in " not in line:
            break
        number, _, rest = line.partition(" active in ")
        active_in.append((int(number), set(rest.split(";")[0].split(", "))))
    for one in counts:
        for other in counts:
            explained = sum(n for n, systems in active_in if one in systems) - sum(n for n, systems in active_in if other in systems)
            assert explained == counts[one] - counts[other], (one, other)


def test_the_three_way_demo_in_the_tracker(demo_data, tracker_url):
    from recon_pipelines.demo import DEMO_SPECS_DIR
    from recon_pipelines.tracker import Tracker

    url = tracker_url  # SQLite, and PostgreSQL (COPY into staging) where it runs
    spec_file = str(DEMO_SPECS_DIR / "customers_three_way.yaml")
    first = CliRunner().invoke(recon, ["run", spec_file, "--track", "--tracker-url", url])
    assert first.exit_code == 1, first.output
    assert "56 opened" in first.output
    again = CliRunner().invoke(recon, ["run", spec_file, "--track", "--tracker-url", url])
    assert "0 opened, 0 resolved, 56 open" in again.output  # the same ids: seen again, not new
    rows = Tracker(url).discrepancies(reconciliation="customers_three_way")
    status = {r["key"]: r for r in rows if r["kind"] == "systems_disagree" and r["field"] == "status"}
    assert {r["reference_system"] for r in status.values()} == {"billing"}
    assert {r["odd_ones_out"] for r in status.values()} == {"crm", "warehouse"}
    assert all(r["systems"] == "crm,billing,warehouse" for r in status.values())


def test_the_triage_page_shows_the_counts_per_system_and_the_odd_ones_out(demo_data, tmp_path):
    import html

    import httpx

    from recon_pipelines.demo import DEMO_SPECS_DIR
    from recon_pipelines.tracker import Tracker
    from recon_pipelines.web.app import Settings
    from recon_pipelines_tests.web_server import running

    _, truth = demo_data
    url = f"sqlite:///{tmp_path / 'tracker.sqlite'}"
    assert CliRunner().invoke(recon, ["run", str(DEMO_SPECS_DIR / "customers_three_way.yaml"), "--track",
                                      "--tracker-url", url]).exit_code == 1
    tracker = Tracker(url)
    counts = truth["active_counts"]
    with running(tracker, Settings(trust_proxy_header="X-Forwarded-User")) as base:
        viewer = httpx.Client(base_url=base, headers={"X-Forwarded-User": "someone"}, timeout=30)
        page = html.unescape(viewer.get("/", params={"reconciliation": "customers_three_way"}).text)
        assert f"active: crm {counts['crm']} / billing {counts['billing']} / warehouse {counts['warehouse']}" in page
        assert "5 active in crm, warehouse; missing in billing" in page
        assert "odd: <strong>crm</strong> · ref: billing" in page
        (status,) = [r for r in tracker.discrepancies(reconciliation="customers_three_way")
                     if r["field"] == "status" and r["odd_ones_out"] == "warehouse"][:1]
        detail = html.unescape(viewer.get(f"/d/{status['id']}").text)
        assert '<dd id="odd_ones_out">warehouse</dd>' in detail
        assert '<dd id="reference_system">billing</dd>' in detail
        assert '<td class="value" id="value-warehouse">true</td>' in detail
    tracker.engine.dispose()


def test_the_dagster_graph_has_a_snapshot_per_system(demo_data, tmp_path):
    import dagster as dg

    from recon_pipelines.dagster_defs import build_definitions
    from recon_pipelines.dagster_defs.resources import ReconResource

    _, truth = demo_data
    spec = load_spec(Path(__file__).resolve().parents[1] / "recon_pipelines/demo/specs/customers_three_way.yaml")
    recon_resource = ReconResource(storage_dir=str(tmp_path / "storage"), tracker_url=f"sqlite:///{tmp_path / 't.sqlite'}")
    defs = build_definitions(specs=[spec], recon=recon_resource)
    graph = defs.resolve_asset_graph()
    key = lambda step: dg.AssetKey(["customers_three_way", step])  # noqa: E731
    assert graph.get(key("matched_records")).parent_keys == {key(f"snapshot_{s}") for s in ("crm", "billing", "warehouse")}
    assert graph.get(key("discrepancies")).parent_keys == {key("matched_records")}
    assert graph.get(key("tracker_state")).parent_keys == {key("discrepancies")}
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("reconcile_customers_three_way").execute_in_process(instance=instance)
    assert result.success
    shown = {e.materialization.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    counts = {r.data["system"]: r.data["active"] for r in shown["matched_records"]["counts"].value.records}
    assert counts == truth["active_counts"]
    assert shown["discrepancies"]["discrepancies"].value == truth["reconciliations"]["customers_three_way"]["total"]
    assert shown["tracker_state"]["new"].value == truth["reconciliations"]["customers_three_way"]["total"]


def test_identical_raw_values_are_settled_only_when_the_rules_would_agree(tmp_path):
    """Equal raw values skip the rules, except an unreadable number and a null under both_null: differ."""
    for system in ("crm", "billing", "warehouse"):
        pq.write_table(pa.table({"id": [1, 2, 3], "amount": ["10.00", "abc", "5"], "note": ["x", "y", None]}),
                       tmp_path / f"{system}.parquet")
    raw = {"name": "same", "sources": {s: {"type": "file", "path": str(tmp_path / f"{s}.parquet")}
                                        for s in ("crm", "billing", "warehouse")},
           "key": "id", "fields": {"amount": {"compare": "numeric"}, "note": {"nulls": {"both_null": "differ"}}}}
    result = run_nway(parse_spec(raw, source_file=tmp_path / "s.yaml"))
    got = {(r["key"], r["field"], r["reason"], r["odd_ones_out"]) for r in result.discrepancies.to_pylist()}
    assert got == {("2", "amount", "no_majority", None), ("3", "note", "no_majority", None)}
    assert result.stats.identical == 1  # key 1 only


def test_notifications_name_the_systems(tmp_path):
    import sqlalchemy as sa

    from recon_pipelines.tracker import Tracker
    from recon_pipelines.tracker.schema import outbox

    for system, status in (("crm", "active"), ("billing", "CANCELLED"), ("warehouse", "CANCELLED")):
        pq.write_table(pa.table({"id": [1, 2], "status": [status, "active" if system == "crm" else "ACTIVE"]}),
                       tmp_path / f"{system}.parquet")
    spec_file = tmp_path / "three.yaml"
    spec_file.write_text(yaml.safe_dump({
        "name": "notified", "sources": {s: {"type": "file", "path": f"{s}.parquet"} for s in ("crm", "billing", "warehouse")},
        "key": "id",
        "fields": {"status": {"values": {"active": ["ACTIVE"], "churned": ["CANCELLED"]}, "system_of_record": "billing"}},
        "severity": {"default": "critical"},
        "notifications": {"destinations": {"trends": {"type": "log"}}},
        "routing": [{"tier": "critical", "destinations": ["trends"]}],
    }, sort_keys=False))
    url = f"sqlite:///{tmp_path / 'tracker.sqlite'}"
    assert CliRunner().invoke(recon, ["run", str(spec_file), "--track", "--tracker-url", url]).exit_code == 1
    with Tracker(url).engine.connect() as conn:
        payloads = [row.payload for row in conn.execute(sa.select(outbox.c.payload).where(outbox.c.event == "opened"))]
    (payload,) = payloads
    assert (payload["key"], payload["systems"], payload["odd_ones_out"], payload["reference_system"]) == (
        "1", "crm,billing,warehouse", "crm", "billing")
    # Readers of two-source payloads (Slack, webhooks) show "billing=CANCELLED crm=active".
    assert (payload["source_a"], payload["value_a"], payload["source_b"], payload["value_b"]) == (
        "billing", "CANCELLED", "crm", "active")
    assert json.loads(payload["system_values"]) == {"crm": "active", "billing": "CANCELLED", "warehouse": "CANCELLED"}


def test_every_nway_option_is_documented():
    from recon_pipelines.spec.nway import NWayField, NWayKey, NWayNulls, NWaySpec, SystemKeyMapping

    doc = (Path(__file__).resolve().parents[1] / "docs" / "spec-reference.md").read_text(encoding="utf-8")
    for model in (NWaySpec, NWayKey, NWayField, NWayNulls, SystemKeyMapping):
        for name in model.model_fields:
            assert f"`{name}`" in doc, f"{model.__name__}.{name} is not documented"
    for reason in ("missing_in_some", "only_in_some", "split", "differs_from_system_of_record",
                   "differs_from_majority", "no_majority"):
        assert f"`{reason}`" in doc
