"""How computed numbers are shown to people: the one rule, for every face that prints them.

A difference of two DOUBLE values carries binary noise in its last digits (42.504 - 42.5 is
0.0040000000000048885, not 0.004). The engine's own detail text rounds to DISPLAY_DECIMALS
places (``engine/rules.py``); numbers printed beside it round the same way, then print in
Python's shortest form that reads back as that value.
"""

from __future__ import annotations

import math

DISPLAY_DECIMALS = 9


def display_number(value):
    """``value`` rounded for display when it is a finite float; anything else unchanged."""
    if isinstance(value, float) and math.isfinite(value):
        rounded = round(value, DISPLAY_DECIMALS)
        return 0.0 if rounded == 0 else rounded  # no "-0.0"
    return value
