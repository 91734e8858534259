"""``ReconciliationComponent``: reconciliation specs as a Dagster Component (``dg`` projects).

One instance loads a folder of spec files (the same files ``recon run`` takes) and/or specs
written inline in its ``defs.yaml``, validated by the same loader:

    type: recon_pipelines.ReconciliationComponent
    attributes:
      specs_dir: specs          # relative to this defs.yaml's folder
      specs:                    # optional: inline specs, same fields and short forms
        - {name: orders, source_a: ..., source_b: ..., key: id, fields: {amount: numeric}}

A code location may hold any number of instances. Each builds its own specs' asset groups,
jobs, schedules and sensors. What spans every spec (the ``recon`` and ``notifier`` resources,
``discrepancy_action``, the run-failure sensor, notification delivery, the digest) must exist
once and know every spec: the first instance of the component tree builds it from all
instances' specs, found with ``ComponentTree.get_all_components`` (Dagster's own way for a
component to see its siblings); the others leave it out. An instance built outside a ``defs``
folder (a Python test) has no siblings and builds the shared part itself.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import dagster as dg
from dagster.components import ComponentLoadContext, Resolvable, Resolver, Scaffolder, ScaffoldRequest, scaffold_with
from dagster.components.component_scaffolding import scaffold_component
from pydantic import BaseModel, Field

from recon_pipelines.dagster_defs.definitions import shared_definitions, spec_definitions
from recon_pipelines.spec import load_spec_dir
from recon_pipelines.spec.loader import SpecError, parse_spec
from recon_pipelines.spec.models import ReconciliationSpec

DEFS_FILE = "defs.yaml"
SCAFFOLD_SPECS_DIR = "specs"


class ReconciliationScaffoldParams(BaseModel):
    specs_dir: str | None = Field(
        default=None, description="An existing folder of spec files, relative to the new instance's folder or absolute. "
        "Without it, a specs/ folder with a working example (two small CSV files) is created.")


class ReconciliationScaffolder(Scaffolder[ReconciliationScaffoldParams]):
    """``dg scaffold defs recon_pipelines.ReconciliationComponent NAME [--specs-dir PATH]``."""

    @classmethod
    def get_scaffold_params(cls) -> type[ReconciliationScaffoldParams]:
        return ReconciliationScaffoldParams

    def scaffold(self, request: ScaffoldRequest[ReconciliationScaffoldParams]) -> None:
        specs_dir = request.params.specs_dir if request.params else None
        scaffold_component(request, {"specs_dir": specs_dir or SCAFFOLD_SPECS_DIR})
        if specs_dir is None:
            _write_example(Path(request.target_path))


@scaffold_with(ReconciliationScaffolder)
@dataclass
class ReconciliationComponent(dg.Component, Resolvable):
    """Reconciliation specs as asset groups: compare two systems, track every discrepancy.

    ``specs_dir`` is a folder of spec files (``recon validate`` and ``recon run`` read the same
    files); ``specs`` holds specs written inline. See docs/spec-reference.md for the fields.
    """

    specs_dir: Annotated[str | None, Resolver.default(
        description="Folder of spec files (*.yaml), relative to this defs.yaml's folder or absolute.")] = None
    specs: Annotated[Sequence[dict[str, Any]], Resolver.default(
        description="Specs written inline: the fields of a spec file, validated by the same loader.")] = field(
        default_factory=list)

    @classmethod
    def load(cls, attributes, context: ComponentLoadContext) -> "ReconciliationComponent":
        component = super().load(attributes, context)
        component.loaded_specs(context.path)  # spec errors surface at load time, with the file named
        return component

    def loaded_specs(self, folder: Path) -> list[ReconciliationSpec]:
        """This instance's specs; paths resolve against ``folder`` (the one holding defs.yaml)."""
        if getattr(self, "_specs", None) is None:
            self._folder, self._specs = Path(folder), self._read_specs(Path(folder))
        return self._specs

    def _read_specs(self, folder: Path) -> list[ReconciliationSpec]:
        if self.specs_dir is None and not self.specs:
            raise SpecError(folder / DEFS_FILE, "attributes", "give specs_dir (a folder of spec files) or specs (inline)")
        specs: list[ReconciliationSpec] = []
        if self.specs_dir is not None:
            spec_dir = (folder / self.specs_dir).resolve()
            if spec_dir == folder.resolve():
                raise SpecError(folder / DEFS_FILE, "attributes.specs_dir",
                                "keep the spec files in a folder of their own (this folder holds defs.yaml)")
            specs += load_spec_dir(spec_dir)
        for index, raw in enumerate(self.specs):
            try:
                specs.append(parse_spec(dict(raw), source_file=folder / DEFS_FILE))
            except SpecError as exc:
                raise SpecError(exc.file, f"attributes.specs[{index}]" + (f".{exc.path}" if exc.path else ""),
                                exc.message) from None
        return specs

    def build_defs(self, context: ComponentLoadContext) -> dg.Definitions:
        own = self.loaded_specs(context.path)
        defs = [spec_definitions(spec) for spec in own]
        siblings = _instances(context) or [self]
        if siblings[0] is self:  # the first instance of the tree builds what spans them all
            defs.append(shared_definitions(_every_spec(siblings)))
        return dg.Definitions.merge(*defs)


def _every_spec(instances: list[ReconciliationComponent]) -> list[ReconciliationSpec]:
    """All instances' specs; a name loaded twice is an error naming both instance folders."""
    specs, where = [], {}
    for instance in instances:  # all loaded: load() read their specs
        for spec in instance._specs:
            if spec.name in where:
                raise SpecError(instance._folder / DEFS_FILE, "", f"reconciliation {spec.name!r} is also loaded by "
                                f"{where[spec.name] / DEFS_FILE}: spec names must be unique in a code location")
            where[spec.name] = instance._folder
            specs.append(spec)
    return specs


def _instances(context: ComponentLoadContext) -> list[ReconciliationComponent]:
    """Every instance in this code location's component tree, in tree order; [] outside a tree."""
    try:
        instances = context.component_tree.get_all_components(of_type=ReconciliationComponent)
    except Exception:  # noqa: BLE001 (a test tree without a defs folder has no siblings to find)
        return []
    return instances


# --------------------------------------------------------------------------- the scaffolded example

_EXAMPLE_SPEC = """\
# A reconciliation: compare orders in two CSV exports and track what disagrees.
# Replace the sources with your systems (sql, file, http); docs/spec-reference.md has every field.
name: example_orders
source_a: {type: file, name: shop, path: ../data/shop_orders.csv}
source_b: {type: file, name: ledger, path: ../data/ledger_orders.csv}
key: order_id
fields:
  amount: {compare: numeric, abs_tol: 0.01}
  status: exact
"""
_EXAMPLE_DATA = {
    "shop_orders.csv": "order_id,amount,status\n1,10.00,paid\n2,25.50,paid\n3,7.25,refunded\n",
    "ledger_orders.csv": "order_id,amount,status\n1,10.00,paid\n2,25.00,paid\n4,3.00,paid\n",
}


def _write_example(target: Path) -> None:
    specs = target / SCAFFOLD_SPECS_DIR
    specs.mkdir(parents=True, exist_ok=True)
    (specs / "example_orders.yaml").write_text(_EXAMPLE_SPEC, encoding="utf-8")
    data = target / "data"
    data.mkdir(exist_ok=True)
    for name, text in _EXAMPLE_DATA.items():
        (data / name).write_text(text, encoding="utf-8")
