"""Event-driven reconciliation on change streams (docs/change-streams.md).

Changes come from PostgreSQL logical decoding (``pg_logical``) or a shared log (``jetstream``)
as ``ChangeEvent``s; ``expectations`` keeps, per key, the counterpart still awaited on the
other side; ``settle`` re-checks the keys whose window passed and reports what is still wrong
as ``not_propagated``. No Dagster imports here: ``dagster_defs/streams.py`` builds the sensor.
"""
