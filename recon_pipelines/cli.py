"""The ``recon`` command line: validate specs, run one reconciliation, read the tracker.

Exit codes follow diff tools: 0 the sides agree, 1 discrepancies were found, 2 an error.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from recon_pipelines.cli_dbt import dbt_sources
from recon_pipelines.cli_errors import UserError, one_line
from recon_pipelines.cli_notifications import notifications
from recon_pipelines.cli_runs import runs
from recon_pipelines.cli_shared import (
    EXIT_AGREE,
    EXIT_ERROR,
    EXIT_FOUND,
    cell_text,
    displayed,
    group_tracker,
    group_tracker_url_option,
    open_tracker,
    text_table,
    tracker_url_option,
    write_discrepancies,
    write_rows,
)
from recon_pipelines.cli_streams import streams
from recon_pipelines.cli_suggestions import suggestions
from recon_pipelines.cli_web import register as register_web_commands
from recon_pipelines.identity import os_user
from recon_pipelines.sources.checks import check_sources
from recon_pipelines.spec import SpecError, load_spec
from recon_pipelines.spec.loader import SPEC_DIR_ENV
from recon_pipelines.spec.nway import is_nway
from recon_pipelines.spec.base import parse_duration, parse_moment
from recon_pipelines.terminal import for_terminal
from recon_pipelines.tracker.schema import STATUSES


OUTPUT_COLUMNS = ("id", "kind", "key", "field", "value_a", "value_b", "severity", "reason", "difference", "detail")
RUN_TABLE_COLUMNS = ("id", "severity", "kind", "key", "field", "value_a", "value_b", "difference", "detail")
STATUS_CHOICE = click.Choice([*STATUSES, "open"])  # an unknown status is an error (exit 2), not an empty list


class ReconGroup(click.Group):
    """The one place where errors become exit code 2 and one line on stderr naming the file,
    source or setting at fault (``cli_errors.one_line``), never a traceback unless ``--debug``.
    Exit 1 stays reserved for "discrepancies found"."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise  # usage errors already exit 2 with click's message
        except Exception as exc:
            if ctx.params.get("debug"):
                traceback.print_exc()
            click.echo(f"error: {for_terminal(one_line(exc))}", err=True)  # redacted, then escaped
            sys.exit(EXIT_ERROR)


@click.group(cls=ReconGroup)
@click.version_option(package_name="recon_pipelines")
@click.option("--debug", is_flag=True, help="On an error, also print the traceback.")
def main(debug: bool) -> None:
    """Reconcile two systems and track every discrepancy until it is resolved.

    Exit codes: 0 the sides agree, 1 discrepancies found, 2 anything else (bad spec, unreadable
    source, unreachable tracker), with one line on stderr saying which file or setting."""


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--offline", is_flag=True, help="Check the specs only; do not open the sources to check their columns.")
def validate(paths: tuple[Path, ...], offline: bool) -> None:
    """Load and check specs: folders or files; by default the folder $RECON_SPEC_DIR, else ./specs.

    Every spec is checked (one line per bad one; exit 2 if any), every column is looked up in
    its source (unless --offline), and the Dagster definitions of all of them are built and
    validated together, so names that would collide in the code location are caught here."""
    from recon_pipelines.spec.loader import spec_files

    targets = list(paths) or [_default_spec_dir()]
    problems: list[str] = []
    loaded: list[tuple] = []
    for target in targets:
        for file in spec_files(target) if target.is_dir() else [target]:
            try:
                _prepare_demo_data(file)  # a demo spec validates without RECON_DEMO_DATA, as it runs
                spec = load_spec(file)
                if not offline:
                    check_sources(spec, file)
            except SpecError as exc:
                problems.append(one_line(exc))
            except Exception as exc:  # noqa: BLE001 - reported as one line like every other problem
                problems.append(f"{file}: {one_line(exc)}")
            else:
                loaded.append((spec, file))
    first_file: dict[str, Path] = {}
    for spec, file in loaded:
        if spec.name in first_file:
            problems.append(f"{file}: name: {spec.name!r} is also the name of {first_file[spec.name]}")
        first_file.setdefault(spec.name, file)
    if loaded and len(first_file) == len(loaded):
        problem = _definitions_problem([spec for spec, _ in loaded])
        if problem:
            problems.append(f"dagster definitions: {problem}")
    for spec, _ in loaded:
        click.echo(f"ok  {for_terminal(spec.name)}  ({' vs '.join(map(for_terminal, spec.source_names))}, "
                   f"{len(spec.key)} key field(s), {len(spec.fields)} compared field(s))")
        if is_nway(spec):  # one local pass over every system: no push-down, no pairwise type check
            continue
        if not offline:  # choosing opens the databases (table definitions only)
            from recon_pipelines.schema_diff import type_difference_lines

            for line in [*_pairing_lines(spec), *type_difference_lines(spec)]:
                click.echo(f"    {for_terminal(line)}")
    for problem in problems:
        click.echo(f"error: {for_terminal(problem)}", err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s); {len(loaded)} spec(s) loaded")  # stdout: stderr holds only the errors
        sys.exit(EXIT_ERROR)
    click.echo(f"{len(loaded)} spec(s) valid")


def _pairing_lines(spec) -> list[str]:
    """Where ``recon run`` pairs the sides: on Spark when the spec's engine is spark (or why
    Spark refuses the spec), otherwise the pairing strategy and why each other is refused."""
    if spec.engine.type == "spark":
        from recon_pipelines.engine.strategies.spark import SparkPairing, resolve_master

        reason = SparkPairing().refuses(spec)
        if reason:
            return [f"engine: spark refuses this spec: {reason}"]
        return [f"engine: spark on {resolve_master(None, spec.engine.master)}; the rules run locally"]
    return _strategy_lines(spec)


def _strategy_lines(spec) -> list[str]:
    """Which pairing strategy a full run uses and why (``strategies.choose``), then why each
    other strategy does not pair the spec (strategies refused for the same reason share a line)."""
    from recon_pipelines.engine import strategies

    try:
        choice = strategies.choose(spec)
        refused = strategies.refusals(spec, choice)
    except Exception as exc:  # noqa: BLE001 - validate reports, it does not stop on a source it cannot open
        return [f"strategy: {one_line(exc)}"]
    by_reason: dict[str, list[str]] = {}
    for name, reason in refused.items():
        by_reason.setdefault(reason, []).append(name)
    return [f"strategy: {choice.name} ({choice.reason})"] + [f"refused: {', '.join(names)}: {reason}"
                                                          for reason, names in by_reason.items()]


def _default_spec_dir() -> Path:
    folder = Path(os.environ.get(SPEC_DIR_ENV) or "specs")
    if not folder.is_dir():
        how = f"${SPEC_DIR_ENV} names it" if os.environ.get(SPEC_DIR_ENV) else f"the default when ${SPEC_DIR_ENV} is unset"
        raise UserError(f"spec folder {folder} not found ({how}); give spec files or folders, or set {SPEC_DIR_ENV}")
    return folder


def _definitions_problem(specs) -> str | None:
    """What stops the Dagster code location from loading these specs together, or None."""
    import dagster as dg

    from recon_pipelines.dagster_defs import build_definitions

    try:
        with warnings.catch_warnings():  # Dagster's Beta/Preview notices say nothing about the specs
            warnings.simplefilter("ignore")
            dg.Definitions.validate_loadable(build_definitions(specs=specs))
    except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
        return one_line(exc)
    return None


@main.command()
@click.argument("spec_file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "html"]), default="table", show_default=True,
              help="How discrepancies are written (json: one JSON object per line; html: a report file, needs --output).")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write discrepancies to this file instead of stdout.")
@click.option("--limit", type=int, default=50, show_default=True, help="Rows shown by --format table on stdout.")
@click.option("--track", is_flag=True, help="Also fold the result into the tracker, as a deep scan does (export guard "
              "and notifications included); a run held as suspicious exits 2.")
@tracker_url_option("With --track, or to read confirmed suggested matches.")
@click.option("--strategy", default=None, help="Pairing strategy (local, postgres_join, mariadb_same_database, "
              "bucket_summaries, canonical_buckets, duckdb_files, spark) instead of the one chosen per run; "
              "`recon validate` shows the choice.")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default=None,
              help="Where the sides are paired: spark (the spark strategy) or duckdb (local); default the spec's "
                   "engine.type, then the strategy chosen per run. The rules always run locally.")
@click.option("--spark-master", default=None,
              help="With the spark engine; default $RECON_SPARK_MASTER, else the spec's engine.master, else local[2].")
def run(spec_file: Path, fmt: str, output: Path | None, limit: int, track: bool, tracker_url: str | None,
        strategy: str | None, engine: str | None, spark_master: str | None) -> None:
    """Run one reconciliation without Dagster and report what disagrees. Exit 1 when anything does."""
    from recon_pipelines import pipeline

    if fmt == "html" and output is None:
        raise ValueError("--format html writes a report file: give --output report.html")
    _prepare_demo_data(spec_file)
    spec = load_spec(spec_file)
    if not is_nway(spec):
        strategy = _engine_strategy(spec, strategy, engine, spark_master)
    check_sources(spec, spec_file)  # a missing column is named by its spec field, before any work
    if is_nway(spec):  # three or more systems: cli_nway.py
        from recon_pipelines.cli_nway import run_nway_command

        run_nway_command(spec, fmt, output, limit, track, tracker_url)
    # --track folds the run into the tracker as a deep scan does (export guard, notification outbox).
    tracker, on_outcome, decided = None, None, None
    if track:
        from recon_pipelines.remediation.notifications import notification_writer

        tracker, on_outcome = open_tracker(tracker_url), notification_writer(spec)
    else:
        decided = _match_decisions(spec, tracker_url)
    result = pipeline.run(spec, tracker=tracker, strategy=strategy, warn=_warn, on_outcome=on_outcome, decided=decided)
    if track and result.outcome.held:
        click.echo(for_terminal(result.outcome.held, keep=chr(10)), err=True)
        sys.exit(EXIT_ERROR)
    rows, summary = result.discrepancies.to_pylist(), result.summary()
    rows = [displayed(row) for row in rows]
    # With json/csv on stdout the summary goes to stderr, so stdout stays machine-readable.
    click.echo(_summary_text(spec.name, spec.source_names, summary), err=output is None and fmt != "table")
    if track:
        o = result.outcome
        click.echo(f"  tracker         {len(o.new_ids) + len(o.reopened_ids):,} opened, {len(o.resolved_ids):,} resolved, "
                   f"{o.open_count:,} open (run {o.run_id})", err=output is None and fmt != "table")
    if fmt == "html":
        from recon_pipelines.cli_web import write_one_off_report

        write_one_off_report(spec.name, summary, rows, output)
    else:
        write_discrepancies(rows, fmt, output, limit, OUTPUT_COLUMNS, RUN_TABLE_COLUMNS)
    sys.exit(EXIT_FOUND if rows else EXIT_AGREE)


def _warn(line: str) -> None:
    click.echo(for_terminal(f"warning: {line}"), err=True)


@main.command()
@click.argument("reconciliation")
@click.option("--keys", default=None, help="Comma-separated record keys to re-check.")
@click.option("--from", "date_from", default=None, help="First day (YYYY-MM-DD) of records modified in a range.")
@click.option("--to", "date_to", default=None, help="Last day (YYYY-MM-DD, inclusive).")
@click.option("--full", is_flag=True, help="Compare everything (a deep scan).")
@click.option("--url", default=None,
              help="Dagster webserver. Default: $RECON_DAGSTER_URL, else http://127.0.0.1:$DAGSTER_PORT "
              "(the port `make demo` serves on; 3000 when unset).")
@click.option("--local", is_flag=True, help="Run here, in this process, instead of on the webserver.")
@click.option("--wait", is_flag=True, help="Wait for the run to finish and list the discrepancies it found.")
@tracker_url_option("Tracker read by --wait (the webserver's).")
@click.option("--verbose", is_flag=True, help="--local: show Dagster's warnings and event log.")
def trigger(reconciliation, keys, date_from, date_to, full, url, local, wait, tracker_url, verbose) -> None:
    """Re-check keys, a date range or everything now (the run shows in the Dagster UI)."""
    from recon_pipelines.trigger import TriggerError
    from recon_pipelines.trigger import trigger as launch

    try:
        result = launch(reconciliation, keys=[k.strip() for k in keys.split(",") if k.strip()] if keys else None,
                        date_from=date_from, date_to=date_to, full=full, url=url, local=local, wait=wait,
                        verbose=verbose)
    except TriggerError as exc:
        raise UserError(str(exc)) from None
    click.echo(for_terminal(f"run {result.run_id}: {result.status}"))
    if result.url:
        click.echo(f"  {for_terminal(result.url)}")
    if result.status in ("FAILURE", "CANCELED"):
        sys.exit(EXIT_ERROR)
    if wait or local:
        _echo_run_discrepancies(open_tracker(tracker_url), result.run_id)


@main.group(invoke_without_command=True)
@click.option("--status", default=None, type=STATUS_CHOICE, help="One status, or 'open' for every open state.")
@click.option("--reconciliation", "-r", default=None)
@click.option("--severity", default=None, type=click.Choice(["critical", "warning", "info"]))
@group_tracker_url_option()
@click.option("--older-than", default=None, help="Open for longer than this duration (e.g. 3d).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.pass_context
def discrepancies(ctx, status, reconciliation, severity, older_than, fmt) -> None:
    """What the tracker holds, and operator actions on it (lists when no subcommand is given)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_discrepancies, status=status, reconciliation=reconciliation, severity=severity,
                   older_than=older_than, fmt=fmt)


@discrepancies.command("list")
@click.option("--status", default=None, type=STATUS_CHOICE, help="One status, or 'open' for every open state.")
@click.option("--reconciliation", "-r", default=None)
@click.option("--severity", default=None, type=click.Choice(["critical", "warning", "info"]))
@click.option("--older-than", default=None, help="Open for longer than this duration (e.g. 3d).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.pass_context
def list_discrepancies(ctx, status, reconciliation, severity, older_than, fmt) -> None:
    """List discrepancies, newest first."""
    age = _duration("--older-than", older_than) if older_than else None
    rows = group_tracker(ctx).discrepancies(reconciliation, status=status, severity=severity, older_than=age)
    columns = ("id", "reconciliation", "status", "severity", "kind", "key", "field", "value_a", "value_b", "first_seen", "last_seen", "times_seen")
    rows = [{c: r[c] for c in columns} for r in rows]
    if fmt == "table":
        click.echo(text_table(rows, columns) if rows else "no discrepancies")
    else:
        write_rows(rows, fmt, sys.stdout, columns)


@discrepancies.command("show")
@click.argument("discrepancy_id")
@click.pass_context
def show(ctx, discrepancy_id: str) -> None:
    """One discrepancy with its full history: every transition, by whom, in which run."""
    tracker = group_tracker(ctx)
    row = tracker.get(discrepancy_id)
    if row is None:
        raise LookupError(f"no discrepancy with id {discrepancy_id!r}")
    width = max(map(len, row))
    for name, value in row.items():
        click.echo(f"{cell_text(name).ljust(width)}  {cell_text(value)}")
    click.echo("\nhistory:")
    for event in tracker.history(discrepancy_id):
        transition = f"{event['from_status'] or '-'} -> {event['to_status'] or '-'}"
        click.echo(for_terminal(
            f"  {cell_text(event['at'])}  {event['action']:<12} {transition:<26} by {event['actor']}"
            f"{'  run ' + event['run_id'] if event['run_id'] else ''}{'  (' + event['note'] + ')' if event['note'] else ''}"))


ACTION_COMMANDS = {
    "ack": ("acknowledge", "Acknowledge: someone is handling it."),
    "escalate": ("escalate", "Escalate by hand."),
    "resolve": ("resolve", "Resolve by hand (needs --note saying why)."),
    "mute": ("mute", "Mute a known, accepted difference until --until."),
    "unmute": ("unmute", "Unmute: the discrepancy is open again."),
    "reopen": ("reopen", "Reopen a resolved discrepancy."),
    "assign": ("assign", "Assign to someone (--to)."),
    "comment": ("comment", "Add a note to the history (--note)."),
}


def _action_command(command: str, action: str, help_text: str) -> None:
    @discrepancies.command(command, help=help_text)
    @click.argument("ids", nargs=-1, required=True)
    @click.option("--actor", "on_behalf_of", default=None, metavar="NAME",
                  help="Acting on behalf of NAME: recorded in the note. The audit trail's actor is always "
                       "the OS account running recon.")
    @click.option("--note", default=None, help="Why; recorded in the audit trail.")
    @click.option("--until", "until", default=None, help="mute: a duration from now (7d, 12h) or an ISO date/time.")
    @click.option("--to", "assignee", default=None, help="assign: who takes it.")
    @click.pass_context
    def run_action(ctx, ids, on_behalf_of, note, until, assignee):
        rows = group_tracker(ctx).act(ids, action, os_user(), note=note, until=_until(until), assignee=assignee,
                                 on_behalf_of=on_behalf_of)
        for row in rows:
            click.echo(for_terminal(f"{row['id']}  {row['status']}"))


for _command, (_action, _help) in ACTION_COMMANDS.items():
    _action_command(_command, _action, _help)


# --------------------------------------------------------------------------- helpers


def _until(text: str | None) -> datetime | None:
    return None if text is None else parse_moment(text, now=datetime.now(timezone.utc), ahead=True, what="--until")


def _duration(option: str, text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as exc:
        raise UserError(f"{option} {text!r}: {exc}") from None


def _engine_strategy(spec, strategy: str | None, engine: str | None, spark_master: str | None):
    """``--engine`` (else the spec's ``engine.type``) as the run's pairing strategy: spark pairs on
    Spark (a spec Spark refuses is named before any source is read), duckdb pairs locally."""
    from recon_pipelines.engine import ComparisonError

    if (engine or spec.engine.type) == "spark":
        from recon_pipelines.engine.strategies.spark import SparkPairing

        pairing = SparkPairing(master=spark_master)
        reason = pairing.refuses(spec)
        if reason:
            raise ComparisonError(f"{spec.name}: the spark engine cannot run this spec: {reason}")
        return pairing
    return strategy or ("local" if engine == "duckdb" and spec.engine.type == "spark" else None)


def _match_decisions(spec, url: str | None):
    """An untracked run still pairs what an operator confirmed: read the decisions from the
    tracker when there is one (never creating it)."""
    if spec.suggest is None:
        return None
    from recon_pipelines.pipeline import MatchDecisions
    from recon_pipelines.tracker import Tracker
    from recon_pipelines.tracker.db import default_tracker_url

    url = url or default_tracker_url()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    return MatchDecisions.of(Tracker(url, migrate_schema=False), spec)


def _echo_run_discrepancies(tracker, run_id: str) -> None:
    """What one Dagster run found, as the tracker recorded it (its runs are ``<run id>:<scope>``)."""
    if not tracker.runs_of(run_id):
        click.echo(f"the tracker at {tracker.url} has no record of run {for_terminal(run_id)}: read it with the webserver's "
                   "DAGSTER_HOME or RECON_TRACKER_URL (or open the run's page)")
        return
    rows = tracker.seen_in_run(run_id)
    click.echo(f"{len(rows)} discrepancies found" + (":" if rows else ""))
    if rows:
        click.echo(text_table(rows, ("id", "status", "severity", "kind", "key", "field", "value_a", "value_b", "detail")))


def _prepare_demo_data(spec_file: Path) -> None:
    """A demo spec run by hand finds its data without RECON_DEMO_DATA: generated on first use,
    where the demo keeps it (DAGSTER_HOME/demo_data, as `make demo`)."""
    from recon_pipelines.demo import DEMO_DATA_ENV, DEMO_SPECS_DIR

    try:
        demo_spec = Path(os.path.realpath(spec_file)).is_relative_to(DEMO_SPECS_DIR)  # realpath: no raise on a loop
    except (OSError, ValueError):
        return  # loading the spec names what is wrong with the path
    if os.environ.get(DEMO_DATA_ENV) or not demo_spec:
        return
    from recon_pipelines.demo import prepare_demo

    prepare_demo()


def _summary_text(name: str, sources: tuple[str, str], s: dict) -> str:
    name, a, b = for_terminal(name), for_terminal(sources[0]), for_terminal(sources[1])
    both = lambda key: f"{a}={s[f'{key}_a']:,}  {b}={s[f'{key}_b']:,}"  # noqa: E731
    lines = [("rows", f"{a}={s['rows_a']:,}  {b}={s['rows_b']:,}"),
             ("matched", f"{s['matched']:,} ({s['identical']:,} identical)"),
             (f"only in {a}", f"{s['only_in_a']:,}"),
             (f"only in {b}", f"{s['only_in_b']:,}")]
    if s.get("groups"):  # then those records went on to the match: group and window rules
        lines[2:4] = [("left by key", f"{a}={s['only_in_a']:,}  {b}={s['only_in_b']:,} (for the group and window rules)")]
    for label, key in (("duplicate keys", "duplicate_keys"), ("invalid keys", "invalid_key_rows"), ("unmapped", "unmapped_rows")):
        if s[f"{key}_a"] or s[f"{key}_b"]:
            lines.append((label, both(key)))
    mismatched = {f: st["mismatches"] for f, st in s["fields"].items() if st["mismatches"]}
    if mismatched:
        lines.append(("field mismatches", ", ".join(f"{for_terminal(f)}={n:,}" for f, n in mismatched.items())))
    if s.get("groups"):  # match: group and window rules
        g = s["groups"]
        lines.append(("groups", f"{g['groups_matched']:,} matched, {g['groups_mismatched']:,} with sums that differ, "
                                f"{g['window_matches']:,} window matches, {g['ambiguous']:,} ambiguous"))
        lines.append(("unmatched lines", f"{a}={g['unmatched_a']:,}  {b}={g['unmatched_b']:,}"
                                         + (f"  ({g['search_limit_reached']:,} past the search limit)" if g["search_limit_reached"] else "")))
    lines.append(("discrepancies", f"{s['discrepancies']:,}"))
    if s.get("suggestions"):
        g = s["suggestions"]
        lines.append(("suggested pairs", g.get("skipped") or f"{g['suggested']:,} of {g['scored_pairs']:,} scored "
                                                             f"(see `recon suggestions list` once tracked)"))
    if s.get("strategy") and s["strategy"] != "local":  # paired where the data lives: say where, and what moved
        lines.append(("paired", f"{s['strategy']}: {s['rows_moved_a']:,} rows of {a} and {s['rows_moved_b']:,} of {b} "
                                "fetched"))
    if s.get("sample"):
        p = s["sample"]
        lines.append(("sample", f"{p['keys_sampled']:,} keys (seed {p['seed']}); mismatch rate {p['mismatch_rate']:.2%} "
                                f"(95% CI {p['mismatch_rate_ci95_low']:.2%} to {p['mismatch_rate_ci95_high']:.2%})"))
    width = max(len(label) for label, _ in lines)  # source names vary in length: align on the longest label
    return "\n".join([f"reconciliation {name}: {a} vs {b}", *(f"  {label.ljust(width)}  {value}" for label, value in lines)])


# The command groups of their own modules (they import cli_shared, never this module).
main.add_command(runs)
main.add_command(notifications)
main.add_command(streams)
main.add_command(suggestions)
main.add_command(dbt_sources)
register_web_commands(main)

if __name__ == "__main__":  # python -m recon_pipelines.cli (tests run the real command this way)
    main()
