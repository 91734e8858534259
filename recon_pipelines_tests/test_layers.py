"""The house rule for imports: layers import downwards only, and no two sibling modules or
packages import each other in a circle (imports inside functions count).

The layer table is ``[tool.importlinter]`` in pyproject.toml; import-linter (``lint-imports``)
checks it on the import graph grimp builds from every module's source.
"""

from __future__ import annotations

import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root``, with ``root``'s pyproject.toml."""
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)


def test_the_package_imports_downwards_only_and_has_no_import_cycle():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_top_level_module_has_a_layer():
    """A module missing from the table would escape the layers contract: name it there."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    in_table = {name.strip() for layer in layers for name in re.split(r"[|:]", layer)}
    modules = {m.name for m in pkgutil.iter_modules([str(REPO / "recon_pipelines")])}
    assert modules - in_table == set(), "add these to the layer table in pyproject.toml"
    assert in_table - modules == set(), "these are in the layer table but not in the package"


def test_the_guard_refuses_an_upward_import_inside_a_function_and_a_cycle(tmp_path):
    """The same check on a copy of the package with the two faults it exists for."""
    package = tmp_path / "recon_pipelines"
    shutil.copytree(REPO / "recon_pipelines", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with (package / "spec" / "base.py").open("a", encoding="utf-8") as module:  # the spec reaching up, lazily
        module.write("\n\ndef _upward():\n    from recon_pipelines.tracker import Tracker\n\n    return Tracker\n")
    with (package / "tracker" / "db.py").open("a", encoding="utf-8") as module:  # store imports db already
        module.write("\n\ndef _circle():\n    from recon_pipelines.tracker import store\n\n    return store\n")

    done = lint_imports(tmp_path)

    report = done.stdout + done.stderr
    assert done.returncode == 1, report
    assert "recon_pipelines.spec is not allowed to import recon_pipelines.tracker" in report
    assert "recon_pipelines.spec.base -> recon_pipelines.tracker" in report
    assert "No cycles are allowed in recon_pipelines.tracker" in report, report
