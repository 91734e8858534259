"""``recon validate`` on a folder: every bad spec reported (one line each, exit 2), duplicate YAML
keys refused, the Dagster definitions of the whole folder built and checked, and a documented
default folder. Runs the real command through click's runner."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from recon_pipelines.cli import main
from recon_pipelines.dagster_defs import build_definitions
from recon_pipelines.spec import SpecError, load_spec, parse_spec


def spec_text(name: str, extra: str = "") -> str:
    return f"""name: {name}
source_a: {{type: file, path: a.csv, name: shop, updated_at: at}}
source_b: {{type: file, path: b.csv, name: ledger, updated_at: at}}
key: id
fields:
  amount: {{compare: numeric, abs_tol: 0.01}}
incremental: {{start: 2026-01-01}}
deep_scan: {{}}
notifications:
  destinations:
    digest: {{type: slack_digest, channel: "#ops"}}
routing:
  - {{tier: warning, destinations: [digest]}}
{extra}"""


@pytest.fixture
def folder(tmp_path):
    for side in "ab":
        (tmp_path / f"{side}.csv").write_text("id,amount,at\n1,1.5,2026-01-01 10:00:00\n")
    return tmp_path


def validate(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, ["validate", *args], env={"RECON_SPEC_DIR": None, **(env or {})})


def test_names_that_once_collided_load_together(folder):
    # `daily_<x>` and the digest schedule of `digest_x` used to be the same name: the whole
    # code location failed to load while `recon validate` said ok.
    (folder / "x.yaml").write_text(spec_text("x"))
    (folder / "digest_x.yaml").write_text(spec_text("digest_x"))
    result = validate(str(folder))
    assert result.exit_code == 0, result.output + result.stderr
    assert "2 spec(s) valid" in result.output
    defs = build_definitions(specs=[load_spec(folder / "x.yaml"), load_spec(folder / "digest_x.yaml")])
    dg.Definitions.validate_loadable(defs)
    for name in ("daily_x", "daily_digest_x", "digest_x", "digest_digest_x"):
        assert defs.resolve_schedule_def(name).name == name


@pytest.mark.parametrize("names", [("x", "digest_x"), ("a", "a_scope"), ("a", "a_recheck"), ("scan", "deep_scan"),
                                   ("recheck", "snapshot_a"), ("feed", "change_feed_feed")])
def test_generated_dagster_names_never_collide(folder, names):
    specs = [parse_spec(yaml.safe_load(spec_text(n)), folder / f"{n}.yaml") for n in names]
    dg.Definitions.validate_loadable(build_definitions(specs=specs))


def test_spec_names_cannot_hold_the_separator(folder):
    with pytest.raises(SpecError, match="name: must not contain '__'"):
        parse_spec(yaml.safe_load(spec_text("a__b")), folder / "a.yaml")


def test_every_bad_spec_of_a_folder_is_reported(folder):
    (folder / "good.yaml").write_text(spec_text("good"))
    (folder / "broken.yaml").write_text("name: broken\nsource_a: {type: file\n")
    (folder / "twice.yaml").write_text(spec_text("twice") + "source_b: {type: file, path: a.csv}\n")
    (folder / "typo.yaml").write_text(spec_text("typo", "severty: {}\n"))
    (folder / "missing_column.yaml").write_text(spec_text("missing_column").replace("abs_tol: 0.01}", "abs_tol: 0.01, b: total}"))
    (folder / "same_name.yaml").write_text(spec_text("good"))
    result = validate(str(folder))
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 5, result.stderr
    text = "\n".join(errors)
    assert "broken.yaml: line 3" in text
    assert "twice.yaml: line 14: not valid YAML: key 'source_b' given twice (first on line 3)" in text
    assert "typo.yaml: severty: unknown option" in text
    assert "missing_column.yaml: fields.amount.b: column 'total' not found" in text
    assert "same_name.yaml: name: 'good' is also the name of" in text
    assert "Traceback" not in result.output + result.stderr
    assert "ok  good" in result.output


def test_the_default_folder_is_specs_or_recon_spec_dir(folder, monkeypatch):
    monkeypatch.chdir(folder)
    result = validate()
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: spec folder specs not found (the default when $RECON_SPEC_DIR is unset); "
                                     "give spec files or folders, or set RECON_SPEC_DIR")
    (folder / "specs").mkdir()
    (folder / "specs" / "one.yaml").write_text(spec_text("one").replace("path: a.csv", "path: ../a.csv").replace("path: b.csv", "path: ../b.csv"))
    assert validate().exit_code == 0
    elsewhere = validate(env={"RECON_SPEC_DIR": str(folder / "nowhere")})
    assert elsewhere.exit_code == 2 and "$RECON_SPEC_DIR names it" in elsewhere.stderr
    assert "RECON_SPEC_DIR" in CliRunner().invoke(main, ["validate", "--help"]).output


@pytest.mark.parametrize("text, line, key", [
    ("name: a\nname: b\n", 2, "name"),
    ("fields:\n  amount: numeric\n  amount: exact\n", 3, "amount"),
    ("source_a: {type: file, type: sql}\n", 1, "type"),
])
def test_duplicate_keys_are_an_error_naming_key_and_line(tmp_path, text, line, key):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert f"line {line}" in str(caught.value) and f"key {key!r} given twice" in str(caught.value)


def test_merge_keys_may_still_override(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text(spec_text("merged").replace("fields:\n", "defaults: &d {compare: numeric, abs_tol: 1}\nfields:\n")
                    .replace("amount: {compare: numeric, abs_tol: 0.01}", "amount: {<<: *d, abs_tol: 0.01}"))
    with pytest.raises(SpecError, match="defaults: unknown option"):  # the merge itself was accepted
        load_spec(path)
