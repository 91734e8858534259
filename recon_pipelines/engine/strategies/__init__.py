"""Pairing strategies: where the two sides are paired (and candidate pairs found) before the
field rules judge the candidates in DuckDB (``compare.evaluate``)."""
