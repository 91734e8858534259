"""``suggest:``: scored candidate pairs for the records no key paired (docs/suggestions.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recon_pipelines.spec.base import StrictModel, Tier

# How two values of a field are compared (each maps to one Splink comparison, engine/suggest.py).
SIMILARITY = ("exact", "text", "name", "email")


class SuggestField(StrictModel):
    field: str = Field(description="A field of the spec (both sides' values are compared).")
    similarity: Literal[SIMILARITY] = Field(  # type: ignore[valid-type]
        "text", description="exact; text (Jaro-Winkler 0.9/0.7); name (with phonetic levels); email (user and domain).")


class SuggestSpec(StrictModel):
    """Records left as only_in_a / only_in_b are paired by likeness, never by key: each pair
    scoring at least ``threshold`` is reported as a ``suggested_match`` that an operator confirms
    or rejects; a confirmed pair pairs those two records on later runs."""

    compare: list[SuggestField] = Field(min_length=1, description="The fields a person would look at.")
    threshold: float = Field(0.9, gt=0, lt=1, description="Lowest match probability reported.")
    block_on: list[str] = Field(
        default_factory=list,
        description="Fields that must be equal for two records to be scored at all (needed past max_pairs).")
    max_pairs: int = Field(
        2_000_000, gt=0,
        description="Largest unmatched A x unmatched B product scored without block_on; past it, no suggestions.")
    per_record: int = Field(3, ge=1, le=20, description="At most this many suggestions per unmatched record.")
    severity: Tier = "info"

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value):
        # compare: [first_name, last_name] means similarity "text" for each.
        if isinstance(value, dict) and isinstance(value.get("compare"), list):
            value = {**value, "compare": [{"field": c} if isinstance(c, str) else c for c in value["compare"]]}
        return value
