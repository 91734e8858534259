"""The CLI's edges a newcomer meets first: the demo specs without extra variables, a mistyped
status, the run table, the summary, numbers, and a quiet `recon trigger --local`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from recon_pipelines.cli import main as recon
from recon_pipelines.demo import DEMO_SPECS_DIR, load_ground_truth
from recon_pipelines.numbers import display_number

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_home(tmp_path, monkeypatch) -> Path:
    """A newcomer's shell after `make demo`: DAGSTER_HOME at most, no RECON_* variables."""
    for name in [n for n in os.environ if n.startswith("RECON_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_recon_run_on_a_demo_spec_needs_no_variable(fresh_home):
    result = CliRunner().invoke(recon, ["run", str(DEMO_SPECS_DIR / "crm_vs_billing.yaml"), "--limit", "1000"])
    assert result.exit_code == 1, result.output  # discrepancies found, not an error
    assert (fresh_home / "demo_data" / "crm.sqlite").is_file()  # generated on first use, where the demo keeps it
    truth = load_ground_truth(fresh_home / "demo_data")["reconciliations"]["crm_vs_billing"]
    table = result.output.split("\n  discrepancies")[1].splitlines()[1:]
    header, rows = table[0].split(), table[1:]
    assert header[:2] == ["id", "severity"] and header[-2:] == ["difference", "detail"]
    assert len(rows) == truth["total"] == 50
    assert all(len(row.split()[0]) == 24 for row in rows)  # the id, for `recon discrepancies show`


def test_recon_validate_on_the_demo_specs_needs_no_variable_and_says_only_what_matters(fresh_home):
    done = subprocess.run([sys.executable, "-m", "recon_pipelines.cli", "validate", str(DEMO_SPECS_DIR)],
                          capture_output=True, text=True, env=os.environ.copy(), cwd=fresh_home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "3 spec(s) valid"  # the two pairwise specs and the three-system one
    assert done.stderr == ""  # no Dagster Beta/Preview notices from building the definitions


def test_a_mistyped_status_is_an_error_not_an_empty_list(fresh_home):
    for args in (["discrepancies", "--status", "opn"], ["discrepancies", "list", "--status", "opn"]):
        result = CliRunner().invoke(recon, args)
        assert result.exit_code == 2 and "'opn' is not one of" in result.output, result.output
    assert CliRunner().invoke(recon, ["discrepancies", "--status", "open"]).exit_code == 0


def test_the_summary_values_line_up(fresh_home):
    result = CliRunner().invoke(recon, ["run", str(DEMO_SPECS_DIR / "billing_vs_warehouse.yaml"), "--limit", "0"])
    # The demo's billing side fails a `warn` expectation on purpose: its warning line (stderr) comes first.
    output = "\n".join(line for line in result.output.splitlines() if not line.startswith("warning: "))
    assert "expect_email_without_blanks" in result.output
    summary = output.split("\nid ")[0].splitlines()[1:]
    assert len(summary) >= 6 and all(line.startswith("  ") for line in summary)
    # every value starts in the same column, whatever the length of the source names in the labels
    starts = {len(line) - len(line[2:].split("  ", 1)[1].lstrip()) for line in summary}
    assert len(starts) == 1, summary


@pytest.mark.parametrize(("value", "shown"), [
    (42.504 - 42.5, 0.004),
    (100000.004 - 100000, 0.004),
    (0.1 + 0.2, 0.3),
    (33.0, 33.0),
    (-1e-12, 0.0),
    (123456789.125, 123456789.125),
    (7, 7),
    ("25.50", "25.50"),
    (None, None),
])
def test_computed_numbers_print_without_binary_noise(value, shown):
    assert display_number(value) == shown
    assert repr(display_number(value)) == repr(shown)


def test_json_output_rounds_differences_too(fresh_home, tmp_path):
    spec = tmp_path / "spec.yaml"
    (tmp_path / "a.csv").write_text("id,amount\n1,100000.004\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("id,amount\n1,100000\n", encoding="utf-8")
    spec.write_text("name: noise\nsource_a: {type: file, path: a.csv}\nsource_b: {type: file, path: b.csv}\n"
                    "key: id\nfields: {amount: numeric}\n", encoding="utf-8")
    result = CliRunner().invoke(recon, ["run", str(spec), "--format", "json"])
    assert result.exit_code == 1, result.output
    assert '"difference": 0.004,' in result.output, result.output


def test_trigger_local_is_quiet_unless_verbose(fresh_home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env.update(DAGSTER_HOME=str(fresh_home), DAGSTER_DISABLE_TELEMETRY="1",
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    recon_bin = str(Path(sys.executable).parent / "recon")
    quiet = subprocess.run([recon_bin, "trigger", "crm_vs_billing", "--keys", "1064", "--local"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    output = quiet.stdout + quiet.stderr
    assert "Warning" not in output and "DEBUG" not in output and " - dagster - " not in output, output
    assert quiet.stdout.startswith("run ") and ": SUCCESS" in quiet.stdout.splitlines()[0]
    assert "discrepancies found:" in quiet.stdout and " 1064 " in quiet.stdout

    verbose = subprocess.run([recon_bin, "trigger", "crm_vs_billing", "--keys", "1064", "--local", "--verbose"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert verbose.returncode == 0 and "DEBUG" in verbose.stdout + verbose.stderr


@pytest.mark.parametrize("text, ahead, expected", [
    ("7d", True, "2026-01-08T12:00:00+00:00"),
    ("12h", False, "2026-01-01T00:00:00+00:00"),
    ("2026-03-01", True, "2026-03-01T00:00:00+00:00"),  # no zone: UTC
    ("2026-03-01T10:00:00+02:00", False, "2026-03-01T10:00:00+02:00"),
])
def test_until_and_since_read_a_duration_or_a_date(text, ahead, expected):
    from datetime import datetime, timezone

    from recon_pipelines.spec.base import parse_moment

    now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    assert parse_moment(text, now=now, ahead=ahead, what="--until") == datetime.fromisoformat(expected)
    with pytest.raises(ValueError, match=r"^--until 'soon' is neither a duration"):
        parse_moment("soon", now=now, ahead=ahead, what="--until")
