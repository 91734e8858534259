"""The one resource every reconciliation asset uses: where results are stored, and the tracker."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from recon_pipelines.pipeline import RunFolder, RunScope
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.tracker import TRACKER_URL_ENV, Tracker


def default_storage_dir() -> str:
    home = os.environ.get("DAGSTER_HOME")
    return str(Path(home) / "recon_storage") if home else str(Path(".recon/storage").resolve())


class ReconResource(dg.ConfigurableResource):
    """Snapshots and intermediate results go to ``storage_dir`` as Parquet (never pickles);
    discrepancies go to the tracker at ``tracker_url`` (embedded SQLite when unset)."""

    storage_dir: str | None = Field(
        default=None, description="Folder for Parquet snapshots and results; default DAGSTER_HOME/recon_storage."
    )
    tracker_url: str | None = Field(
        default=None,
        description=f"SQLAlchemy URL of the tracker; default ${TRACKER_URL_ENV}, read at run time, or SQLite under "
        f"DAGSTER_HOME. Config is shown in the UI: set it as dg.EnvVar(...) when it holds a password.",
    )
    duckdb_memory_limit: str | None = Field(
        default=None, description="DuckDB memory limit for comparisons (e.g. '8GB'); larger work spills to disk."
    )

    _tracker: Tracker | None = PrivateAttr(default=None)

    def folder(self, spec: ReconciliationSpec, scope: RunScope) -> RunFolder:
        """The run's folder: one per reconciliation and scope (``full``, a partition, a range, keys)."""
        return RunFolder.of(self.storage_dir or default_storage_dir(), spec, scope)

    def spill_dir(self) -> str:
        folder = Path(self.storage_dir or default_storage_dir()) / ".spill"
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)

    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(self.tracker_url or None)
        return self._tracker


class SparkEngine(dg.ConfigurableResource):
    """Where specs with ``engine: {type: spark}`` are paired (docs/engine-spark.md). The master is
    deployment config: set it as ``dg.EnvVar("RECON_SPARK_MASTER")``; unset, the spec's
    ``engine.master``, else ``local[2]``."""

    master: str | None = Field(default=None, description="Spark master URL, e.g. spark://spark-master:7077.")
    conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark settings (spark.executor.memory, ...).")
    staging_dir: str | None = Field(
        default=None, description="Folder the executors write the candidates to and the run reads them from "
        "(on a cluster: a shared volume); default a temporary folder on the run's machine.")

    def strategy(self, spec: ReconciliationSpec):
        """The Spark pairing for a spec that asks for it; None for the default engine."""
        if spec.engine.type != "spark":
            return None
        from recon_pipelines.engine.strategies.spark import SparkPairing, resolve_master

        return SparkPairing(resolve_master(self.master, spec.engine.master), dict(self.conf), self.staging_dir)
