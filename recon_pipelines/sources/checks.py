"""Checks a spec against its sources: does every key and compared column exist on its side?

In the sources layer, apart from the model, so loading a spec (and the Dagster code location)
never touches a source; ``recon validate`` runs these, the snapshot asset checks do the same at run time.
"""

from __future__ import annotations

from pathlib import Path

from recon_pipelines.readonly_sql import check_filter, filter_columns, missing_filter_columns
from recon_pipelines.sources import connector_for
from recon_pipelines.sources.base import SourceError
from recon_pipelines.spec.loader import SpecError
from recon_pipelines.spec.models import HttpSource, ReconciliationSpec
from recon_pipelines.spec.nway import NWaySpec


def check_sources(spec: ReconciliationSpec, file: str | Path) -> None:
    """Raise SpecError naming the spec field whose column a source lacks.
    HTTP sources are checked only against their declared ``columns`` (no request is made)."""
    if isinstance(spec, NWaySpec):
        return _check_systems(spec, file)
    for side, source in (("a", spec.source_a), ("b", spec.source_b)):
        available = _available_columns(source, file, f"source_{side}")
        if available is None:
            continue
        name = spec.source_names[0 if side == "a" else 1]
        if source.filter is not None:
            missing = missing_filter_columns(check_filter(source.filter, source.filter_backend()), available)
            if missing:
                raise SpecError(file, f"source_{side}.filter",
                                f"column {missing[0]!r} not found in {name} (it has: {', '.join(sorted(available))})")
        wanted = [(f"key.{k.name}.{side}", getattr(k, side)) for k in spec.key]
        wanted += [(f"fields.{f.name}.{side}", getattr(f, side)) for f in spec.fields]
        if source.updated_at:
            wanted.append((f"source_{side}.updated_at", source.updated_at))
        for path, column in wanted:
            if column not in available:
                raise SpecError(file, path, f"column {column!r} not found in {name} (it has: {', '.join(sorted(available))})")


def _check_systems(spec: NWaySpec, file: str | Path) -> None:
    """The N-way twin: every system has the columns its key, fields, filter and active: name."""
    for system, source in spec.sources.items():
        available = _available_columns(source, file, f"sources.{system}")
        if available is None:
            continue
        has = ", ".join(sorted(available))
        for option in ("filter", "active"):
            condition = getattr(source, option)
            if condition is None:
                continue
            for column in filter_columns(check_filter(condition, source.filter_backend(), option)):
                if column not in available:
                    raise SpecError(file, f"sources.{system}.{option}", f"column {column!r} not found in {system} (it has: {has})")
        wanted = [(f"key.{k.name}.columns.{system}", k.columns[system]) for k in spec.key]
        wanted += [(f"fields.{f.name}.columns.{system}", f.columns[system]) for f in spec.fields]
        for path, column in wanted:
            if column not in available:
                raise SpecError(file, path, f"column {column!r} not found in {system} (it has: {has})")


def _available_columns(source, file: str | Path, where: str) -> set[str] | None:
    """The columns a source has: read from its schema, or an HTTP source's declared ``columns``
    (None when it declares none: no request is made to find out)."""
    if isinstance(source, HttpSource):
        return set(source.columns) if source.columns else None
    try:
        with connector_for(source) as connector:
            return set(connector.schema().names)
    except SourceError as exc:
        raise SpecError(file, where, str(exc)) from None
