"""The discrepancy tracker: discrepancies, their lifecycle and audit trail, in SQL."""

from recon_pipelines.tracker.db import TRACKER_URL_ENV, create_tracker_engine, default_tracker_url, migrate
from recon_pipelines.tracker.store import RunOutcome, Scope, Tracker

__all__ = ["TRACKER_URL_ENV", "RunOutcome", "Scope", "Tracker", "create_tracker_engine", "default_tracker_url", "migrate"]
