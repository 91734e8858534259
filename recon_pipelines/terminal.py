"""Values shown on an operator's terminal, with nothing in them that the terminal would obey.

Record keys, field values and notes come from the reconciled systems and from other operators.
Printed raw, an ANSI escape sequence can recolour, move the cursor or retitle the window, a
``\\r`` can overwrite what came before on the line, and a bidi override (U+202E) can make
``resolved`` read as ``devloser``. Every value the CLI prints as text goes through
``for_terminal``; machine formats stay lossless (``json_for_terminal`` escapes the same
characters the JSON way, which any JSON reader turns back into the original).
"""

from __future__ import annotations

import re
import sys
import unicodedata

# Bidi embeddings/overrides (U+202A-202E), isolates (U+2066-2069), marks (U+200E, U+200F, U+061C):
# all of them are also Unicode category Cf, listed here because they are the ones that reorder text.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Categories shown escaped: Cc (C0, DEL, C1), Cf (format: bidi, zero-width, BOM, tags),
# Zl/Zp (line and paragraph separators, which some terminals treat as newlines), Cs (lone
# surrogates, from undecodable bytes).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# Fast path: a string made only of printable ASCII needs no look at each character.
_PLAIN_ASCII = re.compile(r"[\x20-\x7e]*")


def is_unsafe(char: str) -> bool:
    """Whether ``char`` changes how a terminal shows the text around it (or is invisible)."""
    return char in BIDI_CONTROLS or unicodedata.category(char) in _ESCAPED_CATEGORIES


def escape_char(char: str) -> str:
    """``\\n``, ``\\x1b``, ``\\u202e`` or ``\\U000e0001``: Python's own escape syntax."""
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def for_terminal(value: object, keep: str = "") -> str:
    """``value`` as text that a terminal shows literally: every control, bidi and format
    character is written as its escape (an ESC becomes the four characters ``\\x1b``).
    ``None`` is the empty string. ``keep`` lists characters left as they are (a multi-line
    message keeps ``"\\n"``)."""
    text = "" if value is None else value if isinstance(value, str) else str(value)
    if _PLAIN_ASCII.fullmatch(text):
        return text
    return "".join(escape_char(c) if c not in keep and is_unsafe(c) else c for c in text)


def json_for_terminal(document: str) -> str:
    """A JSON text (from ``json.dumps(..., ensure_ascii=False)``) with the same characters
    written as ``\\uXXXX`` escapes: still the same JSON value, nothing lost, safe to print.
    JSON puts non-ASCII characters only inside strings, so escaping them anywhere is exact."""
    if _PLAIN_ASCII.fullmatch(document):
        return document
    out = []
    for char in document:
        if is_unsafe(char):
            code = ord(char)
            if code > 0xFFFF:  # JSON spells astral characters as a surrogate pair
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
            else:
                out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def stream_is_terminal(stream=None) -> bool:
    stream = sys.stdout if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False
