"""Every error the ``recon`` command can meet, as one line for a person: which file, source or
setting is at fault and what is wrong, without a traceback and without a secret.

``recon`` exits 2 with this line (exit 1 is reserved for "discrepancies found"); ``--debug``
shows the traceback as well. Libraries phrase errors for developers over many lines (DuckDB
appends a list of reader options, SQLAlchemy a link); the useful part is picked out here.
"""

from __future__ import annotations

import re

from recon_pipelines.redact import redact

_DUCKDB_CLASS = re.compile(r"\b[A-Z][A-Za-z ]*? Error: ")
_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")
_CSV_FILE = re.compile(r"^\s*file = (.+)$", re.MULTILINE)
_COLUMNS = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")
_CONVERT = re.compile(r"Error when converting column \"([^\"]+)\"\. Could not convert string \"([^\"]*)\" to '([^']+)'")


class UserError(Exception):
    """An error already phrased for the person at the command line."""


def one_line(exc: BaseException) -> str:
    """The message for ``exc``: one line, no secret (the project's one redaction rule)."""
    return redact(_single_line(_describe(exc)))


def _describe(exc: BaseException) -> str:
    import duckdb
    import httpx
    import pydantic
    import sqlalchemy as sa
    import yaml

    if isinstance(exc, duckdb.Error):
        return duckdb_message(str(exc))
    if isinstance(exc, sa.exc.SQLAlchemyError):
        original = getattr(exc, "orig", None) or exc
        return f"database: {type(original).__name__}: {_first_line(str(original))}"
    if isinstance(exc, httpx.HTTPError):
        request = getattr(exc, "_request", None)
        where = f"{request.url.copy_with(query=None)}: " if request is not None else ""
        return f"{where}{type(exc).__name__}: {exc}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at position {exc.start})"
    if isinstance(exc, OSError):
        what = exc.filename or ""
        return f"{what}: {exc.strerror or exc}" if what else f"{type(exc).__name__}: {exc.strerror or exc}"
    if isinstance(exc, pydantic.ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        return f"line {mark.line + 1}: not valid YAML: {getattr(exc, 'problem', exc)}" if mark else f"not valid YAML: {exc}"
    text = str(exc)
    if _CSV_LINE.search(text) or "Error: " in text:
        return duckdb_message(text)  # a connector's error that quotes DuckDB
    if isinstance(exc, (ValueError, LookupError, RuntimeError, UserError)):  # the project's errors
        return text.strip("'\"") if isinstance(exc, KeyError) else text
    return f"internal error: {type(exc).__name__}: {text} (run with --debug for the traceback)"


def duckdb_message(text: str) -> str:
    """DuckDB's error text, reduced to what matters: for a CSV, the file, the line and the
    problem ("b.csv: line 4821: expected 2 columns, found 3"); otherwise its first line.
    Any prefix a connector put before DuckDB's text (the spec, the source) is kept."""
    first = text.strip().splitlines()[0] if text.strip() else text
    match = _DUCKDB_CLASS.search(first)
    prefix = first[: match.start()] if match else ""
    line = _CSV_LINE.search(text)
    if line is None:  # "Invalid Input Error: " says nothing to a person; what follows does
        return prefix + _first_line(first[match.end():]) if match else _first_line(first)
    if _COLUMNS.search(text):
        expected, found = _COLUMNS.search(text).groups()
        problem = f"expected {expected} columns, found {found}"
    elif "Invalid unicode" in text:
        problem = "not UTF-8 text (set the file's encoding to UTF-8)"
    elif _CONVERT.search(text):
        column, value, duck_type = _CONVERT.search(text).groups()
        problem = f"column {column!r}: {value!r} is not a {duck_type.lower()} (as declared under columns:)"
    else:
        problem = _first_line(text[line.end():].strip() or "cannot be read")
    file = _CSV_FILE.search(text)
    if not prefix.strip() and file:
        prefix = f"{file.group(1).strip()}: "
    if prefix.rstrip().endswith("cannot read:"):
        prefix = prefix.rstrip()[: -len("cannot read:")]
    return f"{prefix}line {line.group(1)}: {problem}"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:400] if lines else text


def _single_line(text: str) -> str:
    text = " ".join(text.split())
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)  # bytes from a corrupt file
