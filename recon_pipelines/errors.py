"""Errors raised on more than one layer.

``SourceError`` lives here rather than in ``sources/`` because the read-only SQL check
(``readonly_sql``), which the spec runs at load time below the sources layer, raises it too.
"""


class SourceError(RuntimeError):
    """A source could not be read; the message names the source and never holds a secret."""
