"""The code location: ``dagster dev -m recon_pipelines.definitions``.

Loads every spec of ``$RECON_SPEC_DIR``; without it, the demo (CRM vs billing, billing vs
warehouse), whose generated data is written under DAGSTER_HOME on first load. The demo is also
a ``dg`` project (``recon_pipelines.demo.definitions``, what ``make demo`` serves): both load
the same definitions.
"""

import os
from pathlib import Path

from recon_pipelines.dagster_defs import build_definitions
from recon_pipelines.spec.loader import SPEC_DIR_ENV


def _spec_dir() -> Path:
    if os.environ.get(SPEC_DIR_ENV):
        return Path(os.environ[SPEC_DIR_ENV])
    from recon_pipelines.demo import prepare_demo

    return prepare_demo()


defs = build_definitions(_spec_dir())
