"""ReconciliationComponent: the repository's demo as a `dg` project, a fresh `dg` project
scaffolded with `dg scaffold defs`, and several instances in one code location."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml

from recon_pipelines.spec import SpecError
from recon_pipelines.tracker import Tracker

REPO = Path(__file__).resolve().parents[1]
COMPONENT = "recon_pipelines.ReconciliationComponent"


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _env(home: Path) -> dict:
    """The test's code first on the path (a worktree may differ from the installed package)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "RECON_"))}
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env.update(DAGSTER_HOME=str(home), DAGSTER_DISABLE_TELEMETRY="1", NO_COLOR="1",
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return env


def _dg(args: list[str], cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([_bin("dg"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return proc


@pytest.fixture(scope="module")
def registered() -> None:
    """`dg` finds the component through the installed package's entry point."""
    entry_points = importlib.metadata.entry_points(group="dagster_dg_cli.registry_modules")
    if not any(ep.value == "recon_pipelines" for ep in entry_points):
        pytest.fail("recon_pipelines has no dagster_dg_cli.registry_modules entry point in this environment: "
                    "reinstall the package (pip install -e .) so the one in pyproject.toml is recorded")


def _write_project(root: Path, package: str) -> None:
    """The files `create-dagster project` writes that `dg` needs (it downloads, so not used here)."""
    (root / package / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "{package}"
        version = "0.0.1"

        [tool.dg]
        directory_type = "project"

        [tool.dg.project]
        root_module = "{package}"
        """), encoding="utf-8")
    (root / package / "__init__.py").write_text("", encoding="utf-8")
    (root / package / "defs" / "__init__.py").write_text("", encoding="utf-8")
    (root / package / "definitions.py").write_text(textwrap.dedent("""\
        from pathlib import Path

        import dagster as dg


        @dg.definitions
        def defs():
            return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
        """), encoding="utf-8")


def _orders_spec(folder: Path, name: str, routed: bool = False) -> None:
    """A spec over two small CSV files: amount differs for order 2, order 3 only in shop, 4 only in ledger."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    data.mkdir(exist_ok=True)
    (data / "shop.csv").write_text("order_id,amount\n1,10.00\n2,25.50\n3,7.25\n", encoding="utf-8")
    (data / "ledger.csv").write_text("order_id,amount\n1,10.000\n2,25.00\n4,3.00\n", encoding="utf-8")
    spec = {"name": name, "source_a": {"type": "file", "name": "shop", "path": "data/shop.csv"},
            "source_b": {"type": "file", "name": "ledger", "path": "data/ledger.csv"},
            "key": "order_id", "fields": {"amount": {"compare": "numeric", "abs_tol": 0.01}}}
    if routed:
        spec["notifications"] = {"destinations": {"trends": {"type": "log"}}}
        spec["routing"] = [{"tier": "warning", "destinations": ["trends"]}]
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")


ORDERS_FOUND = {("field_mismatch", "2", "amount"), ("only_in_a", "3", None), ("only_in_b", "4", None)}


def test_dg_check_defs_passes_on_the_demo_project(registered, tmp_path):
    proc = _dg(["check", "defs"], REPO, _env(tmp_path / "home"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All definitions loaded successfully" in proc.stdout + proc.stderr


def test_the_dg_project_and_the_dagster_dev_module_define_the_same_things(tmp_path):
    script = textwrap.dedent("""\
        import json
        from recon_pipelines.definitions import defs as module_defs
        from recon_pipelines.demo.definitions import defs as project_defs

        def names(defs):
            repo = defs.get_repository_def()
            return {"assets": sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()),
                    "jobs": sorted(j.name for j in repo.get_all_jobs()),
                    "schedules": sorted(s.name for s in repo.schedule_defs),
                    "sensors": sorted(s.name for s in repo.sensor_defs),
                    "resources": sorted(repo.get_top_level_resources())}

        print(json.dumps({"module": names(module_defs), "project": names(project_defs.load_fn())}))
        """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=_env(tmp_path / "home"), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["project"] == result["module"]
    assert {"crm_vs_billing/tracker_state", "billing_vs_warehouse/tracker_state"} <= set(result["project"]["assets"])
    assert {"discrepancy_action", "deliver_notifications", "recheck_crm_vs_billing"} <= set(result["project"]["jobs"])


def test_a_scaffolded_instance_materializes_and_fills_the_tracker(registered, tmp_path):
    project = tmp_path / "shop_project"
    _write_project(project, "shop_recon")
    _orders_spec(project / "specs", "orders")
    env = _env(tmp_path / "home")

    listed = _dg(["list", "components", "--json"], project, env)
    assert listed.returncode == 0, listed.stderr
    assert COMPONENT in {c["key"] for c in json.loads(listed.stdout)["items"]}

    # one instance over an existing spec folder, one scaffolded with its working example
    scaffold = _dg(["scaffold", "defs", COMPONENT, "orders", "--specs-dir", "../../../specs"], project, env)
    assert scaffold.returncode == 0, scaffold.stdout + scaffold.stderr
    defs_yaml = yaml.safe_load((project / "shop_recon/defs/orders/defs.yaml").read_text())
    assert defs_yaml == {"type": COMPONENT, "attributes": {"specs_dir": "../../../specs"}}
    example = _dg(["scaffold", "defs", COMPONENT, "example"], project, env)
    assert example.returncode == 0, example.stdout + example.stderr
    assert (project / "shop_recon/defs/example/specs/example_orders.yaml").is_file()

    check = _dg(["check", "defs"], project, env)
    assert check.returncode == 0, check.stdout + check.stderr  # two instances, shared definitions once

    # in one process: a step per process costs minutes on a small machine and proves nothing more here
    launch = _dg(["launch", "--assets", "*", "--config-json", json.dumps({"execution": {"config": {"in_process": {}}}})],
                 project, env, timeout=600)
    assert launch.returncode == 0, launch.stdout[-4000:] + launch.stderr[-4000:]

    tracker = Tracker(f"sqlite:///{tmp_path / 'home' / 'recon_tracker.sqlite'}")
    found = {(r["kind"], r["key"], r["field"]) for r in tracker.discrepancies("orders")}
    assert found == ORDERS_FOUND, (tracker.discrepancies(), launch.stdout[-3000:])  # 10.00 vs 10.000 is no difference
    example_found = {(r["kind"], r["key"], r["field"]) for r in tracker.discrepancies("example_orders")}
    assert example_found == {("field_mismatch", "2", "amount"), ("only_in_a", "3", None), ("only_in_b", "4", None)}


def _load_project(tmp_path: Path, monkeypatch, instances: dict[str, dict]) -> dg.Definitions:
    """A dg project with one instance per entry (attributes as given), loaded in this process."""
    package = f"recon_proj_{uuid.uuid4().hex[:8]}"  # unique: the defs modules are imported by name
    _write_project(tmp_path, package)
    for name, attributes in instances.items():
        folder = tmp_path / package / "defs" / name
        folder.mkdir()
        (folder / "defs.yaml").write_text(yaml.safe_dump({"type": COMPONENT, "attributes": attributes}),
                                          encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return dg.load_from_defs_folder(path_within_project=tmp_path)


@pytest.mark.parametrize("routed_instance", ["a_routed", "z_routed"])
def test_shared_definitions_are_built_once_from_every_instance(tmp_path, monkeypatch, routed_instance):
    """Only one spec routes notifications; whichever instance builds the shared definitions must
    know it (the delivery job exists), and they exist once (the location loads)."""
    plain = "m_plain"
    _orders_spec(tmp_path / "specs" / plain, "plain_orders")
    _orders_spec(tmp_path / "specs" / routed_instance, "routed_orders", routed=True)
    defs = _load_project(tmp_path, monkeypatch, {
        plain: {"specs_dir": str(tmp_path / "specs" / plain)},
        routed_instance: {"specs_dir": str(tmp_path / "specs" / routed_instance)},
    })
    repo = defs.get_repository_def()
    jobs = {job.name for job in repo.get_all_jobs()}
    assert {"reconcile_plain_orders", "reconcile_routed_orders", "discrepancy_action", "deliver_notifications"} <= jobs
    assert [s.name for s in repo.sensor_defs].count("recon_run_failures") == 1
    assert set(repo.get_top_level_resources()) >= {"recon", "notifier"}


def test_two_instances_with_one_spec_name_fail_with_its_name(tmp_path, monkeypatch):
    for name in ("first", "second"):
        _orders_spec(tmp_path / "specs" / name, "orders")
    with pytest.raises(Exception) as caught:
        _load_project(tmp_path, monkeypatch, {name: {"specs_dir": str(tmp_path / "specs" / name)}
                                              for name in ("first", "second")})
    message = str(_find(caught.value, SpecError))
    assert "'orders' is also loaded by" in message and "first/defs.yaml" in message and "second/defs.yaml" in message


def test_an_inline_spec_loads_with_short_forms_and_errors_name_it(tmp_path, monkeypatch):
    _orders_spec(tmp_path / "specs", "orders")  # for its CSV files
    inline = {"name": "inline_orders", "source_a": {"type": "file", "path": str(tmp_path / "specs/data/shop.csv")},
              "source_b": {"type": "file", "path": str(tmp_path / "specs/data/ledger.csv")},
              "key": "order_id", "fields": {"amount": "numeric"}}
    defs = _load_project(tmp_path, monkeypatch, {"inline": {"specs": [inline]}})
    assert "reconcile_inline_orders" in {job.name for job in defs.get_repository_def().get_all_jobs()}

    broken = {**inline, "name": "broken_orders", "fields": {"amount": {"compare": "numerik"}}}
    with pytest.raises(Exception) as caught:
        _load_project(tmp_path / "second", monkeypatch, {"broken": {"specs": [broken]}})
    spec_error = _find(caught.value, SpecError)
    assert spec_error is not None, caught.value
    assert spec_error.file.endswith("defs.yaml") and spec_error.path.startswith("attributes.specs[0].fields")


def test_specs_beside_defs_yaml_are_refused(tmp_path, monkeypatch):
    with pytest.raises(Exception) as caught:
        _load_project(tmp_path, monkeypatch, {"here": {"specs_dir": "."}})
    assert "folder of their own" in str(_find(caught.value, SpecError))


def _find(exc: BaseException | None, kind: type):
    while exc is not None and not isinstance(exc, kind):
        exc = exc.__cause__ or exc.__context__
    return exc


def test_tracker_run_ids_differ_per_reconciliation_and_fit_the_column():
    """One Dagster run materializing several reconciliations records each (ids are applied once)."""
    from recon_pipelines.pipeline import TRACKER_RUN_ID_MAX, tracker_run_id

    dagster_run = "0131606c-06ba-41a1-9a9c-425647826172"
    short = {tracker_run_id(name, f"{dagster_run}:full") for name in ("orders", "example_orders")}
    assert short == {f"{dagster_run}:full:orders", f"{dagster_run}:full:example_orders"}
    long = [tracker_run_id(name, f"{dagster_run}:2026-11-13..2026-11-19") for name in ("crm_vs_billing", "billing_vs_warehouse")]
    assert len(set(long)) == 2 and all(len(i) <= TRACKER_RUN_ID_MAX and i.startswith(f"{dagster_run}:") for i in long)
    assert tracker_run_id("crm_vs_billing", f"{dagster_run}:2026-11-13..2026-11-19") == long[0]  # a retried step: same id
