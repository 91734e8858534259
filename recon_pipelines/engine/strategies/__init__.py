"""Pairing strategies: where the records of both sides are paired (see ``base.py`` for the
interface and the ``__pairs`` shape every strategy leaves behind).

``REGISTRY`` names each strategy's class by import path, so a strategy's dependencies (a
database driver, pyspark) load only when it is considered. Add a strategy with one line; the
order is the order of preference among those that do not refuse a spec. ``local`` always runs
and comes last: it is the fallback.

``choose`` picks one per run: an explicit choice (the spec's ``strategy:``, ``recon run
--strategy``) first, then the first strategy that pairs where the data lives, else local.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

from recon_pipelines.engine.strategies.base import (
    ComparisonError,
    Pairing,
    PairingStrategy,
    PushdownPairing,
    Sides,
    reads_sources,
    remote_refusal,
)
from recon_pipelines.spec.models import ReconciliationSpec

log = logging.getLogger(__name__)

LOCAL = "local"
REGISTRY: dict[str, str] = {
    "duckdb_files": "recon_pipelines.engine.strategies.duckdb_files:DuckdbFiles",
    "postgres_join": "recon_pipelines.engine.strategies.postgres_join:PostgresJoin",
    "mariadb_same_database": "recon_pipelines.engine.strategies.mariadb_join:MariaDbSameDatabase",
    "bucket_summaries": "recon_pipelines.engine.strategies.bucket_summaries:BucketSummaries",
    "canonical_buckets": "recon_pipelines.engine.strategies.cross_database:CanonicalBuckets",
    "spark": "recon_pipelines.engine.strategies.spark:SparkPairing",
    LOCAL: "recon_pipelines.engine.strategies.local:LocalStrategy",
}
# Chosen only when asked for (the spec's ``engine: {type: spark}``, ``--engine spark``), never by
# preference: Spark pays off past one machine, not for every pair of files.
EXPLICIT_ONLY = ("spark",)

__all__ = ["LOCAL", "REGISTRY", "Choice", "Pairing", "PairingStrategy", "PushdownPairing", "Sides", "choose", "reads_sources", "refusals", "strategy"]


def strategy(name: str) -> PairingStrategy:
    """The registered strategy ``name``; a ComparisonError naming the known ones otherwise."""
    if name not in REGISTRY:
        raise ComparisonError(f"strategy: unknown pairing strategy {name!r} (known: {', '.join(REGISTRY)})")
    module, _, attribute = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attribute)()


@dataclass(frozen=True)
class Choice:
    """The strategy a run uses, why, and why each strategy considered before it refused."""

    strategy: PairingStrategy
    reason: str
    refused: dict[str, str]

    @property
    def name(self) -> str:
        return self.strategy.name


def choose(spec: ReconciliationSpec, explicit: str | PairingStrategy | None = None, full_scope: bool = True) -> Choice:
    """Pick the strategy of one run, log it and the refusals of the others.

    ``explicit`` (a name or a configured strategy; else the spec's ``strategy:``, else Spark for
    ``engine: {type: spark}``) is used when it does not refuse; if it does, that is an error (the
    operator asked for it). Runs over a time window or a list of keys
    pair locally: their snapshots are small, and the strategies that read whole tables would
    read everything for them."""
    engine = getattr(getattr(spec, "engine", None), "type", None)
    wanted = explicit or getattr(spec, "strategy", None) or ("spark" if engine == "spark" else None)
    if wanted:
        chosen = strategy(wanted) if isinstance(wanted, str) else wanted
        wanted = chosen.name
        if not full_scope and reads_sources(chosen):
            return _logged(spec, Choice(strategy(LOCAL), f"{wanted} pairs whole tables; this run's scope is a window "
                                        "or keys, paired locally", {}))
        reason = (reads_sources(chosen) and remote_refusal(spec)) or chosen.refuses(spec)
        if reason:
            raise ComparisonError(f"{spec.name}: strategy {wanted} cannot pair this spec: {reason}")
        return _logged(spec, Choice(chosen, "chosen explicitly", {}))
    if not full_scope:
        return _logged(spec, Choice(strategy(LOCAL), "a window or keys scope is paired locally", {}))
    refused: dict[str, str] = {}
    common = remote_refusal(spec)  # what rules out every strategy that reads the sources itself
    for name in REGISTRY:
        if name == LOCAL or name in EXPLICIT_ONLY:
            continue
        candidate = strategy(name)
        if reads_sources(candidate) and common:
            continue
        reason = candidate.refuses(spec)
        if reason is None:
            return _logged(spec, Choice(candidate, getattr(candidate, "why", f"{name} can pair this spec"), refused))
        refused[name] = reason
    why = f"paired locally: {common}" if common else "no strategy pairs where the data lives"
    return _logged(spec, Choice(strategy(LOCAL), why, refused))


def refusals(spec: ReconciliationSpec, choice: Choice) -> dict[str, str]:
    """Why each strategy other than the chosen one (and local) does not pair this spec, in
    ``REGISTRY`` order: those the chooser tried, then the others asked (``recon validate``)."""
    common = remote_refusal(spec)
    out: dict[str, str] = {}
    for name in REGISTRY:
        if name in (LOCAL, choice.name) or name in EXPLICIT_ONLY:
            continue
        if name in choice.refused:
            out[name] = choice.refused[name]
            continue
        candidate = strategy(name)
        out[name] = (reads_sources(candidate) and common) or candidate.refuses(spec) or f"{choice.name} is preferred"
    return out


def _logged(spec: ReconciliationSpec, choice: Choice) -> Choice:
    log.info("%s: pairing with %s: %s", spec.name, choice.name, choice.reason)
    for name, reason in choice.refused.items():
        log.info("%s: %s refused: %s", spec.name, name, reason)
    return choice
