"""docs/spec-reference.md stays honest: every option, rule type, kind and reason of the code is
documented there, its annotated example parses, and spec-loading errors read as documented."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from recon_pipelines.engine.compare import RECORD_REASONS
from recon_pipelines.engine.rules import REASONS
from recon_pipelines.spec.types import TYPE_NAMES
from recon_pipelines.spec import SpecError, load_spec, load_spec_dir, parse_spec
from recon_pipelines.spec.models import KINDS, RULE_TYPES, ReconciliationSpec

DOC = Path(__file__).resolve().parents[1] / "docs" / "spec-reference.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _walk(annotation, models: dict[str, type[BaseModel]], literals: set) -> None:
    """Collect the pydantic models and Literal values reachable from a type annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation.__name__ in models:
            return
        models[annotation.__name__] = annotation
        for info in annotation.model_fields.values():
            _walk(info.annotation, models, literals)
        return
    if typing.get_origin(annotation) is typing.Literal:
        literals.update(typing.get_args(annotation))
        return
    for arg in typing.get_args(annotation):  # unions, list[...], dict[...], Annotated[...]
        _walk(arg, models, literals)


def _reachable() -> tuple[dict[str, type[BaseModel]], set]:
    models: dict[str, type[BaseModel]] = {}
    literals: set = set()
    _walk(ReconciliationSpec, models, literals)
    return models, literals


def _option_names() -> list[tuple[str, str]]:
    models, _ = _reachable()
    return sorted(
        (model_name, info.alias or field_name)
        for model_name, model in models.items()
        for field_name, info in model.model_fields.items()
    )


def test_the_walk_reaches_every_part_of_the_spec():
    models, _ = _reachable()
    expected = {"ReconciliationSpec", "FileSource", "SqlSource", "HttpSource", "HttpAuth", "Pagination", "KeyField",
                "KeyMapping", "NullPolicy", "ExactRule", "StringRule", "NumericRule", "TimestampRule",
                "SeveritySpec", "SeverityRule", "EscalationSpec"}
    assert expected <= set(models)
    assert ("SqlSource", "schema") in _option_names()  # aliases, not attribute names


@pytest.mark.parametrize("model, option", _option_names())
def test_every_option_is_documented(doc, model, option):
    assert f"`{option}`" in doc, f"{model}.{option} is not documented in {DOC.name}"


def _named_values() -> list[tuple[str, str]]:
    _, literals = _reachable()
    values = [("rule type", name) for name in RULE_TYPES]
    values += [("kind", kind) for kind in KINDS]
    values += [("field reason", reason) for reason in REASONS]
    values += [("record reason", reason) for reason in sorted(set(RECORD_REASONS.values()))]
    values += [("choice", str(value)) for value in sorted(literals, key=str)]
    values += [("column type", name) for name in TYPE_NAMES]
    return values


@pytest.mark.parametrize("what, value", _named_values())
def test_every_rule_type_kind_reason_and_choice_is_documented(doc, what, value):
    assert f"`{value}`" in doc, f"{what} {value!r} is not documented in {DOC.name}"


# --------------------------------------------------------------------------- the annotated example


def _example(doc: str) -> str:
    match = re.search(r"<!-- example-spec -->\s*```yaml\n(.*?)```", doc, re.DOTALL)
    assert match, "the example spec must be a ```yaml block right after <!-- example-spec -->"
    return match.group(1)


def test_annotated_example_parses(doc, monkeypatch, tmp_path):
    text = _example(doc)
    for name in set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)):  # those without a default
        monkeypatch.setenv(name, f"https://{name.lower()}.example.com")
    spec = parse_spec(yaml.safe_load(text), source_file=tmp_path / "orders_vs_erp.yaml")
    assert spec.name == "orders_vs_erp"
    assert {rule.compare for rule in spec.fields} == set(RULE_TYPES), "the example should show every rule type"
    assert spec.key_mapping is not None
    assert spec.key_mapping.source.path == str(tmp_path / "mappings" / "order_ids.csv")
    assert spec.source_b.url == "https://erp_api_url.example.com/v2/orders"
    assert spec.rule("placed_at").lag == 300.0


def test_annotated_example_loads_from_a_file(doc, monkeypatch, tmp_path):
    monkeypatch.setenv("ERP_API_URL", "https://erp.example.com")
    monkeypatch.setenv("ORDER_SYNC_LAG", "90s")
    file = tmp_path / "orders_vs_erp.yaml"
    file.write_text(_example(doc), encoding="utf-8")
    spec = load_spec(file)
    assert spec.rule("placed_at").lag == 90.0
    assert spec.source_a.db_schema == "sales"


# --------------------------------------------------------------------------- loading errors

GOOD = """\
name: orders
source_a: {type: file, path: a.csv}
source_b: {type: file, path: b.csv}
key: id
fields:
  amount: {compare: numeric, abs_tol: 0.01}
  placed_at: {compare: timestamp, lag: 5m}
"""


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    file = tmp_path / name
    file.write_text(text, encoding="utf-8")
    return file


def _error(file: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(file)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_base_spec_of_the_error_cases_loads(tmp_path):
    assert load_spec(_write(tmp_path, GOOD)).name == "orders"


def test_error_unknown_rule(tmp_path):
    file = _write(tmp_path, GOOD.replace("compare: numeric", "compare: numerc"))
    assert _error(file) == (
        f"{file}: fields.amount: unknown value 'numerc'; expected one of 'exact', 'string', 'numeric', 'timestamp'"
    )


def test_error_unknown_rule_in_short_form(tmp_path):
    file = _write(tmp_path, GOOD + "  plan: exakt\n")
    assert _error(file) == (
        f"{file}: fields.plan: unknown value 'exakt'; expected one of 'exact', 'string', 'numeric', 'timestamp'"
    )


def test_error_missing_key(tmp_path):
    file = _write(tmp_path, GOOD.replace("key: id\n", ""))
    assert _error(file) == f"{file}: key: required option missing"


def test_error_tolerance_not_a_number(tmp_path):
    file = _write(tmp_path, GOOD.replace("abs_tol: 0.01", "abs_tol: a cent"))
    assert _error(file) == f"{file}: fields.amount.abs_tol: Input should be a valid number, unable to parse string as a number"


def test_error_unknown_option(tmp_path):
    file = _write(tmp_path, GOOD.replace("abs_tol: 0.01", "abs_tolerance: 0.01"))
    assert _error(file) == f"{file}: fields.amount.abs_tolerance: unknown option"


def test_error_option_of_another_rule(tmp_path):
    file = _write(tmp_path, GOOD.replace("lag: 5m", "lag: 5m, abs_tol: 1"))
    assert _error(file) == f"{file}: fields.placed_at.abs_tol: unknown option"


def test_error_bad_duration(tmp_path):
    file = _write(tmp_path, GOOD.replace("lag: 5m", "lag: 5 minutes"))
    assert _error(file) == f"{file}: fields.placed_at.lag: '5 minutes' is not a duration such as 60, '60s', '5m' or '4h'"


def test_error_sql_source_with_table_and_query(tmp_path):
    source = "source_a: {type: sql, url: 'sqlite:///crm.sqlite', table: customers, query: SELECT * FROM customers}\n"
    file = _write(tmp_path, GOOD.replace("source_a: {type: file, path: a.csv}\n", source))
    assert _error(file) == f"{file}: source_a: give exactly one of table or query"


def test_error_invalid_yaml_names_the_line(tmp_path):
    file = _write(tmp_path, GOOD.replace("key: id", "key: [id"))
    assert _error(file) == f"{file}: line 5: not valid YAML: expected ',' or ']', but got ':'"


def test_error_duplicate_names_across_specs_of_a_folder(tmp_path):
    _write(tmp_path, GOOD, "one.yaml")
    second = _write(tmp_path, GOOD, "two.yml")
    _write(tmp_path, "not a spec", "notes.txt")  # only .yaml and .yml files are specs
    with pytest.raises(SpecError) as info:
        load_spec_dir(tmp_path)
    assert str(info.value) == f"{second}: name: 'orders' is also the name of one.yaml"


def test_error_unset_variable_names_variable_and_field(tmp_path, monkeypatch):
    monkeypatch.delenv("RECON_TEST_UNSET_DIR", raising=False)
    file = _write(tmp_path, GOOD.replace("path: b.csv", "path: '${RECON_TEST_UNSET_DIR}/b.csv'"))
    assert _error(file) == f"{file}: source_b.path: environment variable RECON_TEST_UNSET_DIR is not set"
    monkeypatch.setenv("RECON_TEST_UNSET_DIR", "/data")
    assert load_spec(file).source_b.path == "/data/b.csv"


def test_error_key_mapping_with_a_composite_key(tmp_path):
    text = GOOD.replace("key: id", "key: [region, id]") + "key_mapping: {source: {type: file, path: m.csv}, a: x, b: y}\n"
    file = _write(tmp_path, text)
    assert _error(file) == f"{file}: key_mapping works with a single key field"


def test_error_severity_rule_naming_an_unknown_field(tmp_path):
    file = _write(tmp_path, GOOD + "severity: {rules: [{field: amont, tier: critical}]}\n")
    assert _error(file) == f"{file}: severity.rules.0.field: unknown field(s) amont"
