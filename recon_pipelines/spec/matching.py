"""Matching beyond one record per key: the ``match:`` rules (docs/spec-reference.md#match).

Rules apply in order, and a record matched by an earlier rule is not reconsidered: exact key
first (always), then a group reference on each side, then amount and date windows.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator

from recon_pipelines.spec.base import StrictModel

# Bounds of the window search (engine/groups.py): the search costs up to
# sum_{j<=max_lines} C(max_candidates, j) subsets per line searched.
MAX_LINES_LIMIT = 6
MAX_CANDIDATES_LIMIT = 40


class KeyMatch(StrictModel):
    """Records with the same key are one pair (the engine's usual matching)."""

    by: Literal["key"]


class _AmountMatch(StrictModel):
    amount: str = Field(description="A numeric field of the spec: its columns (and scales) are summed.")
    tolerance: Decimal = Field(Decimal(0), ge=0, description="Largest |sum A - sum B| that still agrees (exact decimal).")
    fee_a: str | None = Field(None, description="Column of A subtracted from each A line's amount (net = amount - fee).")
    fee_b: str | None = Field(None, description="Column of B subtracted from each B line's amount.")

    @field_validator("tolerance", mode="before")
    @classmethod
    def _exact(cls, value):
        # A YAML float 0.1 is the double 0.1000000000000000055...; read it as the decimal written.
        return Decimal(repr(value)) if isinstance(value, float) else value


class GroupMatch(_AmountMatch):
    """Lines sharing a group reference (A's ``a`` column = B's ``b`` column) form one group on
    each side; the two groups match when their amounts sum to within ``tolerance``."""

    by: Literal["group"]
    a: str = Field(description="Column of A holding each line's group reference (e.g. the charge's payout id).")
    b: str = Field(description="Column of B holding each line's group reference (e.g. the payout's own id).")


class WindowMatch(_AmountMatch):
    """One line of a side matches up to ``max_lines`` lines of the other side whose dates lie
    within ``days`` of it and whose amounts sum to within ``tolerance`` of its amount."""

    by: Literal["window"]
    date: str = Field(description="A timestamp field of the spec: the lines' dates.")
    days: float = Field(ge=0, description="Largest distance, in days, between a line and each line it groups.")
    max_lines: int = Field(4, ge=1, le=MAX_LINES_LIMIT, description="Largest number of lines summed to match one line.")
    max_candidates: int = Field(
        20, ge=1, le=MAX_CANDIDATES_LIMIT,
        description="A line with more candidates in its window than this is not searched (search_limit_reached).")


MatchRule = Annotated[Union[KeyMatch, GroupMatch, WindowMatch], Field(discriminator="by")]
_ORDER = {"key": 0, "group": 1, "window": 2}


def check_match_rules(rules: list) -> None:
    """Key first, then group, then window, each at most once."""
    kinds = [rule.by for rule in rules]
    if not kinds or kinds[0] != "key":
        raise ValueError("match: the first rule must be {by: key} (exact keys are always matched first)")
    if len(set(kinds)) != len(kinds):
        raise ValueError("match: each rule (key, group, window) may appear once")
    if kinds != sorted(kinds, key=_ORDER.__getitem__):
        raise ValueError("match: rules apply in the order key, group, window")


def group_column(index: int) -> str:
    """The snapshot's name for rule ``index``'s group reference (``__`` names are the engine's own)."""
    return f"__match{index}_group"


def fee_column(index: int) -> str:
    return f"__match{index}_fee"


def match_columns(rules: list, side: str) -> dict[str, str]:
    """Snapshot name -> source column of the columns the group and window rules read beyond the
    spec's fields (group references, fees), for one side."""
    columns: dict[str, str] = {}
    for index, rule in enumerate(rules):
        if isinstance(rule, GroupMatch):
            columns[group_column(index)] = getattr(rule, side)
        fee = getattr(rule, f"fee_{side}", None)
        if fee:
            columns[fee_column(index)] = fee
    return columns
