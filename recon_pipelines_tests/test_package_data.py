"""Every file pattern in pyproject's package-data names files that exist: a stale entry (the
tracker once listed an alembic.ini nothing read) hides what the wheel really ships."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_data_pattern_matches_a_file():
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["recon_pipelines"]
    unmatched = [p for p in patterns if not any(f.is_file() for f in (REPO / "recon_pipelines").glob(p))]
    assert unmatched == []
