"""The declarative reconciliation spec: one YAML file per reconciliation.

Every option is documented in docs/spec-reference.md; keep the two in step.
Models are strict (unknown keys are errors) and frozen, so a spec that loads
is a spec that means what it says.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

# Every part of the spec, importable from here (re-exported).
from recon_pipelines.spec.base import (  # noqa: F401
    KINDS,
    NAME_PATTERN,
    Duration,
    Kind,
    Normalization,
    Side,
    StrictModel,
    Tier,
    check_zone,
    parse_duration,
)
from recon_pipelines.spec.remediation import (  # noqa: F401
    Destination,
    DigestOptions,
    FixSpec,
    HttpCallFix,
    HttpFixTarget,
    LogDestination,
    NotificationsSpec,
    QueueDestination,
    RouteRule,
    SlackDestination,
    SlackDigestDestination,
    SqlFixTarget,
    SqlUpdateFix,
    WebhookDestination,
)
from recon_pipelines.spec.rules import (  # noqa: F401
    RULE_TYPES,
    EscalationSpec,
    ExactRule,
    FieldRule,
    KeyField,
    KeyMapping,
    NullPolicy,
    NumericRule,
    RunSeverityRule,
    SeverityRule,
    SeveritySpec,
    StringRule,
    TimestampRule,
)
from recon_pipelines.spec.runs import CdcSpec, ChangeFeedSpec, ChangeStreamSpec, DeepScanSpec, GuardSpec, IncrementalSpec  # noqa: F401
from recon_pipelines.spec.sources import FileSource, HttpAuth, HttpSource, Pagination, SourceSpec, SqlSource  # noqa: F401
from recon_pipelines.spec.sources import DbtSource  # noqa: F401,E402 - apart from the line above, for clean merges
from recon_pipelines.spec.runs import SampleSpec  # noqa: F401,E402 - apart from the line above it, for clean merges
from recon_pipelines.spec.suggest import SuggestSpec  # noqa: F401,E402
from recon_pipelines.spec.matching import GroupMatch, KeyMatch, MatchRule, WindowMatch, check_match_rules  # noqa: F401,E402
from recon_pipelines.spec.runs import EngineSpec  # noqa: E402 - its own line, for clean merges

# --------------------------------------------------------------------------- the spec


class ExpectSpec(StrictModel):
    """What a healthy reconciliation looks like; the Dagster asset checks turn red or yellow past it."""

    max_open_critical: int = Field(0, ge=0, description="More open critical discrepancies than this: the check fails (ERROR).")
    max_open_warning: int | None = Field(None, ge=0, description="More open warnings than this: the check warns (none: no limit).")
    max_mismatch_rate: float | None = Field(
        None, ge=0, le=1, description="Share of compared records with a discrepancy above which a run warns (none: no limit)."
    )
    schema_change: Literal["warn", "error"] = Field(
        "warn", description="A side's columns added, removed or retyped since the last run: warn (reported, the run "
        "goes on) or error (the schema_unchanged check fails and blocks the comparison; recon run exits 2).")


class ReconciliationSpec(StrictModel):
    name: str = Field(pattern=NAME_PATTERN, description="Identifier; names the Dagster asset group.")

    @field_validator("name")
    @classmethod
    def _no_double_underscore(cls, value: str) -> str:
        # Generated Dagster names join a spec name and a step with "__" (asset ops `<name>__<step>`,
        # the re-check op `<name>__recheck`); a name holding "__" could then meet another's.
        if "__" in value:
            raise ValueError("must not contain '__' (it separates the spec name in generated Dagster names)")
        return value
    description: str = ""
    owner: str | None = None
    source_a: SourceSpec
    source_b: SourceSpec
    key: list[KeyField]
    key_mapping: KeyMapping | None = None
    fields: list[FieldRule] = Field(default_factory=list)
    severity: SeveritySpec = SeveritySpec()
    escalation: EscalationSpec = EscalationSpec()
    notifications: NotificationsSpec = NotificationsSpec()
    routing: list[RouteRule] = Field(default_factory=list, description="Ordered; the first rule that matches wins.")
    fixes: list[FixSpec] = Field(default_factory=list)
    propagation_lag: Duration = Field(
        0.0, description="In-flight grace: a record modified this recently on either side is not judged yet."
    )
    incremental: IncrementalSpec | None = None
    deep_scan: DeepScanSpec = DeepScanSpec()
    change_feed: ChangeFeedSpec | None = None
    change_stream: ChangeStreamSpec | None = None
    guard: GuardSpec = GuardSpec()
    tags: dict[str, str] = Field(default_factory=dict)
    env_allowlist: list[str] = Field(
        default_factory=list,
        description="Environment variables that ${VAR} may expand in free text (name, description, owner, tags).",
    )
    max_runtime: Duration = Field(
        7200.0, gt=0,
        description="Longest a Dagster run of this reconciliation may take (the dagster/max_runtime run tag); default 2h.",
    )
    expect: ExpectSpec = ExpectSpec()
    sample: SampleSpec | None = Field(
        None, description="Compare a deterministic sample of keys (fraction or rows, and a seed) instead of every record.")
    suggest: SuggestSpec | None = Field(
        None, description="Score the records no key paired against each other and report likely pairs (suggested_match).")
    # Pairing strategies (engine/strategies/): two SQL tables are paired inside their database(s)
    # and only what differs is fetched; pushdown: false always reads both sides and pairs locally.
    pushdown: bool = Field(True, description="Pair two PostgreSQL or MariaDB tables where they live when possible.")
    strategy: str | None = Field(
        None, description="Pairing strategy to use (local, postgres_join, mariadb_same_database, bucket_summaries, "
        "canonical_buckets, duckdb_files); default: chosen per run, push-down first (see docs/engine.md).")
    match: list[MatchRule] = Field(
        default_factory=lambda: [KeyMatch(by="key")],
        description="Matching rules in precedence order: key, then group references, then amount/date windows.")
    engine: EngineSpec = Field(EngineSpec(), description="Where the sides are paired: duckdb (local) or spark.")


    @model_validator(mode="after")
    def _consistent(self) -> "ReconciliationSpec":
        if not self.key:
            raise ValueError("key: at least one key field is required")
        names = [k.name for k in self.key] + [f.name for f in self.fields]
        reserved = [n for n in names if n.startswith("__")]
        if reserved:
            raise ValueError(f"names starting with '__' are reserved: {', '.join(reserved)}")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"names used twice among key and fields: {', '.join(dupes)}")
        if self.key_mapping is not None and self.key_mapping.source.active is not None:
            raise ValueError("key_mapping.source.active: a mapping table has no active records")
        for side, source in (("a", self.source_a), ("b", self.source_b)):
            if source.active is not None:
                raise ValueError(f"source_{side}.active: active counts are an N-way summary (a spec with sources:); "
                                 "use filter: to leave records out")
        if self.sample is not None and self.key_mapping is not None:
            raise ValueError("sample: the two sides' keys differ under a key_mapping, so no sample can pick the same keys")
        if self.key_mapping is not None and len(self.key) != 1:
            raise ValueError("key_mapping works with a single key field")
        if self.incremental is not None or self.change_feed is not None or self.change_stream is not None:
            if len(self.key) != 1 or self.key_mapping is not None:
                raise ValueError("incremental runs, change feeds and change streams need a single key field and no key_mapping")
        for side in (self.change_stream.cdc if self.change_stream else {}):
            source = self.source_a if side == "a" else self.source_b
            if not (isinstance(source, SqlSource) and source.table):
                raise ValueError(f"change_stream.cdc.{side}: side {side.upper()} must be a sql source with a table "
                                 "(its database is the one decoded)")
        if self.propagation_lag and not (self.source_a.updated_at and self.source_b.updated_at):
            raise ValueError("propagation_lag: both sources must name their updated_at column")
        if self.incremental is not None:
            if not (self.source_a.updated_at and self.source_b.updated_at):
                raise ValueError("incremental: both sources must name their updated_at column")
            numeric = {f.name for f in self.fields if isinstance(f, NumericRule)}
            unknown = sorted(set(self.incremental.summary_fields) - numeric)
            if unknown:
                raise ValueError(f"incremental.summary_fields: not numeric fields: {', '.join(unknown)}")
        known = {f.name for f in self.fields}
        for i, rule in enumerate(self.severity.rules):
            unknown = sorted(set(rule.field or ()) - known)
            if unknown:
                raise ValueError(f"severity.rules.{i}.field: unknown field(s) {', '.join(unknown)}")
        self._check_routing(known)
        self._check_fixes(known)
        self._check_expectations(set(names))
        self._check_suggest(known)
        self._check_match()
        return self

    def _check_suggest(self, known: set[str]) -> None:
        if self.suggest is None:
            return
        if len(self.key) != 1 or self.key_mapping is not None:
            raise ValueError("suggest: needs a single key field and no key_mapping (a confirmed pair re-keys side B)")
        if self.aggregate_rules:
            raise ValueError("suggest: records left by group and window rules are unmatched_*, not scored for suggestions")
        if self.sample is not None:
            raise ValueError("suggest: a sample compares some keys only, so what it leaves unmatched is no basis for suggestions")
        for where, names in (("compare", [c.field for c in self.suggest.compare]), ("block_on", self.suggest.block_on)):
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ValueError(f"suggest.{where}: unknown field(s) {', '.join(unknown)}; "
                                 f"fields: {', '.join(sorted(known)) or 'none'}")

    @property
    def aggregate_rules(self) -> list[GroupMatch | WindowMatch]:
        """The ``match:`` rules after the key rule (group, window), in order."""
        return [rule for rule in self.match if not isinstance(rule, KeyMatch)]

    def _check_match(self) -> None:
        check_match_rules(self.match)
        if not self.aggregate_rules:
            return
        clashes = [what for what, present in (
            ("key_mapping", self.key_mapping is not None), ("incremental", self.incremental is not None),
            ("change_feed", self.change_feed is not None), ("change_stream", self.change_stream is not None),
            ("sample", self.sample is not None), ("propagation_lag", bool(self.propagation_lag))) if present]
        if clashes:
            # Groups span records a window or a key list would cut through; mapped keys are not the sides' own.
            raise ValueError(f"match: group and window rules compare whole sides; not with {', '.join(clashes)}")
        for i, rule in enumerate(self.match):
            if isinstance(rule, KeyMatch):
                continue
            wanted = {"amount": NumericRule, **({"date": TimestampRule} if isinstance(rule, WindowMatch) else {})}
            for option, rule_type in wanted.items():
                name = getattr(rule, option)
                if not any(f.name == name and isinstance(f, rule_type) for f in self.fields):
                    kind = "numeric" if rule_type is NumericRule else "timestamp"
                    raise ValueError(f"match.{i}.{option}: {name!r} is not a {kind} field of this spec")

    def _check_expectations(self, names: set[str]) -> None:
        """Expectations name the spec's key and field names (what a snapshot holds), once each."""
        if self.key_mapping is not None and self.key_mapping.source.expect:
            raise ValueError("key_mapping.source.expect: expectations apply to source_a and source_b only")
        for side, source in (("a", self.source_a), ("b", self.source_b)):
            seen: set[str] = set()
            for i, expectation in enumerate(source.expect):
                where = f"source_{side}.expect.{i}"
                unknown = [c for c in expectation.columns if c not in names]
                if unknown:
                    raise ValueError(f"{where}: unknown column(s) {', '.join(unknown)}; expectations name the "
                                     f"spec's key and fields: {', '.join(sorted(names))}")
                if expectation.kind == "freshness" and not source.updated_at:
                    raise ValueError(f"{where}: freshness needs source_{side}.updated_at")
                if expectation.check_name in seen:
                    raise ValueError(f"{where}: {expectation.check_name} is used twice on this side; give a name")
                seen.add(expectation.check_name)

    def _check_routing(self, known: set[str]) -> None:
        destinations = self.notifications.destinations
        for i, rule in enumerate(self.routing):
            unknown = sorted(set(rule.field or ()) - known)
            if unknown:
                raise ValueError(f"routing.{i}.field: unknown field(s) {', '.join(unknown)}")
            missing = [name for name in rule.destinations if name not in destinations]
            if missing:
                declared = ", ".join(sorted(destinations)) or "none"
                raise ValueError(f"routing.{i}.destinations: unknown destination(s) {', '.join(missing)} "
                                 f"(declared under notifications.destinations: {declared})")

    def _check_fixes(self, known: set[str]) -> None:
        seen: set[str] = set()
        for i, fix in enumerate(self.fixes):
            if fix.field not in known:
                raise ValueError(f"fixes.{i}.field: unknown field {fix.field!r}")
            if fix.field in seen:
                raise ValueError(f"fixes.{i}.field: {fix.field!r} already has a fix")
            seen.add(fix.field)
            if len(self.key) != 1:
                raise ValueError(f"fixes.{i}: automatic fixes work with a single key field")
            if fix.action == "sql_update":
                changed = self.source_a if fix.system_of_record == "b" else self.source_b
                own_table = changed.type == "sql" and changed.table is not None
                located = fix.target.table is not None and (fix.target.url or fix.target.url_env)
                if not own_table and not located:
                    raise ValueError(f"fixes.{i}.target: the side to change is not a SQL table; give url or url_env and table")

    @property
    def source_names(self) -> tuple[str, str]:
        return (self.source_a.name or "a", self.source_b.name or "b")

    def rule(self, name: str) -> ExactRule | StringRule | NumericRule | TimestampRule:
        for rule in self.fields:
            if rule.name == name:
                return rule
        raise KeyError(name)
