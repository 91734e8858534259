"""The export guard: a run whose side is empty, or shrank sharply since the previous run of the
same reconciliation and scope, is held as suspicious instead of being applied.

A header-only export would otherwise resolve every open discrepancy and open one
``only_in_a`` per record. What is compared, per side, with the previous applied run:

- the row count: held when it fell by more than ``max_shrink`` (or is 0, unless ``allow_empty``);
- the keys: each run stores the ``SAMPLE_SIZE`` smallest hashes of its distinct keys (a uniform
  sample of them, "bottom-k"); the next run counts how many of those keys it still has. A side
  whose count held up but whose keys were replaced (another customer's file) is held too. The
  estimate is off by about ±4 points at 128 keys; it is compared only when both runs hashed
  keys the same way (``hash_id``), otherwise only the row count is.

Only full-scope runs are guarded: a daily window or a list of keys varies in size by nature
(a quiet Sunday is legitimately empty), and it can only resolve what it read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recon_pipelines.spec.models import GuardSpec

SAMPLE_SIZE = 128
SIDES = ("a", "b")


@dataclass(frozen=True)
class SideSample:
    """One side of a run: its rows, its key sample, and how much of the baseline's sample it kept."""

    rows: int
    sample: tuple[int, ...] = ()
    kept: int | None = None  # baseline sample keys still present; None when not measured
    tested: int = 0  # size of the baseline sample tested


@dataclass(frozen=True)
class Observation:
    """What a run saw of both sides, measured against ``baseline_run_id`` (None: no baseline)."""

    hash_id: str
    sides: dict[str, SideSample] = field(default_factory=dict)
    baseline_run_id: str | None = None

    def to_json(self) -> dict:
        """What ``recon_runs.key_sample`` stores: the next run's baseline."""
        return {"hash": self.hash_id, **{s: {"rows": v.rows, "sample": list(v.sample)} for s, v in self.sides.items()}}


def baseline_sample(baseline: dict | None, side: str, hash_id: str) -> list[int]:
    """The baseline run's key sample of ``side``, if it was hashed as this run hashes."""
    stored = (baseline or {}).get("key_sample") or {}
    if stored.get("hash") != hash_id:
        return []
    return [int(h) for h in (stored.get(side) or {}).get("sample", [])]


def verdict(policy: GuardSpec, names: tuple[str, str], baseline: dict | None, seen: Observation) -> str | None:
    """Why the run must be held (one clause per bad side), or None when it may be applied.

    ``baseline`` is the previous applied run of the same scope (a ``recon_runs`` row) or None
    for the first run: then only emptiness can hold it."""
    problems = []
    for side, name in zip(SIDES, names):
        now = seen.sides[side]
        before = (baseline or {}).get(f"rows_{side}")
        if now.rows == 0:
            if not policy.allow_empty:
                problems.append(f"{name}: 0 rows, " + (f"previous run {before:,}" if before is not None else "no previous run"))
            continue
        if before and 1 - now.rows / before > policy.max_shrink:
            problems.append(f"{name}: {now.rows:,} rows, previous run {before:,} ({1 - now.rows / before:.0%} fewer, "
                            f"more than max_shrink {policy.max_shrink:.0%})")
            continue
        measured = baseline is not None and seen.baseline_run_id == baseline.get("run_id")
        if measured and now.kept is not None and now.tested and 1 - now.kept / now.tested > policy.max_shrink:
            problems.append(f"{name}: {now.rows:,} rows, but only {now.kept / now.tested:.0%} of the previous run's keys "
                            f"are still there (a sample of {now.tested}; more than max_shrink {policy.max_shrink:.0%} gone)")
    return "; ".join(problems) or None


def held_line(problems: str, run_id: str) -> str:
    """The one line an operator reads (CLI, alert, asset check, ``recon runs list``)."""
    return f"{problems}: run held as suspicious; accept with `recon runs accept {run_id}`"


@dataclass(frozen=True)
class Guard:
    """What ``Tracker.apply_run`` needs to decide, under its lock, whether to hold a run."""

    policy: GuardSpec
    names: tuple[str, str]
    observation: Observation

    def check(self, baseline: dict | None, run_id: str) -> str | None:
        problems = verdict(self.policy, self.names, baseline, self.observation)
        return held_line(problems, run_id) if problems else None
