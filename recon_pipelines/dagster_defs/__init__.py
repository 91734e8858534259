"""The Dagster layer: builds a code location's definitions from a folder of specs."""

from recon_pipelines.dagster_defs.definitions import build_definitions

__all__ = ["build_definitions"]
