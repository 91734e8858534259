"""One time window, every connector: the same records read from a CSV file, a SQL table and an
HTTP API through the same window keep the same keys, and those are the keys Python's zoneinfo
says lie in the window (naive update times read in the source's ``timezone``)."""

from __future__ import annotations

import csv
import sqlite3
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from recon_pipelines.sources import connector_for
from recon_pipelines.sources.base import RecordFilter
from recon_pipelines.spec.models import FileSource, HttpSource, SqlSource
from recon_pipelines_tests.http_fakes import fake_records_api

ZONE = "America/New_York"
START = datetime(2026, 3, 8, 5, 0, tzinfo=timezone.utc)  # midnight in New York, the day DST starts
END = datetime(2026, 3, 9, 4, 0, tzinfo=timezone.utc)  # the next midnight there (23 hours later)

# (key, updated text): naive New York wall-clock times, offsets (also after a space), Z, junk.
TEXT_RECORDS = [
    ("k01", "2026-03-08 00:00:00"),  # the first instant of the window
    ("k02", "2026-03-07 23:59:59"),  # a second before it
    ("k03", "2026-03-08 23:59:59"),  # the last second of the local day
    ("k04", "2026-03-09 00:00:00"),  # the window's end (excluded)
    ("k05", "2026-03-08T04:59:59Z"),  # UTC: a second before the start
    ("k06", "2026-03-08T05:00:00Z"),  # UTC: the start
    ("k07", "2026-03-09 05:30:00 +01:00"),  # offset after a space: 04:30Z, outside
    ("k08", "2026-03-09 03:59:59 Z"),  # Z after a space: inside
    ("k09", "2026-03-08T12:00:00+09:00"),  # 03:00Z: outside
    ("k10", "2026-03-08"),  # a bare date: local midnight, inside
    ("k11", "not a time"),  # unreadable: outside every window
    ("k12", ""),  # no update time: outside
    ("k13", "2026-03-08 02:30:00"),  # inside the hour DST skips
]
# Only naive times, for a column typed TIMESTAMP (the SQL connector pushes the bounds down there).
NAIVE_RECORDS = [(k, t) for k, t in TEXT_RECORDS if len(t) == 19 and t[10] == " "]


def _reference(records) -> set[str]:
    """The window, computed without the code under test."""
    zone, keep = ZoneInfo(ZONE), set()
    for key, text in records:
        try:
            value = datetime.fromisoformat(text.replace(" Z", "Z").replace(" +", "+"))
        except ValueError:
            continue
        instant = value.replace(tzinfo=zone) if value.tzinfo is None else value
        if START <= instant < END:
            keep.add(key)
    return keep


def _keys(source) -> set[str]:
    window = RecordFilter(updated_column="updated", updated_timezone=ZONE, modified_from=START, modified_to=END)
    with connector_for(source) as connector:
        return {key for batch in connector.batches(["id"], window) for key in batch.column(0).to_pylist()}


def _csv(tmp_path, records) -> FileSource:
    path = tmp_path / "records.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("id", "updated"), *records])
    return FileSource(type="file", path=str(path), updated_at="updated", timezone=ZONE)


def _sqlite(tmp_path, records, column_type: str) -> SqlSource:
    path = tmp_path / f"records_{column_type}.sqlite"
    with sqlite3.connect(path) as con:
        con.execute(f"CREATE TABLE records (id TEXT, updated {column_type})")
        con.executemany("INSERT INTO records VALUES (?, ?)", [(k, t or None) for k, t in records])
    con.close()
    return SqlSource(type="sql", url=f"sqlite:///{path}", table="records", updated_at="updated", timezone=ZONE)


def _http(server, page_size: int | None = None) -> HttpSource:
    pagination = {"style": "page", "page_size": page_size} if page_size else {"style": "none"}
    return HttpSource.model_validate({"type": "http", "url": server.url + "/records", "updated_at": "updated",
                                      "timezone": ZONE, "pagination": pagination})


def test_the_reference_is_not_trivial():
    keep = _reference(TEXT_RECORDS)
    assert keep == {"k01", "k03", "k06", "k08", "k10", "k13"}


def test_text_update_times_select_the_same_keys_in_every_connector(tmp_path):
    expected = _reference(TEXT_RECORDS)
    records = [{"id": k, "updated": t or None} for k, t in TEXT_RECORDS]
    with fake_records_api(records, style="page", page_size=4) as server:
        got = {
            "csv": _keys(_csv(tmp_path, TEXT_RECORDS)),
            "sqlite text": _keys(_sqlite(tmp_path, TEXT_RECORDS, "TEXT")),
            "http": _keys(_http(server, page_size=4)),  # four pages, the window applied to each
        }
    assert len(server.requests) == 4
    assert got == {name: expected for name in got}


def test_naive_timestamp_columns_pushed_down_select_the_same_keys(tmp_path):
    expected = _reference(NAIVE_RECORDS)
    assert expected == {"k01", "k03", "k13"}
    records = [{"id": k, "updated": t} for k, t in NAIVE_RECORDS]
    with fake_records_api(records, style="none") as server:
        got = {
            "csv": _keys(_csv(tmp_path, NAIVE_RECORDS)),
            "sqlite datetime": _keys(_sqlite(tmp_path, NAIVE_RECORDS, "DATETIME")),
            "http": _keys(_http(server)),
        }
    assert got == {name: expected for name in got}


@pytest.mark.postgres
def test_postgresql_timestamp_columns_select_the_same_keys(tmp_path, pg_url):
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE naive (id text, updated timestamp)")
        conn.exec_driver_sql("CREATE TABLE aware (id text, updated timestamptz)")
        for key, text in NAIVE_RECORDS:
            conn.execute(sa.text("INSERT INTO naive VALUES (:k, :t)"), {"k": key, "t": text})
            conn.execute(sa.text("INSERT INTO aware VALUES (:k, (:t)::timestamp AT TIME ZONE :z)"), {"k": key, "t": text, "z": ZONE})
    engine.dispose()
    expected = _reference(NAIVE_RECORDS)
    for table in ("naive", "aware"):
        source = SqlSource(type="sql", url=pg_url, table=table, updated_at="updated", timezone=ZONE)
        assert _keys(source) == expected, table
    assert _keys(_csv(tmp_path, NAIVE_RECORDS)) == expected


@pytest.mark.parametrize("column_type", ["TEXT", "DATETIME"])
def test_sql_pushes_the_window_down_for_an_index(tmp_path, column_type):
    """The bounds reach the database (so an index on the column is used); the mask decides."""
    source = _sqlite(tmp_path, TEXT_RECORDS if column_type == "TEXT" else NAIVE_RECORDS, column_type)
    window = RecordFilter(updated_column="updated", updated_timezone=ZONE, modified_from=START, modified_to=END)
    statements: list[tuple[str, tuple]] = []
    with connector_for(source) as connector:
        sa.event.listen(connector.engine, "before_cursor_execute",
                        lambda conn, cursor, statement, params, context, many: statements.append((statement, params)))
        list(connector.batches(["id"], window))
    (statement, params), = [s for s in statements if "FROM records" in s[0]]
    assert "updated >=" in statement and "updated <" in statement
    assert str(params[0]).startswith("2026-03-0")
