"""Names the Dagster layer gives a reconciliation's definitions, in one place.

A leaf module: the Dagster layer (which declares these names) and the ``trigger`` client
(which launches them on a webserver) both import it, so neither imports the other.
"""


def recheck_job_name(name: str) -> str:
    return f"recheck_{name}"


def recheck_op_name(name: str) -> str:
    return f"{name}__recheck"  # "__": no job, schedule or asset op of another spec can have this name
