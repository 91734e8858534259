"""One change on one side, as every stream carries it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

OPS = ("upsert", "delete")


@dataclass(frozen=True)
class ChangeEvent:
    side: str  # "a" or "b"
    key: str
    op: str  # "upsert" (an insert or an update) or "delete"
    at: datetime  # commit time on the source, UTC
    values: dict[str, str | None] = field(default_factory=dict)  # spec field name -> value as text
    position: str = ""  # sortable within its source: what a restart resumes after

    def __post_init__(self):
        if self.side not in ("a", "b"):
            raise ValueError(f"change event: side must be 'a' or 'b', not {self.side!r}")
        if self.op not in OPS:
            raise ValueError(f"change event: op must be one of {', '.join(OPS)}, not {self.op!r}")

    def digest(self) -> str:
        """What a counterpart must repeat to match: the op and the compared values."""
        if self.op == "delete":
            return "delete"
        canonical = json.dumps(sorted(self.values.items()), separators=(",", ":"), default=str)
        return hashlib.md5(canonical.encode()).hexdigest()

    def encode(self) -> bytes:
        return json.dumps({"side": self.side, "key": self.key, "op": self.op, "at": self.at.isoformat(),
                           "values": self.values, "position": self.position}, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes, position: str | None = None) -> "ChangeEvent":
        try:
            raw = json.loads(data)
            at = datetime.fromisoformat(raw["at"])
            return cls(raw["side"], str(raw["key"]), raw["op"], at if at.tzinfo else at.replace(tzinfo=timezone.utc),
                       raw.get("values") or {}, position if position is not None else raw.get("position", ""))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"change event: not a valid event ({type(exc).__name__}: {exc})") from None
