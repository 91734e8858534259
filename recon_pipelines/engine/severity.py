"""Severity tiers from the spec's ordered rules, compiled to one SQL CASE (first match wins)."""

from __future__ import annotations

from recon_pipelines.spec.models import SeveritySpec
from recon_pipelines.sqlutil import sql_literal


def severity_sql(spec: SeveritySpec, kind: str | tuple[str, ...], field: str, difference: str, relative: str) -> str:
    """``kind``: the kind column, or several (a rule's ``kind`` matches when any of them is listed)."""
    kinds = (kind,) if isinstance(kind, str) else kind
    arms = []
    for rule in spec.rules:
        conditions = []
        if rule.kind:
            listed = ", ".join(map(sql_literal, rule.kind))
            conditions.append("(" + " OR ".join(f"{k} IN ({listed})" for k in kinds) + ")")
        if rule.field:
            conditions.append(f"{field} IN ({', '.join(map(sql_literal, rule.field))})")
        if rule.min_difference is not None:
            conditions.append(f"{difference} >= {rule.min_difference!r}")
        if rule.max_difference is not None:
            conditions.append(f"{difference} <= {rule.max_difference!r}")
        if rule.min_relative_difference is not None:
            conditions.append(f"{relative} >= {rule.min_relative_difference!r}")
        condition = " AND ".join(conditions) or "TRUE"
        arms.append(f"WHEN {condition} THEN {sql_literal(rule.tier)}")
    if not arms:
        return sql_literal(spec.default)
    return f"CASE {' '.join(arms)} ELSE {sql_literal(spec.default)} END"

