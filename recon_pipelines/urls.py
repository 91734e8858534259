"""Database URL helpers shared by the sources, the engine's push-down, the tracker and fixes.

A leaf module, so the tracker and remediation do not reach into a connector for them. Masking a
URL's credentials for a label or a log is ``redact.redact``, the one rule for any text.
"""


def normalize_url(url: str) -> str:
    """SQLAlchemy 2.1 maps a bare postgresql:// URL to psycopg 3; this project ships psycopg2."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url
