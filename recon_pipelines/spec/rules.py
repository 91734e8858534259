"""Keys, field rules with their null policy, severity tiers and escalation."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from recon_pipelines.spec.base import Duration, Kind, Normalization, Side, StrictModel, Tier, check_zone
from recon_pipelines.spec.sources import SourceSpec


# --------------------------------------------------------------------------- keys


class KeyField(StrictModel):
    name: str
    a: str
    b: str


class KeyMapping(StrictModel):
    """A table that maps A's identifiers to B's, for systems that use different ids."""

    source: SourceSpec
    a: str = Field(description="Column of the mapping table holding A's key.")
    b: str = Field(description="Column of the mapping table holding B's key.")
    cardinality: Literal["one_to_one", "many_to_one", "one_to_many"] = Field(
        "one_to_one",
        description="many_to_one: several A ids map to one B id (A's records are combined); one_to_many: the reverse.")


# --------------------------------------------------------------------------- field rules


class NullPolicy(StrictModel):
    both_null: Literal["equal", "differ"] = "equal"
    allow_null_in: list[Side] = Field(
        default_factory=list,
        description="Sides on which a null facing a value is 'not yet propagated', not a discrepancy.",
    )


class _RuleBase(StrictModel):
    name: str
    a: str
    b: str
    nulls: NullPolicy = NullPolicy()


class ExactRule(_RuleBase):
    compare: Literal["exact"] = "exact"
    values: dict[str, list[str | int | float | bool]] = Field(
        default_factory=dict, description="Canonical value -> aliases treated as equal to it."
    )


class StringRule(_RuleBase):
    compare: Literal["string"]
    normalize: list[Normalization] = Field(default_factory=lambda: ["trim", "nfc"])
    values: dict[str, list[str | int | float | bool]] = Field(default_factory=dict)


class NumericRule(_RuleBase):
    compare: Literal["numeric"]
    abs_tol: float = Field(0.0, ge=0)
    rel_tol: float = Field(0.0, ge=0)
    scale_a: float = Field(1.0, gt=0, description="Multiplier applied to A's values first (e.g. 0.01 for cents).")
    scale_b: float = Field(1.0, gt=0, description="Multiplier applied to B's values first.")


class TimestampRule(_RuleBase):
    compare: Literal["timestamp"]
    lag: Duration = 0.0
    timezone_a: str = Field("UTC", description="Zone of naive timestamps on side A.")
    timezone_b: str = Field("UTC", description="Zone of naive timestamps on side B.")
    epoch_unit_a: Literal["s", "ms", "us"] | None = Field(
        None, description="Unit of epoch numbers on side A (number columns default to s; when set, text holding a number is an epoch too).")
    epoch_unit_b: Literal["s", "ms", "us"] | None = Field(None, description="Unit of epoch numbers on side B.")


    @field_validator("timezone_a", "timezone_b")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)


FieldRule = Annotated[
    Union[ExactRule, StringRule, NumericRule, TimestampRule], Field(discriminator="compare")
]
RULE_TYPES = {"exact": ExactRule, "string": StringRule, "numeric": NumericRule, "timestamp": TimestampRule}


# --------------------------------------------------------------------------- severity


class SeverityRule(StrictModel):
    """First matching rule wins; a rule with no condition matches everything."""

    tier: Tier
    kind: list[Kind] | None = None  # type: ignore[valid-type]
    field: list[str] | None = None
    min_difference: float | None = Field(None, ge=0, description="|a - b| at least this (numeric/timestamp).")
    max_difference: float | None = Field(None, ge=0, description="|a - b| at most this.")
    min_relative_difference: float | None = Field(None, ge=0)

    @field_validator("kind", "field", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class RunSeverityRule(StrictModel):
    """Run-level: a run in which many records disagree gets a run summary at ``tier``."""

    tier: Tier
    count_above: int | None = Field(None, ge=0, description="More than this many records with a discrepancy in the run.")
    share_above: float | None = Field(None, ge=0, lt=1, description="More than this share of the run's records (0.01 = 1%).")

    @model_validator(mode="after")
    def _one_condition(self) -> "RunSeverityRule":
        if self.count_above is None and self.share_above is None:
            raise ValueError("give count_above or share_above (or both)")
        return self


class SeveritySpec(StrictModel):
    default: Tier = "warning"
    rules: list[SeverityRule] = Field(default_factory=list)
    run: list[RunSeverityRule] = Field(
        default_factory=list, description="Ordered run-level rules; the first that matches sets the run summary's tier."
    )


# --------------------------------------------------------------------------- escalation


class EscalationSpec(StrictModel):
    """When a run moves an open discrepancy (new or acknowledged) to ``escalated``."""

    after_open: Duration | None = Field(None, description="Open longer than this (e.g. '3d').")
    after_runs: int | None = Field(None, ge=1, description="Seen in more than this many consecutive runs.")
    severities: list[Tier] = Field(default_factory=list, description="Escalate at once at these tiers.")

