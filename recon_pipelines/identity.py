"""Who performs an operator action, as far as the system can tell rather than be told.

The audit trail's actor is an identity something authenticated: the operating-system account
running the ``recon`` CLI, or the user Dagster+ records as a run's creator. A name someone
types (``--actor``, launchpad config) is only a claim; it is kept, in the note, as "on behalf
of ...". Dagster OSS authenticates nobody, and its webserver passes no request header (such as
the proxy's X-Forwarded-User) to the runs it launches, so there the actor says exactly that.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Dagster OSS: anyone who can reach the UI may launch a run; the launcher is not known to the run.
DAGSTER_UNAUTHENTICATED = "dagster-ui (unauthenticated)"
# Dagster+ tags each run with its creator's e-mail (dagster._core.storage.tags.USER_TAG) and
# sets DAGSTER_CLOUD_DEPLOYMENT_NAME in every run; in OSS the same tag is free text from the
# launchpad, so it is believed only on Dagster+.
DAGSTER_USER_TAG = "user"
DAGSTER_PLUS_ENV = "DAGSTER_CLOUD_DEPLOYMENT_NAME"


def os_user() -> str:
    """The account this process runs as, from its effective uid, not from $USER or $LOGNAME
    (``getpass.getuser()`` reads those first, and anyone can set them)."""
    try:
        import pwd
    except ImportError:  # Windows: no uid database; the logon name is the best there is
        import getpass

        return getpass.getuser()
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a container started with an arbitrary --user has no passwd entry
        return f"uid:{uid}"


def dagster_launcher(run_tags: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> str:
    """The actor for an operator action run as a Dagster job."""
    user = (run_tags.get(DAGSTER_USER_TAG) or "").strip()
    if environ.get(DAGSTER_PLUS_ENV) and user:
        return user
    return DAGSTER_UNAUTHENTICATED
