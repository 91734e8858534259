"""What every part of the spec shares: strict models, tiers, kinds, durations and zones."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

Side = Literal["a", "b"]
Tier = Literal["critical", "warning", "info"]
Normalization = Literal["trim", "lower", "upper", "nfc", "collapse_whitespace"]

# Discrepancy kinds. Record-level kinds have no field. The engine reports all but the last;
# a change-stream re-check reports what it still finds for a key whose window passed as
# not_propagated (streams/settle.py), which severity rules may name like any other kind.
KINDS = (
    "only_in_a",
    "only_in_b",
    "duplicate_key_a",
    "duplicate_key_b",
    "invalid_key_a",
    "invalid_key_b",
    "unmapped_a",
    "unmapped_b",
    "field_mismatch",
    "suggested_match",  # engine/suggest.py: a likely pair of unmatched records, for an operator to decide
    # match: group and window rules (engine/groups.py)
    "group_mismatch",
    "unmatched_a",
    "unmatched_b",
    "ambiguous_match",
    "not_propagated",
    # N-way specs (sources:), each naming the systems it concerns (engine/nway.py).
    "missing_in_systems",
    "systems_disagree",
    "duplicate_key_in_system",
    "invalid_key_in_system",
    "unmapped_in_system",
)
Kind = Literal[KINDS]  # type: ignore[valid-type]

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `"90s"`, `"5m"`, `"4h"`, `"2d"`; used for lags and ages."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 60, '60s', '5m' or '4h'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration such as 60, '60s', '5m' or '4h'")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_moment(text: str, *, now: datetime, ahead: bool, what: str) -> datetime:
    """An operator's point in time: a duration from ``now`` (``7d``, ``12h``; later when ``ahead``,
    earlier otherwise) or an ISO date/time, read as UTC when it names no zone."""
    try:
        step = timedelta(seconds=parse_duration(text))
        return now + step if ahead else now - step
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is neither a duration (7d, 12h) nor an ISO date/time") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


# A length of time in seconds, written as 90, "90s", "5m", "4h" or "2d".
Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


def check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'UTC' or 'America/New_York')") from None
    return value


class StrictModel(BaseModel):
    # allow_inf_nan: a tolerance, scale, lag or threshold of .inf / .nan / 1e400 is refused at load,
    # naming the field (an infinite tolerance would make every pair agree).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
