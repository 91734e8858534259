"""recon_pipelines: declarative data reconciliation on Dagster."""

# The Dagster Component is exposed here (the `dagster_dg_cli.registry_modules` entry point names
# this package, so `dg` lists it as recon_pipelines.ReconciliationComponent) but imported on
# first use: `recon` and the core modules do not pay for importing Dagster.
_LAZY = {"ReconciliationComponent": "recon_pipelines.dagster_defs.component"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
