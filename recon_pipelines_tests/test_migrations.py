"""Schema migrations run on start, and two processes starting at once do not collide."""

from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa

from recon_pipelines.tracker import Tracker
from recon_pipelines.tracker.db import create_tracker_engine

START = "from recon_pipelines.tracker import Tracker; import sys; Tracker(sys.argv[1]); print('ok')"


def _head() -> str:
    """The one head of the migration chain (a literal would go stale with every migration)."""
    from alembic.script import ScriptDirectory

    from recon_pipelines.tracker.db import _MIGRATIONS

    heads = ScriptDirectory(str(_MIGRATIONS)).get_heads()
    assert len(heads) == 1, f"the migrations have several heads: {heads}"
    return heads[0]


def test_two_processes_migrating_at_once(tracker_url):
    procs = [subprocess.Popen([sys.executable, "-c", START, tracker_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    engine = create_tracker_engine(tracker_url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT version_num FROM recon_alembic_version")) == _head()
        assert conn.scalar(sa.text("SELECT count(*) FROM recon_alembic_version")) == 1
    tables = set(sa.inspect(engine).get_table_names())
    assert {"recon_discrepancies", "recon_discrepancy_events", "recon_runs"} <= tables
    engine.dispose()


def test_open_view_shows_what_is_wrong_now(tracker_url):
    from recon_pipelines_tests.test_tracker import d, found

    tracker = Tracker(tracker_url)
    tracker.apply_run("r", "run1", found(d("1"), d("2")))
    tracker.apply_run("r", "run2", found(d("1")))
    with tracker.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, status FROM recon_open_discrepancies ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("1-amount", "new")]
    tracker.engine.dispose()
