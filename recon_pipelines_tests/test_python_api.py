"""The package root's curated names (docs/python-api.md): each resolves to the object its module
defines, ``import recon_pipelines`` imports none of the heavy libraries, and the document's
example runs and prints what the document says."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import recon_pipelines

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "python-api.md"
HEAVY = ("duckdb", "sqlalchemy", "pyarrow", "pydantic", "dagster", "pandas", "httpx", "sqlglot")


def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_every_exported_name_is_its_modules_own_object():
    assert sorted(recon_pipelines.__all__) == sorted(recon_pipelines._LAZY)
    for name, module in recon_pipelines._LAZY.items():
        assert getattr(recon_pipelines, name) is getattr(importlib.import_module(module), name), name
    assert set(recon_pipelines.__all__) <= set(dir(recon_pipelines))
    exported_in_doc = set(re.findall(r"^\| `(\w+)", DOC.read_text(encoding="utf-8"), re.MULTILINE))
    doc_table = DOC.read_text(encoding="utf-8").split("## Example")[0]
    assert all(f"`{name}" in doc_table for name in recon_pipelines.__all__), "document every exported name"
    assert exported_in_doc <= set(recon_pipelines.__all__)


def test_importing_the_package_loads_no_heavy_library(tmp_path):
    done = python("import sys, recon_pipelines\n"
                  f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_documented_example_prints_what_the_document_shows(tmp_path):
    text = DOC.read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    (shown,) = re.findall(r"It prints:\n\n```text\n(.*?)```", text, re.DOTALL)
    done = python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown
