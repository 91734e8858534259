"""Values from real data that PostgreSQL refuses and SQLite accepts: a NUL byte, an infinite
difference in a routed payload, a field name longer than 128 characters. On both backends the
run is stored, read back exactly, routed, and a rerun sees the same discrepancy again."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
import sqlalchemy as sa

from recon_pipelines.remediation import notification_writer
from recon_pipelines.tracker import Tracker
from recon_pipelines.tracker.schema import discrepancies
from recon_pipelines.tracker.values import MARK, decode_text, encode_column, encode_text, finite_json
from recon_pipelines_tests.remediation_support import RECON, deliverer, disc, found, make_spec
from recon_pipelines_tests.slack_fake import FakeSlack, FakeWebhook

T0 = datetime(2025, 1, 6, 8, 0, tzinfo=timezone.utc)
LONG_FIELD = "f" * 200
HOSTILE = [
    # Ids are the engine's hashes, never data: only keys and values carry the NUL.
    disc("k\x00ey", "plan", "critical", id="nul-plan", value_a="nul\x00inside", value_b=MARK + "looks encoded",
         detail="a\x00b"),
    disc("2", "mrr", "critical", value_a="0", value_b="5", difference=math.inf),
    disc("3", LONG_FIELD, "critical", id="long-field", value_a="x", value_b="y"),
]


@pytest.mark.parametrize("value", [None, "", "plain", "nul\x00", "\x00", MARK, MARK + "x\x00", "back\\slash\x00\"q",
                                   "\u20ac\x00\U0001f600", MARK + "\\u0000"])
def test_text_encoding_round_trips(value):
    assert decode_text(encode_text(value)) == value
    if value is not None and "\x00" not in value and not value.startswith(MARK):
        assert encode_text(value) == value  # ordinary values are stored unchanged
    assert "\x00" not in (encode_text(value) or "")


def test_arrow_encoding_matches_the_scalar_rule():
    values = ["a", None, "b\x00", MARK + "c", "d"]
    assert encode_column(pa.array(values)).to_pylist() == [encode_text(v) for v in values]


def test_non_finite_numbers_become_json_strings():
    assert finite_json({"d": math.inf, "e": [-math.inf, math.nan, 1.5], "f": "x"}) == {
        "d": "Infinity", "e": ["-Infinity", "NaN", 1.5], "f": "x"}


def test_hostile_values_survive_two_runs_and_are_routed(tracker_url):
    spec = make_spec(notifications={"destinations": {
        "alerts": {"type": "slack", "channel": "#revenue-alerts"},
        "hook": {"type": "webhook", "url_env": "TEST_HOOK_URL"},
    }}, routing=[{"tier": "critical", "destinations": ["alerts", "hook"]}], escalation={})
    tracker = Tracker(tracker_url)
    try:
        first = tracker.apply_run(RECON, "r1:full", found(*HOSTILE), now=T0, on_outcome=notification_writer(spec))
        assert sorted(first.new_ids) == sorted(r["id"] for r in HOSTILE)
        second = tracker.apply_run(RECON, "r2:full", found(*HOSTILE), now=T0 + timedelta(hours=1),
                                   on_outcome=notification_writer(spec))
        assert (second.new_ids, second.reopened_ids, second.resolved_ids, second.seen_again) == ([], [], [], 3)

        nul = tracker.get("nul-plan")
        assert (nul["key"], nul["value_a"], nul["value_b"], nul["detail"]) == (
            "k\x00ey", "nul\x00inside", MARK + "looks encoded", "a\x00b")
        assert nul["times_seen"] == 2
        assert tracker.get("2-mrr")["difference"] == math.inf
        assert tracker.get("long-field")["field"] == LONG_FIELD
        with tracker.engine.connect() as conn:  # what a BI tool sees: NUL-free text, ordinary values unchanged
            raw = dict(conn.execute(sa.text("SELECT id, value_a FROM recon_discrepancies")).all())
        assert raw["long-field"] == "x"
        assert all("\x00" not in (v or "") for v in raw.values())

        with FakeSlack() as slack, FakeWebhook() as hook:
            report = deliverer(tracker.engine, spec, slack, environ={"TEST_HOOK_URL": hook.url}).deliver()
            assert report.count("failed") == 0 and report.count("pending") == 0
            bodies = {b["data"]["key"]: b["data"] for b in hook.bodies}
            assert bodies["2"]["difference"] == "Infinity"
            assert bodies["k\x00ey"]["value_a"] == "nul\x00inside"
            assert bodies["3"]["field"] == LONG_FIELD
            assert len(slack.messages) == 4  # the run's thread: its summary and three replies
    finally:
        tracker.engine.dispose()


def test_the_discrepancy_table_type_does_the_encoding(tracker_url):
    """Writes through SQLAlchemy (SQLite staging, operator updates) and COPY (PostgreSQL) agree."""
    tracker = Tracker(tracker_url)
    try:
        tracker.apply_run(RECON, "r1:full", found(HOSTILE[0]), now=T0)
        with tracker.engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT key FROM recon_discrepancies")).scalar_one()
            assert stored == encode_text("k\x00ey")
            assert conn.execute(sa.select(discrepancies.c.id).where(discrepancies.c.key == "k\x00ey")).scalar_one() \
                == "nul-plan"
    finally:
        tracker.engine.dispose()
