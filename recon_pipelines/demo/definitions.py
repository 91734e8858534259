"""The demo's code location as a `dg` project (`make demo` runs `dg dev`; `dg check defs`).

The demo data is generated under DAGSTER_HOME on first load (see ``prepare_demo``), then the
defs folder (``recon_pipelines/demo/defs``) is loaded: one ReconciliationComponent instance
over ``recon_pipelines/demo/specs``.
"""

from pathlib import Path

import dagster as dg

from recon_pipelines.demo import prepare_demo


@dg.definitions
def defs() -> dg.Definitions:
    prepare_demo()  # the specs read ${RECON_DEMO_DATA}
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
