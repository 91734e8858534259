"""Pairing DuckDB database files in place (``duckdb:///path`` on both sides).

The files are attached read-only to the engine's own connection and the local strategy's
``match`` runs on their tables directly: nothing is copied out. It stays separate from
``local.py`` because it reads the sources itself (no snapshot), as a push-down does.

Moves: nothing (``rows_moved`` is 0 on both sides).
"""

from __future__ import annotations

import duckdb
import sqlalchemy as sa

from recon_pipelines.engine.compare import match
from recon_pipelines.engine.pushdown import Clock, PushdownStats, backend_of_url, source_url
from recon_pipelines.engine.strategies.base import PushdownPairing, Side, Sides, remote_refusal, side_columns
from recon_pipelines.redact import redact
from recon_pipelines.sources.base import SourceError
from recon_pipelines.spec.models import ReconciliationSpec, SqlSource
from recon_pipelines.sqlutil import quote_ident as q
from recon_pipelines.sqlutil import sql_literal

STRATEGY = "duckdb_files"


class DuckdbFiles:
    name = STRATEGY
    reads_sources = True
    why = "both sides are DuckDB database files: attached and paired in place"

    def refuses(self, spec: ReconciliationSpec) -> str | None:
        reason = remote_refusal(spec)
        if reason:
            return reason
        for source in (spec.source_a, spec.source_b):
            if not isinstance(source, SqlSource) or source.table is None:
                return "both sources must be sql sources naming a table"
            if source.filter is not None:
                return "a source has a filter"
            if backend_of_url(source_url(source)) != "duckdb":
                return "the sources are not both DuckDB database files"
        for side, source in (("a", spec.source_a), ("b", spec.source_b)):
            path = sa.make_url(source_url(source)).database
            if not path or path == ":memory:":
                return "an in-memory DuckDB database cannot be shared"
            declared = set(source.columns or {}) & set(side_columns(spec, side).values())
            if declared:
                return f"declared column types ({', '.join(sorted(declared))}) are applied locally"
        return None

    def pair(self, spec: ReconciliationSpec, con: duckdb.DuckDBPyConnection, sides: Sides | None) -> PushdownPairing:
        stats = PushdownStats(mode="duckdb")
        clock = Clock(stats)
        aliases: dict[str, str] = {}
        attached = {}
        try:
            for side, source in (("a", spec.source_a), ("b", spec.source_b)):
                path = sa.make_url(source_url(source)).database
                if path not in aliases:
                    aliases[path] = f"__pd_db_{len(aliases)}"
                    try:
                        con.execute(f"ATTACH {sql_literal(path)} AS {q(aliases[path])} (READ_ONLY)")
                    except duckdb.Error as exc:
                        raise SourceError(f"{source.name or 'sql'} (duckdb {path}): "
                                          f"{redact(str(exc).strip().splitlines()[0])}") from None
                scan = ".".join(q(part) for part in (aliases[path], source.db_schema or "main", source.table))
                attached[side] = Side(scan, side_columns(spec, side), f"{source.name or 'sql'} (duckdb {path} {source.table})")
            # __pairs is a table of its own: it outlives the attachments.
            match_stats = match(con, spec, attached["a"], attached["b"])
        finally:
            for alias in aliases.values():
                con.execute(f"DETACH {q(alias)}")
        clock.lap("pair")
        return PushdownPairing(match_stats, STRATEGY, "", {"a": 0, "b": 0}, pushdown=stats)
