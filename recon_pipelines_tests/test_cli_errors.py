"""Broken inputs through the real ``recon`` command: exit 2 (never 1, which means "discrepancies
found"), one line on stderr naming the file, source or setting at fault, no traceback and no
secret. Each case runs ``python -m recon_pipelines.cli`` in a subprocess, as CI would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recon_pipelines_tests.http_fakes import FakeServer

REPO = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-pw"
ROWS = 30_000  # "deep in a file": past the 20,480 rows DuckDB samples to sniff a CSV


@dataclass
class Case:
    files: dict[str, str | bytes]  # name -> content (the spec is "spec.yaml" unless said otherwise)
    args: list[str]  # {dir} is the case's folder
    named: list[str]  # every one of these must be in the message
    env: dict[str, str] = field(default_factory=dict)


def _spec(source_b: str, fields: str = "amount: {compare: numeric, abs_tol: 0.01}", extra: str = "") -> str:
    return (f"name: t\nsource_a: {{type: file, path: a.csv, name: shop}}\nsource_b: {source_b}\n"
            f"key: id\nfields:\n  {fields}\n{extra}")


def _csv(rows: int = ROWS, bad_line: int | None = None, bad: str = "") -> str:
    lines = ["id,amount"] + [f"{i},{i}.5" for i in range(1, rows)]
    if bad_line is not None:
        lines[bad_line - 1] = bad
    return "\n".join(lines) + "\n"


def _parquet_bytes(tmp: Path) -> bytes:
    path = tmp / "good.parquet"
    n = 200_000
    pq.write_table(pa.table({"id": list(range(n)), "amount": [float(i) for i in range(n)]}), path,
                   compression="zstd", row_group_size=50_000)
    data = bytearray(path.read_bytes())
    # Overwrite the middle of the compressed pages: the footer still reads, a page does not.
    middle = len(data) // 2
    data[middle:middle + 4096] = b"\xff" * 4096
    return bytes(data)


def _latin1_csv() -> bytes:
    lines = ["id,amount"] + [f"{i},{i}.5" for i in range(1, ROWS)]
    lines[24_999] = "25000,caf\xe9"
    return ("\n".join(lines) + "\n").encode("latin-1")


A_CSV = _csv()
HTTP_B = "{type: http, name: api, url: '{url}/records', max_retries: 0}"

CASES: dict[str, Case] = {
    "corrupt-parquet": Case({"spec.yaml": _spec("{type: file, path: b.parquet, name: ledger}"), "a.csv": A_CSV,
                             "b.parquet": "<corrupt>"}, ["run", "{dir}/spec.yaml"], ["b.parquet"]),
    "ragged-csv-deep": Case({"spec.yaml": _spec("{type: file, path: b.csv, name: ledger}"), "a.csv": A_CSV,
                             "b.csv": _csv(bad_line=24_821, bad="24820,1.5,extra")}, ["run", "{dir}/spec.yaml"],
                            ["b.csv", "line 24821: expected 2 columns, found 3"]),
    "latin1-csv-deep": Case({"spec.yaml": _spec("{type: file, path: b.csv, name: ledger}"), "a.csv": A_CSV,
                             "b.csv": _latin1_csv()}, ["run", "{dir}/spec.yaml"], ["b.csv", "line 25000", "UTF-8"]),
    "declared-type-does-not-fit": Case(
        {"spec.yaml": _spec("{type: file, path: b.csv, name: ledger, columns: {amount: integer}}"), "a.csv": A_CSV,
         "b.csv": _csv(bad_line=23_001, bad="23000,abc")}, ["run", "{dir}/spec.yaml"], ["b.csv", "line 23001", "amount"]),
    "abs-tol-1e400": Case({"spec.yaml": _spec("{type: file, path: a.csv}", "amount: {compare: numeric, abs_tol: 1e400}"),
                           "a.csv": A_CSV}, ["run", "{dir}/spec.yaml"], ["spec.yaml", "abs_tol"]),
    "abs-tol-inf": Case({"spec.yaml": _spec("{type: file, path: a.csv}", "amount: {compare: numeric, abs_tol: .inf}"),
                         "a.csv": A_CSV}, ["validate", "--offline", "{dir}/spec.yaml"], ["spec.yaml", "abs_tol"]),
    "unreachable-tracker": Case({}, ["discrepancies", "--tracker-url", f"postgresql://postgres:{SECRET}@127.0.0.1:1/recon"],
                                ["tracker", "127.0.0.1"]),
    "missing-data-file": Case({"spec.yaml": _spec("{type: file, path: nowhere.csv, name: ledger}"), "a.csv": A_CSV},
                              ["run", "{dir}/spec.yaml"], ["nowhere.csv", "not found"]),
    "missing-spec-file": Case({}, ["run", "{dir}/absent.yaml"], ["absent.yaml", "not found"]),
    "spec-is-a-folder": Case({"folder.yaml/x": "x"}, ["run", "{dir}/folder.yaml"], ["folder.yaml"]),
    "unknown-column": Case({"spec.yaml": _spec("{type: file, path: b.csv, name: ledger}", "amount: {compare: numeric, b: total}"),
                            "a.csv": A_CSV, "b.csv": A_CSV}, ["run", "{dir}/spec.yaml"], ["spec.yaml", "total"]),
    "bad-yaml": Case({"spec.yaml": "name: t\nsource_a: {type: file\n"}, ["validate", "{dir}/spec.yaml"], ["spec.yaml", "line"]),
    "duplicate-yaml-key": Case({"spec.yaml": _spec("{type: file, path: a.csv}") + "source_b: {type: file, path: b.csv}\n",
                                "a.csv": A_CSV}, ["validate", "{dir}/spec.yaml"], ["spec.yaml", "source_b", "line 7"]),
    "unknown-option": Case({"spec.yaml": _spec("{type: file, path: a.csv}", extra="severty: {}\n"), "a.csv": A_CSV},
                           ["validate", "{dir}/spec.yaml"], ["spec.yaml", "severty"]),
    "bad-sql-url": Case({"spec.yaml": _spec("{type: sql, name: crm, url: 'nodialect://u:" + SECRET + "@h/db', table: t}"),
                         "a.csv": A_CSV}, ["run", "{dir}/spec.yaml"], ["spec.yaml", "source_b"]),
    "sql-server-down": Case({"spec.yaml": _spec("{type: sql, name: crm, url: 'postgresql://postgres:" + SECRET
                                                + "@127.0.0.1:1/db', table: t}"), "a.csv": A_CSV},
                            ["run", "{dir}/spec.yaml"], ["crm", "127.0.0.1"]),
    "http-500": Case({"spec.yaml": _spec(HTTP_B), "a.csv": A_CSV}, ["run", "{dir}/spec.yaml"], ["api", "500"]),
    "http-404": Case({"spec.yaml": _spec(HTTP_B.replace("/records", "/nothing")), "a.csv": A_CSV},
                     ["run", "{dir}/spec.yaml"], ["api", "404"]),
    "mapping-with-duplicates": Case(
        {"spec.yaml": _spec("{type: file, path: b.csv, name: ledger}",
                            extra="key_mapping: {source: {type: file, path: map.csv}, a: a_id, b: b_id}\n"),
         "a.csv": A_CSV, "b.csv": A_CSV, "map.csv": "a_id,b_id\n1,1\n1,2\n"}, ["run", "{dir}/spec.yaml"], ["map.csv", "'1'"]),
    "unset-url-env": Case({"spec.yaml": _spec("{type: sql, name: crm, url_env: RECON_TEST_UNSET_URL, table: t}"), "a.csv": A_CSV},
                          ["run", "{dir}/spec.yaml"], ["RECON_TEST_UNSET_URL"]),
    "bad-duration-option": Case({}, ["discrepancies", "--tracker-url", "sqlite:///{dir}/t.sqlite", "--older-than", "soon"],
                                ["--older-than", "soon"]),
    "unreadable-tracker-file": Case({"t.sqlite": b"this is not a database" * 100},
                                    ["discrepancies", "--tracker-url", "sqlite:///{dir}/t.sqlite"], ["tracker", "t.sqlite"]),
    "no-default-spec-folder": Case({}, ["validate"], ["specs", "RECON_SPEC_DIR"]),
}


def recon(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("RECON_SPEC_DIR", "RECON_TRACKER_URL")}
    environ.update({"PYTHONPATH": str(REPO), "DAGSTER_HOME": str(cwd / ".dagster")}, **(env or {}))
    return subprocess.run([sys.executable, "-m", "recon_pipelines.cli", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def http_server():
    def handler(method, path, query, headers, body):
        if path == "/records":
            return 500, {}, {"error": "boom"}
        return 404, {}, {"error": "no such route"}

    with FakeServer(handler) as server:
        yield server


def test_the_table_is_big_enough():
    assert len(CASES) >= 15


@pytest.mark.parametrize("name", list(CASES))
def test_broken_input_exits_2_with_one_line_naming_the_culprit(name, tmp_path, http_server):
    case = CASES[name]
    for file, content in case.files.items():
        path = tmp_path / file
        path.parent.mkdir(parents=True, exist_ok=True)
        if content == "<corrupt>":
            content = _parquet_bytes(tmp_path)
        if isinstance(content, str):
            content = content.replace("{url}", http_server.url)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    args = [a.replace("{dir}", str(tmp_path)) for a in case.args]
    result = recon(args, tmp_path, case.env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    for part in case.named:
        assert part in lines[0], lines[0]
    assert SECRET not in result.stderr + result.stdout


def test_debug_shows_the_traceback(tmp_path):
    result = recon(["--debug", "run", str(tmp_path / "absent.yaml")], tmp_path)
    assert result.returncode == 2
    assert "Traceback" in result.stderr and result.stderr.strip().splitlines()[-1].endswith("absent.yaml: file not found")


def test_a_spec_that_cannot_be_opened(tmp_path):
    # Root (as CI runs) reads a file whatever its mode: a symlink loop is an OSError for everyone.
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    result = recon(["validate", str(tmp_path / "loop.yaml")], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {tmp_path / 'loop.yaml'}: cannot read: Too many levels of symbolic links"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_spec(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(_spec("{type: file, path: a.csv}"))
    spec.chmod(0)
    result = recon(["validate", str(spec)], tmp_path)
    assert result.returncode == 2 and "spec.yaml" in result.stderr and "Traceback" not in result.stderr
