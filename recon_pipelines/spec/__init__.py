"""Reconciliation specs: the declarative model and its YAML loader."""

from recon_pipelines.spec.loader import SpecError, load_spec, load_spec_dir, parse_spec
from recon_pipelines.spec.models import (
    KINDS,
    DbtSource,
    ExactRule,
    FileSource,
    HttpSource,
    NumericRule,
    ReconciliationSpec,
    SqlSource,
    StringRule,
    TimestampRule,
)
from recon_pipelines.spec.nway import NWaySpec

__all__ = [
    "KINDS",
    "DbtSource",
    "ExactRule",
    "FileSource",
    "HttpSource",
    "NWaySpec",
    "NumericRule",
    "ReconciliationSpec",
    "SpecError",
    "SqlSource",
    "StringRule",
    "TimestampRule",
    "load_spec",
    "load_spec_dir",
    "parse_spec",
]
