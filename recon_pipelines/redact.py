"""The one rule for keeping credentials out of labels, errors, logs and metadata.

``redact`` masks, in any text (a URL, a libpq DSN, a driver's error message):

- the password of a URL's user info (``scheme://user:***@host``); for http(s) the whole user
  info, which there is usually a token (``https://***@host``);
- the value of every ``name=value`` pair whose name looks like a credential (``password``,
  ``sslpassword``, ``token``, ``access_token``, ``api_key``, ``secret``, ... case-insensitive),
  whether it is a URL's query parameter or a DSN keyword.

It over-masks on purpose (``sort_key=...`` is masked too): a label loses a detail, never a secret.
"""

from __future__ import annotations

import re

MASK = "***"

# A credential-looking parameter name, anywhere in the name (api_key, X-Auth-Token, sslpassword).
SENSITIVE_NAME = re.compile(r"key|token|secret|passw|pwd|auth|sig|session|credential", re.IGNORECASE)

_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/?#@:]*)(?::(?P<password>[^\s/?#]*))?@"
)
_PAIR = re.compile(r"(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>'[^']*'|[^&\s#;,'\")]*)")


def redact(text: object) -> str:
    """``text`` with every credential in a URL or ``name=value`` pair replaced by ``***``."""
    text = _render(text)

    def userinfo(match: re.Match) -> str:
        scheme = match.group("scheme")
        if scheme.lower().startswith(("http://", "https://")):
            return f"{scheme}{MASK}@"
        if match.group("password") is None:
            return match.group(0)
        return f"{scheme}{match.group('user')}:{MASK}@"

    def pair(match: re.Match) -> str:
        if SENSITIVE_NAME.search(match.group("name")) and match.group("value"):
            return f"{match.group('name')}={MASK}"
        return match.group(0)

    return _PAIR.sub(pair, _USERINFO.sub(userinfo, text))


def _render(value: object) -> str:
    """A SQLAlchemy URL's full text (its ``str()`` already hides the password, not ``?password=``)."""
    render = getattr(value, "render_as_string", None)
    return render(hide_password=False) if callable(render) else str(value)
