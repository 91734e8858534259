"""recon_pipelines: declarative data reconciliation on Dagster.

The names a Python user needs, importable from here (docs/python-api.md)::

    from recon_pipelines import Side, Tracker, compare, load_spec, side_columns

Each is imported on first use, so ``import recon_pipelines`` (and ``recon --help``) does not pay
for DuckDB, SQLAlchemy or Dagster until a name that needs them is touched.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing would cost more than this module

# name -> the module that defines it. ReconciliationComponent is also how `dg` finds the
# Component (the `dagster_dg_cli.registry_modules` entry point names this package).
_LAZY = {
    # the spec
    "ReconciliationSpec": "recon_pipelines.spec.models",
    "SpecError": "recon_pipelines.spec.loader",
    "load_spec": "recon_pipelines.spec.loader",
    "load_spec_dir": "recon_pipelines.spec.loader",
    "parse_spec": "recon_pipelines.spec.loader",
    # comparing
    "ComparisonError": "recon_pipelines.engine.compare",
    "ComparisonResult": "recon_pipelines.engine.compare",
    "Side": "recon_pipelines.engine.compare",
    "compare": "recon_pipelines.engine.compare",
    "side_columns": "recon_pipelines.engine.compare",
    "SourceError": "recon_pipelines.errors",
    "RunScope": "recon_pipelines.pipeline",
    "run": "recon_pipelines.pipeline",  # one run, the same steps as the asset graph (RunResult)
    # the tracker and re-checks (the function is recon_pipelines.trigger.trigger: a name here
    # equal to a submodule's would be the module or the function depending on import order)
    "Tracker": "recon_pipelines.tracker.store",
    "TriggerError": "recon_pipelines.trigger",
    # Dagster
    "ReconciliationComponent": "recon_pipelines.dagster_defs.component",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports on demand
    from recon_pipelines.dagster_defs.component import ReconciliationComponent
    from recon_pipelines.engine.compare import ComparisonError, ComparisonResult, Side, compare, side_columns
    from recon_pipelines.errors import SourceError
    from recon_pipelines.pipeline import RunScope, run
    from recon_pipelines.spec.loader import SpecError, load_spec, load_spec_dir, parse_spec
    from recon_pipelines.spec.models import ReconciliationSpec
    from recon_pipelines.tracker.store import Tracker
    from recon_pipelines.trigger import TriggerError


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # the next access is a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
