"""Change Data Capture from PostgreSQL logical decoding (the built-in ``pgoutput`` plugin).

A replication slot keeps every change of the tables in a publication until its consumer
confirms it. ``LogicalChangeReader.read`` streams whole transactions (pgoutput sends them in
commit order), turns each insert/update/delete of the watched table into a ``ChangeEvent``
with the commit time, hands the transaction's events to ``handle``, and only after ``handle``
returned confirms the commit's LSN to the slot (``send_feedback(flush_lsn=...)``). A crash
before the confirmation replays the transaction on restart; each event's position
(commit LSN, then its index in the transaction) lets the handler skip what it already has.

Setup on the source, once, by its owner (``wal_level = logical``; the reader creates its slot):

    CREATE PUBLICATION recon_orders FOR TABLE public.orders;
"""

from __future__ import annotations

import select
import struct
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone

import psycopg2
import psycopg2.errors
import psycopg2.extras
import sqlalchemy as sa

from recon_pipelines.redact import redact
from recon_pipelines.streams.events import ChangeEvent

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


class CdcError(RuntimeError):
    """The slot or the publication cannot be read; says which."""


def lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


class LogicalChangeReader:
    """One side's changes: ``table``'s rows, keyed by ``key_column``; ``columns`` maps spec field
    names to the table's columns (the values an event carries)."""

    def __init__(self, url: str, *, side: str, slot: str, publication: str, table: str, key_column: str,
                 columns: Mapping[str, str]):
        self.url, self.side, self.slot, self.publication = url, side, slot, publication
        schema, _, name = table.rpartition(".")
        self.table = (schema or "public", name)
        self.key_column, self.columns = key_column, dict(columns)

    @property
    def source(self) -> str:
        """The name its position is stored under."""
        return f"slot:{self.slot}:{self.side}"

    def ensure_slot(self) -> None:
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (self.slot,))
            if cur.fetchone() is None:
                try:
                    cur.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (self.slot,))
                except psycopg2.errors.DuplicateObject:
                    pass  # created meanwhile by another reader
        conn.close()

    def read(self, handle: Callable[[list[ChangeEvent]], None], idle_timeout: float = 1.0,
             max_seconds: float = 60.0, max_transactions: int | None = None) -> int:
        """Read committed transactions until none came for ``idle_timeout`` seconds (or after
        ``max_seconds``, or ``max_transactions``); returns the number of events handed on."""
        conn = self._connect(psycopg2.extras.LogicalReplicationConnection)
        handed = transactions = 0
        try:
            cur = conn.cursor()
            try:
                cur.start_replication(slot_name=self.slot, decode=False, status_interval=5,
                                      options={"proto_version": "1", "publication_names": self.publication})
            except psycopg2.Error as exc:
                raise CdcError(f"slot {self.slot}: {redact(str(exc).strip().splitlines()[0])}") from None
            decoder = _Decoder(self)
            deadline, idle_since = time.monotonic() + max_seconds, time.monotonic()
            while time.monotonic() < deadline:
                message = cur.read_message()
                if message is None:
                    if time.monotonic() - idle_since > idle_timeout:
                        break
                    select.select([cur], [], [], min(idle_timeout, 0.2))
                    continue
                idle_since = time.monotonic()
                done = decoder.feed(message.payload)
                if done is None:
                    continue
                events, end_lsn = done
                if events:
                    handle(events)
                    handed += len(events)
                cur.send_feedback(flush_lsn=end_lsn, reply=True, force=True)  # only now: handled durably
                transactions += 1
                if max_transactions is not None and transactions >= max_transactions:
                    break
        finally:
            conn.close()
        return handed

    def _connect(self, factory=None):
        url = sa.make_url(self.url)
        kwargs = {"host": url.host or "127.0.0.1", "port": url.port or 5432, "user": url.username,
                  "password": url.password, "dbname": url.database, "connect_timeout": 10}
        try:
            conn = psycopg2.connect(connection_factory=factory, **{k: v for k, v in kwargs.items() if v is not None})
        except psycopg2.Error as exc:
            raise CdcError(f"cannot connect for slot {self.slot}: {redact(str(exc).strip().splitlines()[0])}") from None
        if factory is None:
            conn.autocommit = True
        return conn


class _Decoder:
    """pgoutput protocol version 1: Begin, Relation, Insert, Update, Delete, Commit."""

    def __init__(self, reader: LogicalChangeReader):
        self.reader = reader
        self.relations: dict[int, tuple[tuple[str, str], list[str]]] = {}
        self.events: list[tuple[str, str, dict]] = []
        self.commit_at: datetime | None = None

    def feed(self, data: bytes) -> tuple[list[ChangeEvent], int] | None:
        kind = data[:1]
        if kind == b"B":
            _final_lsn, micros, _xid = struct.unpack_from("!QqI", data, 1)
            self.events, self.commit_at = [], _PG_EPOCH + timedelta(microseconds=micros)
        elif kind == b"R":
            self._relation(data)
        elif kind in (b"I", b"U", b"D"):
            self._change(kind, data)
        elif kind == b"C":
            _flags, commit_lsn, end_lsn, micros = struct.unpack_from("!BQQq", data, 1)
            at = _PG_EPOCH + timedelta(microseconds=micros)
            events = [ChangeEvent(self.reader.side, key, op, at, values, f"{commit_lsn:016X}:{i:06d}")
                      for i, (key, op, values) in enumerate(self.events)]
            self.events = []
            return events, end_lsn
        return None  # Origin, Type, Truncate, Message: nothing to expect a counterpart for

    def _relation(self, data: bytes) -> None:
        rel_id, = struct.unpack_from("!I", data, 1)
        offset = 5
        namespace, offset = _cstring(data, offset)
        name, offset = _cstring(data, offset)
        offset += 1  # replica identity
        count, = struct.unpack_from("!H", data, offset)
        offset += 2
        columns = []
        for _ in range(count):
            offset += 1  # flags
            column, offset = _cstring(data, offset)
            offset += 8  # type oid, type modifier
            columns.append(column)
        self.relations[rel_id] = ((namespace, name), columns)

    def _change(self, kind: bytes, data: bytes) -> None:
        rel_id, = struct.unpack_from("!I", data, 1)
        table, columns = self.relations[rel_id]
        if table != self.reader.table:
            return
        offset, old = 5, None
        if data[offset:offset + 1] in (b"K", b"O"):
            old, offset = _tuple(data, offset + 1, columns)
        if kind == b"D":
            row, op = old or {}, "delete"
        else:
            row, offset = _tuple(data, offset + 1, columns)  # after 'N'
            op = "upsert"
        reader = self.reader
        key = row.get(reader.key_column)
        if old is not None and kind == b"U" and old.get(reader.key_column) not in (None, key):
            self.events.append((str(old[reader.key_column]), "delete", {}))  # the key itself changed
        if key is None:
            return
        values = {} if op == "delete" else {name: row.get(column) for name, column in reader.columns.items()}
        self.events.append((str(key), op, values))


def _cstring(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(b"\0", offset)
    return data[offset:end].decode(), end + 1


def _tuple(data: bytes, offset: int, columns: list[str]) -> tuple[dict, int]:
    count, = struct.unpack_from("!H", data, offset)
    offset += 2
    row = {}
    for column in columns[:count]:
        kind = data[offset:offset + 1]
        offset += 1
        if kind == b"t":
            length, = struct.unpack_from("!I", data, offset)
            row[column] = data[offset + 4:offset + 4 + length].decode()
            offset += 4 + length
        else:  # 'n' null, 'u' an unchanged TOASTed value (not sent)
            row[column] = None
    return row, offset
