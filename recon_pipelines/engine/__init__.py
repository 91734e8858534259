"""The comparison engine: spec-driven, set-based comparison of two sides in DuckDB."""

from recon_pipelines.engine.compare import (
    DISCREPANCY_SCHEMA,
    ComparisonError,
    ComparisonResult,
    FieldStats,
    MatchStats,
    Side,
    compare,
    connect,
    discrepancy_id,
    evaluate,
    match,
    render_key,
    side_columns,
)

__all__ = [
    "DISCREPANCY_SCHEMA",
    "ComparisonError",
    "ComparisonResult",
    "FieldStats",
    "MatchStats",
    "Side",
    "compare",
    "connect",
    "discrepancy_id",
    "evaluate",
    "match",
    "render_key",
    "side_columns",
]
