"""The spec's routing rules: which destinations hear about a notification of a given tier.

Rules are tried in order and the first that matches decides (like severity rules); a rule
matches when each condition it gives holds. A notification no rule matches goes nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from recon_pipelines.spec.models import RouteRule, RunSeverityRule

TIER_RANK = {"critical": 0, "warning": 1, "info": 2}


def destinations_for(rules: Sequence[RouteRule], tier: str, kind: str | None = None,
                     field: str | None = None) -> list[str]:
    """Run summaries have no kind and no field, so rules filtering on those never match them."""
    for rule in rules:
        if rule.tier and tier not in rule.tier:
            continue
        if rule.kind and kind not in rule.kind:
            continue
        if rule.field and field not in rule.field:
            continue
        return list(rule.destinations)
    return []


def highest(tiers: Iterable[str | None]) -> str | None:
    present = [t for t in tiers if t]
    return min(present, key=TIER_RANK.__getitem__) if present else None


@dataclass(frozen=True)
class RunShape:
    """How much of a run disagreed: records with at least one discrepancy, out of all records."""

    affected: int
    records: int | None  # None when the run did not report its row counts

    @property
    def share(self) -> float | None:
        return self.affected / self.records if self.records else None


def run_tier(rules: Sequence[RunSeverityRule], shape: RunShape) -> tuple[str, str] | None:
    """(tier, why) of the first run-level rule that matches, or None."""
    for rule in rules:
        if rule.count_above is not None and not shape.affected > rule.count_above:
            continue
        if rule.share_above is not None and (shape.share is None or not shape.share > rule.share_above):
            continue
        reasons = []
        if rule.count_above is not None:
            reasons.append(f"{shape.affected} records disagree (more than {rule.count_above})")
        if rule.share_above is not None:
            reasons.append(f"{shape.share:.1%} of {shape.records} records disagree (more than {rule.share_above:.1%})")
        return rule.tier, "; ".join(reasons)
    return None
