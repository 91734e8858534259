"""The demo: a CRM, a billing export and a warehouse table generated from one customer
base with deliberate drift, and the two reconciliation specs over them (``specs/``).

``ensure_demo_data(folder)`` writes the sources once; point ``RECON_DEMO_DATA`` at that
folder and the specs in ``DEMO_SPECS_DIR`` load. ``ground_truth.json`` beside the data
lists every discrepancy the specs must report. ``python -m recon_pipelines.demo.generate
<folder>`` writes the files and prints the drift table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_EXPORTS = (
    "ACTIVE_COUNTS",
    "DATA_FILES",
    "DEMO_DATA_ENV",
    "DEMO_SPECS_DIR",
    "DEMO_VERSION",
    "GROUND_TRUTH_FILE",
    "REFERENCE_DATE",
    "ensure_demo_data",
    "generate_demo",
    "load_ground_truth",
)
__all__ = [*_EXPORTS, "prepare_demo"]


def prepare_demo() -> Path:
    """Make the demo loadable: data under ``$RECON_DEMO_DATA`` (default: DAGSTER_HOME/demo_data),
    generated on first use, and the variable set for the specs. Returns the specs folder."""
    from recon_pipelines.demo import generate

    home = Path(os.environ.get("DAGSTER_HOME") or ".recon")
    folder = Path(os.environ.get(generate.DEMO_DATA_ENV) or home / "demo_data").resolve()
    generate.ensure_demo_data(folder)
    os.environ[generate.DEMO_DATA_ENV] = str(folder)
    return generate.DEMO_SPECS_DIR


def __getattr__(name: str) -> Any:
    # Imported on first use, so `python -m recon_pipelines.demo.generate` runs the module once.
    if name in _EXPORTS:
        from recon_pipelines.demo import generate

        return getattr(generate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
