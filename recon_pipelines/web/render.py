"""Jinja2 for the web pages and the HTML report: autoescaped, with values shown exactly.

A value is shown as its characters: control characters (newlines, tabs, NUL) and the invisible
direction marks that can make text read backwards (U+202E and friends) appear as visible
``\\u....`` escapes, so what an operator sees is what the systems hold.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

TEMPLATES = Path(__file__).parent / "templates"
# C0/C1 controls, DEL, zero-width and bidirectional formatting characters, BOM, line/paragraph separators.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def shown(value) -> Markup:
    """A stored value as safe HTML: escaped, invisible characters made visible, null marked."""
    if value is None:
        return Markup('<span class="null">null</span>')
    text = str(value)
    if text == "":
        return Markup('<span class="null">empty</span>')
    parts, last = [], 0
    for match in _INVISIBLE.finditer(text):
        parts.append(escape(text[last:match.start()]))
        parts.append(Markup('<span class="ctl" title="invisible character">\\u{:04x}</span>').format(ord(match.group())))
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)


def when(value) -> str:
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def age(value, now: datetime | None = None) -> str:
    if not isinstance(value, datetime):
        return ""
    value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters.update(shown=shown, when=when, age=age, from_json=json.loads)
    return env
