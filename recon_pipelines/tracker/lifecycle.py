"""The discrepancy lifecycle: which operator action is allowed from which state.

    new ──acknowledge──> acknowledged ──escalate──> escalated
     │  ╲                     │                        │
     │   ╲──mute──> muted <───┘ (mute)                 │
     │               │ unmute / expiry -> new          │
     └──────── resolve (manual, with a note) ──────────┴──> resolved ──reopen──> new

A run moves discrepancies too: it inserts ``new``, reopens ``resolved`` ones it sees
again, escalates by the spec's rules and resolves (``auto``) open ones it no longer sees.
"""

from __future__ import annotations

from dataclasses import dataclass

ACTIONS = ("acknowledge", "escalate", "resolve", "mute", "unmute", "reopen", "assign", "comment")


@dataclass(frozen=True)
class Transition:
    allowed_from: frozenset[str]
    to: str | None  # None: the status does not change (assign, comment)
    why_not: str  # completes "cannot <action> a <status> discrepancy: ..."


TRANSITIONS: dict[str, Transition] = {
    "acknowledge": Transition(frozenset({"new", "escalated"}), "acknowledged", "only new or escalated ones can be acknowledged"),
    "escalate": Transition(frozenset({"new", "acknowledged"}), "escalated", "only new or acknowledged ones can be escalated"),
    "resolve": Transition(frozenset({"new", "acknowledged", "escalated"}), "resolved",
                          "a muted one must be unmuted first, and a resolved one is already resolved"),
    "mute": Transition(frozenset({"new", "acknowledged", "escalated"}), "muted", "only open, unmuted ones can be muted"),
    "unmute": Transition(frozenset({"muted"}), "new", "it is not muted"),
    "reopen": Transition(frozenset({"resolved"}), "new", "only resolved ones can be reopened"),
    "assign": Transition(frozenset({"new", "acknowledged", "escalated", "muted"}), None, "only open ones can be assigned"),
    "comment": Transition(frozenset({"new", "acknowledged", "escalated", "muted", "resolved"}), None, ""),
}


class TransitionError(ValueError):
    """An operator action that the lifecycle does not allow; nothing was changed."""


def check(action: str, discrepancy_id: str, status: str) -> str | None:
    """The status after ``action``, or TransitionError saying why it is not allowed."""
    if action not in TRANSITIONS:
        raise TransitionError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    rule = TRANSITIONS[action]
    if status not in rule.allowed_from:
        raise TransitionError(f"cannot {action} discrepancy {discrepancy_id}: it is {status}; {rule.why_not}")
    return rule.to
