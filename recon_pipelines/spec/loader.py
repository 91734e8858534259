"""Load reconciliation specs from YAML, with errors that name the file and field.

The YAML accepts short forms that are expanded here before validation:
``key: id`` or ``key: [region, id]``; ``fields: {plan: exact, amount: {compare: numeric}}``.
Strings may reference environment variables as ``${VAR}`` or ``${VAR:-default}``, in
configuration values only: free text (names, descriptions, owner, tags) is shown in the UI,
logs and notifications, so a variable there must be listed in the spec's ``env_allowlist``;
relative file paths are resolved against the spec file's folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.spec.nway import NWaySpec

SPEC_SUFFIXES = (".yaml", ".yml")
SPEC_DIR_ENV = "RECON_SPEC_DIR"  # the folder of specs the code location and `recon` commands read
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Values that are shown rather than used: a token expanded there would be displayed.
_FREE_TEXT_NAMES = {"name", "description", "owner"}
_FREE_TEXT_ROOTS = {"tags"}
ENV_ALLOWLIST = "env_allowlist"


class SpecError(ValueError):
    """A spec that cannot be used: says which file, which field and what is wrong."""

    def __init__(self, file: str | Path, path: str, message: str):
        self.file, self.path, self.message = str(file), path, message
        where = f"{self.file}: {path}" if path else self.file
        super().__init__(f"{where}: {message}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; a second ``source_b`` once made
    a spec compare a file with itself. Here a repeated key is an error naming it and its lines."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` merges are meant to be overridden
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                    seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:
                    continue  # an unhashable key: the base loader reports it
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice (first on line {first})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str):
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_spec(path: str | Path) -> ReconciliationSpec | NWaySpec:
    path = Path(path)
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(path, "", "file not found") from None
    except IsADirectoryError:
        raise SpecError(path, "", "is a folder, not a spec file") from None
    except OSError as exc:
        raise SpecError(path, "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(path, "", f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at position {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise SpecError(path, where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_spec(raw, source_file=path)


def parse_spec(raw: Any, source_file: str | Path = "<spec>") -> ReconciliationSpec | NWaySpec:
    source_file = Path(source_file)
    if not isinstance(raw, dict):
        raise SpecError(source_file, "", "a spec must be a mapping with name, source_a, source_b, key and fields")
    allowlist = raw.get(ENV_ALLOWLIST) or []
    if not isinstance(allowlist, list) or not all(isinstance(n, str) for n in allowlist):
        raise SpecError(source_file, ENV_ALLOWLIST, "expected a list of environment variable names")
    try:
        data = _expand_env(raw, source_file, "", frozenset(allowlist))
    except KeyError as exc:
        raise SpecError(source_file, exc.args[1], f"environment variable {exc.args[0]} is not set") from None
    if "sources" in data:  # three or more systems (spec/nway.py)
        return _parse_nway(data, source_file)
    data = _expand_short_forms(data, source_file)
    try:
        spec = ReconciliationSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SpecError(source_file, _location(first["loc"], data), _message(first)) from None
    return _resolve_paths(spec, source_file.parent)


def _parse_nway(data: dict, source_file: Path) -> NWaySpec:
    both = [name for name in ("source_a", "source_b", "key_mapping") if name in data]
    if both:
        raise SpecError(source_file, both[0], "a spec with sources: names every system there (key_mappings: per system)")
    data = _expand_nway_short_forms(data, source_file)
    try:
        spec = NWaySpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SpecError(source_file, _location(first["loc"], data), _message(first)) from None
    base = source_file.parent
    return spec.model_copy(update={
        "sources": {name: _resolved(source, base) for name, source in spec.sources.items()},
        "key_mappings": {name: m.model_copy(update={"source": _resolved(m.source, base)})
                         for name, m in spec.key_mappings.items()},
    })


def _expand_nway_short_forms(data: dict, file: Path) -> dict:
    """``key: id`` / ``key: {name: id, columns: {crm: id}}`` / a list of them; ``fields:`` as a
    mapping; a system a key or field does not map uses the field's name as its column."""
    data = dict(data)
    systems = list(data["sources"]) if isinstance(data.get("sources"), dict) else []

    def mapped(item: Any, path: str) -> Any:
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            return item
        item = dict(item)
        if "name" not in item:
            raise SpecError(file, path, "needs a name")
        columns = item.get("columns") or {}
        if isinstance(columns, dict):
            item["columns"] = {**{s: str(item["name"]) for s in systems}, **columns}
        return item

    return _expand_key_and_fields(data, file, mapped)


def load_spec_dir(folder: str | Path) -> list[ReconciliationSpec]:
    """Every spec of a folder, sorted by file name; names must be unique."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SpecError(folder, "", "spec folder not found")
    specs, seen = [], {}
    for file in spec_files(folder):
        spec = load_spec(file)
        if spec.name in seen:
            raise SpecError(file, "name", f"{spec.name!r} is also the name of {seen[spec.name]}")
        seen[spec.name] = file.name
        specs.append(spec)
    return specs


def spec_files(folder: str | Path) -> list[Path]:
    """The spec files of a folder, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix in SPEC_SUFFIXES)


# --------------------------------------------------------------------------- helpers


def _expand_env(value: Any, file: Path, path: str, allowlist: frozenset[str]) -> Any:
    if path == ENV_ALLOWLIST:
        return value
    if isinstance(value, dict):
        return {k: _expand_env(v, file, f"{path}.{k}" if path else str(k), allowlist) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, file, f"{path}.{i}", allowlist) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        free_text = _is_free_text(path)

        def sub(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if free_text and name not in allowlist:
                raise SpecError(file, path, f"${{{name}}} is not expanded in free text, which is displayed "
                                            f"(UI, logs, notifications); list {name} under {ENV_ALLOWLIST} to allow it")
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise KeyError(name, path)

        return _ENV_REF.sub(sub, value)
    return value


def _is_free_text(path: str) -> bool:
    parts = path.split(".")
    return parts[0] in _FREE_TEXT_ROOTS or parts[-1] in _FREE_TEXT_NAMES


def _expand_short_forms(data: dict, file: Path) -> dict:
    data = _expand_key_and_fields(dict(data), file, lambda item, path: _named(item, file, path))
    for item in data.get("fields") or []:
        if isinstance(item, dict):
            item.setdefault("compare", "exact")
    return data


def _expand_key_and_fields(data: dict, file: Path, complete: Callable[[Any, str], Any]) -> dict:
    """The short forms two-source and N-way specs share: ``key: id`` (or one mapping) as a list,
    ``fields:`` as a mapping of name to a rule name or options; ``complete`` fills in each key or
    field item's columns (``_named`` for two sources, one column per system for N-way)."""
    key = data.get("key")
    if isinstance(key, (str, dict)):
        key = [key]
    if isinstance(key, list):
        data["key"] = [complete(k, f"key.{i}") for i, k in enumerate(key)]
    fields = data.get("fields")
    if isinstance(fields, dict):
        expanded = []
        for name, rule in fields.items():
            if rule is None or isinstance(rule, str):
                rule = {"compare": rule or "exact"}
            if not isinstance(rule, dict):
                raise SpecError(file, f"fields.{name}", "expected a rule name or a mapping of rule options")
            expanded.append(complete({"name": str(name), **rule}, f"fields.{name}"))
        data["fields"] = expanded
    elif isinstance(fields, list):
        data["fields"] = [complete(f, f"fields.{i}") for i, f in enumerate(fields)]
    return data


def _named(item: Any, file: Path, path: str) -> Any:
    """A key or field given as a bare name gets the same column name on both sides."""
    if isinstance(item, str):
        return {"name": item, "a": item, "b": item}
    if isinstance(item, dict):
        item = dict(item)
        name = item.get("name") or item.get("a")
        if name is None:
            raise SpecError(file, path, "needs a name (or a and b column names)")
        item.setdefault("name", name)
        item.setdefault("a", name)
        item.setdefault("b", item["a"] if "a" in item else name)
        return item
    return item


def _location(loc: tuple, data: Any) -> str:
    """Render a pydantic error location as a dotted path, naming list items by their name
    and dropping the union tags pydantic inserts (``fields.amount.abs_tol``, not ``fields.3.numeric.abs_tol``)."""
    parts: list[str] = []
    node = data
    for element in loc:
        if isinstance(node, dict) and element not in node and element in (
                node.get("type"), node.get("compare"), node.get("action")):
            continue  # the discriminator tag of a union member
        if isinstance(node, list) and isinstance(element, int) and element < len(node):
            node = node[element]
            parts.append(str(node["name"]) if isinstance(node, dict) and "name" in node else str(element))
            continue
        node = node.get(element) if isinstance(node, dict) else None
        parts.append(str(element))
    return ".".join(parts)


def _message(error: dict) -> str:
    kind = error["type"]
    if kind == "union_tag_invalid":
        expected = error.get("ctx", {}).get("expected_tags", "")
        tag = error.get("ctx", {}).get("tag", "")
        return f"unknown value {tag!r}; expected one of {expected}"
    if kind == "union_tag_not_found":
        tag = error.get("ctx", {}).get("discriminator", "type").strip("'")
        return f"missing {tag!r}; say which kind this is"
    if kind == "extra_forbidden":
        return "unknown option"
    if kind == "missing":
        return "required option missing"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def _resolved(source, base: Path):
    """A source whose paths are relative to the spec file, with those paths made absolute."""
    if getattr(source, "type", None) == "file" and not _is_absolute(source.path):
        return source.model_copy(update={"path": str((base / source.path).resolve())})
    if getattr(source, "type", None) == "dbt":  # its folders, relative to the spec file like a file's path
        folders = {name: getattr(source, name) for name in ("project_dir", "manifest", "profiles_dir")}
        return source.model_copy(update={name: str((base / value).resolve()) for name, value in folders.items()
                                         if value is not None and not _is_absolute(value)})
    return source


def _resolve_paths(spec: ReconciliationSpec, base: Path) -> ReconciliationSpec:
    def fix(source):
        return _resolved(source, base)

    update: dict[str, Any] = {"source_a": fix(spec.source_a), "source_b": fix(spec.source_b)}
    if spec.key_mapping is not None:
        update["key_mapping"] = spec.key_mapping.model_copy(update={"source": fix(spec.key_mapping.source)})
    return spec.model_copy(update=update)


def _is_absolute(path: str) -> bool:
    return os.path.isabs(path) or "://" in path
