"""Benchmarks of the comparison engine against its peers (see benchmarks/README.md)."""
