"""N-way specs: three or more systems reconciled in one pass (``sources:`` instead of
``source_a``/``source_b``).

Every key field and compared field names its column per system (``columns:``; a system left
out uses the field's name). A field may name its ``system_of_record`` (one system or a ranked
list): the first of them that holds a record is the reference the others are judged against;
without one (or when none of them holds the record) the reference is the majority (see
engine/nway.py for the exact semantics). Each system may declare ``active:``, a SQL condition
pushed to it like ``filter:``, counted per system in the run summary; and a key mapping table
when its ids differ from the shared key. docs/spec-reference.md documents every option.

Pairwise rules are reused as they are: ``NWayField.pair_rule(x, y)`` is the two-source rule
comparing system ``x`` (as side A) with system ``y`` (as side B).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from recon_pipelines.spec.base import NAME_PATTERN, Duration, Normalization, StrictModel, check_zone, parse_duration
from recon_pipelines.spec.models import ExpectSpec
from recon_pipelines.spec.remediation import NotificationsSpec, RouteRule
from recon_pipelines.spec.rules import RULE_TYPES, EscalationSpec, SeveritySpec
from recon_pipelines.spec.sources import SourceSpec

MIN_SYSTEMS = 3


class NWayKey(StrictModel):
    name: str
    columns: dict[str, str] = Field(description="System name -> the column holding this key field there.")


class SystemKeyMapping(StrictModel):
    """A table translating one system's own ids to the shared key."""

    source: SourceSpec
    key: str = Field(description="Column of the mapping table holding the shared key.")
    id: str = Field(description="Column of the mapping table holding this system's own id.")


class NWayNulls(StrictModel):
    both_null: Literal["equal", "differ"] = "equal"
    allow_null_in: list[str] = Field(
        default_factory=list, description="Systems where a null facing a value is 'not yet propagated', not a discrepancy.")


# Options a field passes on to the pairwise rule unchanged, when set.
_SHARED_OPTIONS = ("values", "normalize", "abs_tol", "rel_tol", "lag")


class NWayField(StrictModel):
    name: str
    compare: Literal["exact", "string", "numeric", "timestamp"] = "exact"
    columns: dict[str, str] = Field(description="System name -> the column holding this field there.")
    system_of_record: list[str] = Field(
        default_factory=list, description="The system owning this field, or a ranked list; empty: the majority decides.")
    nulls: NWayNulls = NWayNulls()
    values: dict[str, list[str | int | float | bool]] | None = None
    normalize: list[Normalization] | None = None
    abs_tol: float | None = Field(None, ge=0)
    rel_tol: float | None = Field(None, ge=0)
    lag: Duration | None = None
    scales: dict[str, float] = Field(default_factory=dict, description="numeric: system -> multiplier applied first.")
    timezones: dict[str, str] = Field(default_factory=dict, description="timestamp: system -> zone of its naive values.")
    epoch_units: dict[str, Literal["s", "ms", "us"]] = Field(
        default_factory=dict, description="timestamp: system -> unit of its epoch numbers.")

    @field_validator("system_of_record", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("lag", mode="before")
    @classmethod
    def _lag(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("timezones")
    @classmethod
    def _zones(cls, value: dict[str, str]) -> dict[str, str]:
        for zone in value.values():
            check_zone(zone)
        return value

    @field_validator("scales")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for system, scale in value.items():
            if not scale > 0:
                raise ValueError(f"{system}: a scale must be greater than 0")
        return value

    def systems_named(self) -> dict[str, list[str]]:
        """Every option that names systems, and the systems it names (checked by the spec)."""
        return {"columns": list(self.columns), "system_of_record": self.system_of_record,
                "nulls.allow_null_in": self.nulls.allow_null_in, "scales": list(self.scales),
                "timezones": list(self.timezones), "epoch_units": list(self.epoch_units)}

    def pair_rule(self, x: str, y: str, name: str | None = None):
        """The two-source rule comparing system ``x`` (side A) with system ``y`` (side B)."""
        options: dict[str, Any] = {o: getattr(self, o) for o in _SHARED_OPTIONS if getattr(self, o) is not None}
        for option, per_system in (("scale", self.scales), ("timezone", self.timezones), ("epoch_unit", self.epoch_units)):
            for side, system in (("a", x), ("b", y)):
                if system in per_system:
                    options[f"{option}_{side}"] = per_system[system]
        allowed = [side for side, system in (("a", x), ("b", y)) if system in self.nulls.allow_null_in]
        return RULE_TYPES[self.compare].model_validate({
            "name": name or self.name, "compare": self.compare, "a": self.columns[x], "b": self.columns[y],
            "nulls": {"both_null": self.nulls.both_null, "allow_null_in": allowed}, **options,
        })


class NWaySpec(StrictModel):
    """A reconciliation of three or more systems (see the module docstring)."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    owner: str | None = None
    sources: dict[str, SourceSpec] = Field(description="System name -> its source, as source_a/source_b take.")
    key: list[NWayKey]
    key_mappings: dict[str, SystemKeyMapping] = Field(
        default_factory=dict, description="System name -> a table translating its ids to the shared key.")
    fields: list[NWayField] = Field(default_factory=list)
    severity: SeveritySpec = SeveritySpec()
    escalation: EscalationSpec = EscalationSpec()
    notifications: NotificationsSpec = NotificationsSpec()
    routing: list[RouteRule] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    env_allowlist: list[str] = Field(default_factory=list)
    max_runtime: Duration = Field(7200.0, gt=0)
    expect: ExpectSpec = ExpectSpec()

    @field_validator("max_runtime", mode="before")
    @classmethod
    def _runtime(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("name")
    @classmethod
    def _no_double_underscore(cls, value: str) -> str:
        if "__" in value:
            raise ValueError("must not contain '__' (it separates the spec name in generated Dagster names)")
        return value

    @field_validator("sources")
    @classmethod
    def _systems(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) < MIN_SYSTEMS:
            raise ValueError(f"name {MIN_SYSTEMS} or more systems (for two, use source_a and source_b)")
        for system, source in value.items():
            if not re.match(NAME_PATTERN, system):
                raise ValueError(f"{system!r}: a system name is lower case letters, digits and _ (e.g. crm)")
            if source.name not in (None, system):
                raise ValueError(f"{system}.name: {source.name!r} differs from the system's name {system!r}; leave it out")
            if source.expect:
                raise ValueError(f"{system}.expect: expectations are not supported in N-way specs yet")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "NWaySpec":
        if not self.key:
            raise ValueError("key: at least one key field is required")
        names = [k.name for k in self.key] + [f.name for f in self.fields]
        bad = [n for n in names if n.startswith("__") or "#" in n]
        if bad:
            raise ValueError(f"names starting with '__' or holding '#' are reserved: {', '.join(bad)}")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"names used twice among key and fields: {', '.join(dupes)}")
        self._check_systems()
        if self.key_mappings and len(self.key) != 1:
            raise ValueError("key_mappings work with a single key field")
        known = {f.name for f in self.fields}
        for i, rule in enumerate(self.severity.rules):
            unknown = sorted(set(rule.field or ()) - known)
            if unknown:
                raise ValueError(f"severity.rules.{i}.field: unknown field(s) {', '.join(unknown)}")
        destinations = self.notifications.destinations
        for i, rule in enumerate(self.routing):
            unknown = sorted(set(rule.field or ()) - known)
            if unknown:
                raise ValueError(f"routing.{i}.field: unknown field(s) {', '.join(unknown)}")
            missing = [d for d in rule.destinations if d not in destinations]
            if missing:
                raise ValueError(f"routing.{i}.destinations: unknown destination(s) {', '.join(missing)}")
        systems = list(self.sources)
        for f in self.fields:  # the pairwise rule's own checks (e.g. an option this compare does not take)
            try:
                f.pair_rule(systems[0], systems[1])
            except ValidationError as exc:
                first = exc.errors()[0]
                option = ".".join(str(p) for p in first["loc"] if p not in ("a", "b")) or "options"
                message = "does not apply to compare: " + f.compare if first["type"] == "extra_forbidden" else first["msg"]
                raise ValueError(f"fields.{f.name}.{option}: {message}") from None
        return self

    def _check_systems(self) -> None:
        """Every system an option names is one of ``sources``; every field maps every system."""
        systems = list(self.sources)

        def check(where: str, named: list[str]) -> None:
            unknown = [s for s in named if s not in self.sources]
            if unknown:
                raise ValueError(f"{where}: unknown system(s) {', '.join(map(repr, unknown))} "
                                 f"(the systems are {', '.join(systems)})")

        for k in self.key:
            check(f"key.{k.name}.columns", list(k.columns))
        for f in self.fields:
            for option, named in f.systems_named().items():
                check(f"fields.{f.name}.{option}", named)
            if len(set(f.system_of_record)) != len(f.system_of_record):
                raise ValueError(f"fields.{f.name}.system_of_record: a system is listed twice")
        check("key_mappings", list(self.key_mappings))
        for system, mapping in self.key_mappings.items():
            if mapping.source.active is not None:
                raise ValueError(f"key_mappings.{system}.source.active: a mapping table has no active records")
        for k in [*self.key, *self.fields]:
            lacking = [s for s in systems if s not in k.columns]
            if lacking:
                raise ValueError(f"{k.name}: no column for {', '.join(lacking)}")

    # ------------------------------------------------------------------ what other parts read

    @property
    def systems(self) -> list[str]:
        return list(self.sources)

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(self.sources)

    def columns_of(self, system: str) -> dict[str, str]:
        """Spec name -> source column for one system: keys first, then fields."""
        columns = {k.name: k.columns[system] for k in self.key}
        columns.update({f.name: f.columns[system] for f in self.fields})
        return columns

    def field(self, name: str) -> NWayField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    # Two-source features an N-way spec does not have (read by the parts both kinds share).
    incremental: ClassVar[None] = None
    change_feed: ClassVar[None] = None
    change_stream: ClassVar[None] = None
    sample: ClassVar[None] = None
    fixes: ClassVar[tuple] = ()
    propagation_lag: ClassVar[float] = 0.0


def active_filter(source) -> str | None:
    """The condition that selects a system's active records: its filter and its ``active:``."""
    if source.active is None:
        return None
    return source.active if source.filter is None else f"({source.filter}) AND ({source.active})"


def is_nway(spec) -> bool:
    return isinstance(spec, NWaySpec)


__all__ = ["MIN_SYSTEMS", "NWayField", "NWayKey", "NWayNulls", "NWaySpec", "SystemKeyMapping", "active_filter",
           "is_nway"]
