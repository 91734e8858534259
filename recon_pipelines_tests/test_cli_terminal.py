"""Hostile values (ANSI escapes, carriage returns, bidi overrides) reach the operator's
terminal only as visible escapes; JSON and CSV keep them exactly."""

from __future__ import annotations

import csv
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from recon_pipelines import cli
from recon_pipelines.cli_shared import write_rows
from recon_pipelines.terminal import for_terminal, is_unsafe, json_for_terminal
from recon_pipelines.tracker import Tracker
from recon_pipelines_tests.test_tracker import T0, d, found

CLEAR_SCREEN_AND_RETITLE = "\x1b[2J\x1b]0;pwned\x07"
OVERWRITE = "100.00\rresolved"
RLO = "paid\u202edesolver"  # shows as "paiddevloser" reversed: "resolved" to the eye
HOSTILE = (CLEAR_SCREEN_AND_RETITLE, OVERWRITE, RLO)


def raw_control_or_bidi(text: str) -> list[str]:
    """Characters a terminal would obey, except the newlines that separate lines."""
    return [c for c in text if c != "\n" and is_unsafe(c)]


# ----------------------------------------------------------------------------- the function


@pytest.mark.parametrize("value, shown", [
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("a\rb\nc\td", "a\\rb\\nc\\td"),
    ("\x00\x7f\x85\x9b", "\\x00\\x7f\\x85\\x9b"),  # C0, DEL, C1 (NEL, CSI)
    ("x\u202ey\u2066z\u2069\u200e\u200f\u061c", "x\\u202ey\\u2066z\\u2069\\u200e\\u200f\\u061c"),
    ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),  # other format characters
    ("line\u2028sep", "line\\u2028sep"),
    ("tag\U000e0041", "tag\\U000e0041"),
    ("café 東京 €12", "café 東京 €12"),  # ordinary text is left alone
    (None, ""),
    (12.5, "12.5"),
])
def test_for_terminal_escapes_what_a_terminal_would_obey(value, shown):
    assert for_terminal(value) == shown


def test_for_terminal_keep_leaves_newlines_for_messages():
    assert for_terminal("one\ntwo\x1b", keep="\n") == "one\ntwo\\x1b"


@pytest.mark.parametrize("value", [*HOSTILE, "tag\U000e0041", "lone\udc80", "café\u2028"])
def test_json_for_terminal_is_the_same_json_value(value):
    document = json_for_terminal(json.dumps({"v": value}, ensure_ascii=False))
    assert json.loads(document) == {"v": value}
    assert raw_control_or_bidi(document) == []


# ----------------------------------------------------------------------------- recon discrepancies


@pytest.fixture
def hostile_tracker(tmp_path):
    url = f"sqlite:///{tmp_path / 'tracker.sqlite'}"
    tracker = Tracker(url)
    tracker.apply_run("crm_vs_billing", "r1", found(
        d("1", value_a=CLEAR_SCREEN_AND_RETITLE, value_b=RLO),
        d("2\r\x1b[1A", value_a=OVERWRITE),
    ), now=T0)
    tracker.act(["1-amount"], "comment", "ops", note="see \x1b]8;;http://evil\x07here\x1b]8;;\x07", now=T0)
    tracker.engine.dispose()
    return url


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli.main, list(args), catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return result.output


def test_discrepancies_list_table_shows_escapes(hostile_tracker):
    out = invoke("discrepancies", "--tracker-url", hostile_tracker, "list")
    assert raw_control_or_bidi(out) == []
    assert "\\x1b[2J\\x1b]0;pwned\\x07" in out and "paid\\u202edesolver" in out
    assert "100.00\\rresolved" in out and "2\\r\\x1b[1A" in out


def test_discrepancies_show_escapes_values_and_history(hostile_tracker):
    out = invoke("discrepancies", "--tracker-url", hostile_tracker, "show", "1-amount")
    assert raw_control_or_bidi(out) == []
    assert "paid\\u202edesolver" in out
    assert "see \\x1b]8;;http://evil\\x07here" in out  # a forged hyperlink, shown as text


def test_discrepancies_json_is_lossless_and_safe(hostile_tracker):
    out = invoke("discrepancies", "--tracker-url", hostile_tracker, "list", "--format", "json")
    assert raw_control_or_bidi(out) == []
    rows = {r["id"]: r for r in map(json.loads, out.splitlines())}
    assert (rows["1-amount"]["value_a"], rows["1-amount"]["value_b"]) == (CLEAR_SCREEN_AND_RETITLE, RLO)
    assert rows["2\r\x1b[1A-amount"]["value_a"] == OVERWRITE


def test_discrepancies_csv_to_a_pipe_is_byte_exact(hostile_tracker):
    out = invoke("discrepancies", "--tracker-url", hostile_tracker, "list", "--format", "csv")
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(out))}
    assert (rows["1-amount"]["value_a"], rows["1-amount"]["value_b"]) == (CLEAR_SCREEN_AND_RETITLE, RLO)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_csv_written_straight_to_a_terminal_is_escaped():
    rows = [{"id": "x", "value_a": CLEAR_SCREEN_AND_RETITLE, "value_b": RLO}]
    screen = _Terminal(newline="")
    write_rows(rows, "csv", screen, ("id", "value_a", "value_b"))
    assert raw_control_or_bidi(screen.getvalue().replace("\r\n", "\n")) == []
    assert "paid\\u202edesolver" in screen.getvalue()


# ----------------------------------------------------------------------------- recon run


def test_recon_run_table_and_summary_escape_values_from_the_sources(tmp_path):
    pq.write_table(pa.table({"id": ["k1", "k2\x1b[8m"], "status": [CLEAR_SCREEN_AND_RETITLE, "open"]}),
                   tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": ["k1", "k2\x1b[8m"], "status": [RLO, OVERWRITE]}), tmp_path / "b.parquet")
    spec = {"name": "hostile", "source_a": {"type": "file", "path": "a.parquet", "name": "shop"},
            "source_b": {"type": "file", "path": "b.parquet", "name": "ledger"},
            "key": ["id"], "fields": {"status": {"compare": "exact"}}}
    (tmp_path / "hostile.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(cli.main, ["run", str(tmp_path / "hostile.yaml")], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert raw_control_or_bidi(result.output) == []
    assert "paid\\u202edesolver" in result.output and "k2\\x1b[8m" in result.output
    assert "100.00\\rresolved" in result.output

    as_json = CliRunner().invoke(cli.main, ["run", str(tmp_path / "hostile.yaml"), "--format", "json"])
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {r["value_b"] for r in rows} == {RLO, OVERWRITE}
    assert raw_control_or_bidi(as_json.stdout) == []
