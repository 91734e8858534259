"""Who may use the web application, and what they may do.

Users live in the tracker (``recon_web_users``) with an argon2id hash of their password and a
role: a viewer reads, an operator also acts on discrepancies, an admin also manages users.
The session cookie is signed with a secret from ``RECON_WEB_SECRET`` or, when that is unset,
one generated on first start and kept in the tracker, so every web process shares it.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from recon_pipelines.tracker.schema import WEB_ROLES, web_settings, web_users

SECRET_ENV = "RECON_WEB_SECRET"
MIN_PASSWORD = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_hasher = PasswordHasher()
# Verified when the name is unknown, so a wrong name costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class User:
    name: str
    role: str
    # Changes with the password: a session signed in before `recon users passwd` stops working.
    stamp: str = field(default="", compare=False, repr=False)

    def can(self, role: str) -> bool:
        """True when this user's role includes ``role`` (admin > operator > viewer)."""
        return WEB_ROLES.index(self.role) >= WEB_ROLES.index(role)


class UserError(ValueError):
    """A user name, role or password that cannot be used (the message says which)."""


class Users:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def add(self, name: str, role: str, password: str) -> User:
        _check_name(name)
        _check_role(role)
        _check_password(password)
        now = datetime.now(timezone.utc)
        with self.engine.begin() as conn:
            if conn.execute(sa.select(web_users.c.name).where(web_users.c.name == name)).first():
                raise UserError(f"user {name!r} already exists (use `recon users passwd` or remove it first)")
            conn.execute(sa.insert(web_users).values(name=name, role=role, password_hash=_hasher.hash(password),
                                                     created_at=now, updated_at=now))
        return User(name, role)

    def set_password(self, name: str, password: str) -> None:
        _check_password(password)
        with self.engine.begin() as conn:
            done = conn.execute(sa.update(web_users).where(web_users.c.name == name).values(
                password_hash=_hasher.hash(password), updated_at=datetime.now(timezone.utc)))
        if done.rowcount == 0:
            raise LookupError(f"no user {name!r}")

    def remove(self, name: str) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(sa.delete(web_users).where(web_users.c.name == name))
        if done.rowcount == 0:
            raise LookupError(f"no user {name!r}")

    def get(self, name: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(web_users).where(web_users.c.name == name)).first()
        return User(row.name, row.role, _stamp(row.password_hash)) if row else None

    def all(self) -> list[User]:
        with self.engine.connect() as conn:
            return [User(r.name, r.role) for r in conn.execute(
                sa.select(web_users.c.name, web_users.c.role).order_by(web_users.c.name))]

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password is right; None otherwise (without saying which part was wrong)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(web_users).where(web_users.c.name == name)).first()
        try:
            _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if _hasher.check_needs_rehash(row.password_hash):
            self.set_password(name, password)
            return self.get(name)
        return User(row.name, row.role, _stamp(row.password_hash))


def session_secret(engine: sa.Engine) -> str:
    """``RECON_WEB_SECRET``, else the tracker's stored secret, created on first use."""
    if os.environ.get(SECRET_ENV):
        return os.environ[SECRET_ENV]
    with engine.begin() as conn:
        stored = conn.scalar(sa.select(web_settings.c.value).where(web_settings.c.name == "session_secret"))
        if stored:
            return stored
    value = secrets.token_urlsafe(48)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(web_settings).values(name="session_secret", value=value))
        return value
    except sa.exc.IntegrityError:  # another web process stored one first: use theirs
        with engine.connect() as conn:
            return conn.scalar(sa.select(web_settings.c.value).where(web_settings.c.name == "session_secret"))


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected, given)


def _stamp(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:24]


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise UserError(f"user name {name!r} must be 1-128 letters, digits, or . _ @ - (starting with a letter or digit)")


def _check_role(role: str) -> None:
    if role not in WEB_ROLES:
        raise UserError(f"role {role!r} is not one of {', '.join(WEB_ROLES)}")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
