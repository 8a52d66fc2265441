"""Users, API keys, browser sessions and the one role -> permission table.

API keys look like ``aa_<prefix>_<secret>``: the prefix (8 hex) finds the row, only the sha256 of
the whole key is stored, and the key is shown once. Passwords are hashed with argon2id (argon2-cffi's
RFC 9106 low-memory profile); older scrypt hashes still verify and are replaced at the next good login.
A browser session is a random token in an HttpOnly cookie (the row keeps its sha256) plus a CSRF token for forms.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from annotate_anyone.access.models import ApiKey, Role, User, WebSession
from annotate_anyone.db.base import utcnow
from annotate_anyone.errors import AnnotateAnyoneError, Conflict, InvalidInput, NotFound
from annotate_anyone.settings import AuthConfig as AuthConfig  # the rate limits and session lifetime (re-exported)


class Unauthorized(AnnotateAnyoneError):
    """No credentials, or credentials that are wrong, expired or revoked (HTTP 401; pages go to the login)."""

    status_code = 401
    error_name = "unauthorized"

    def http_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(AnnotateAnyoneError):
    """The caller's role does not allow the action (HTTP 403)."""

    status_code = 403
    error_name = "forbidden"


class RateLimited(AnnotateAnyoneError):
    """Too many requests for this key or login (HTTP 429, with ``Retry-After``)."""

    status_code = 429
    error_name = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def http_headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class Perm(enum.StrEnum):
    pool_read = "pool:read"  # sources, images, jobs, funnels, the dashboard overview
    sources_write = "sources:write"
    sources_local = "sources:local"  # register local paths or lift the SSRF guard (admins only)
    jobs_start = "jobs:start"  # ingest, annotate and other pipeline jobs
    exports_start = "exports:start"
    jobs_cancel = "jobs:cancel"
    review_read = "review:read"
    releases_read = "releases:read"
    takedown = "takedown"
    keys_manage = "keys:manage"  # API keys and users
    audit_read = "audit:read"


ROLE_PERMS: dict[Role, frozenset[Perm]] = {
    Role.admin: frozenset(Perm),
    Role.engineer: frozenset(
        {
            Perm.pool_read,
            Perm.sources_write,
            Perm.jobs_start,
            Perm.exports_start,
            Perm.jobs_cancel,
            Perm.review_read,
            Perm.releases_read,
        }
    ),
    Role.annotator: frozenset({Perm.pool_read, Perm.review_read}),
    Role.trainer: frozenset({Perm.releases_read}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API key or a logged-in user."""

    kind: str  # "key" or "user"
    id: int
    name: str
    role: Role
    csrf_token: str | None = None

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"

    def can(self, perm: Perm) -> bool:
        return perm in ROLE_PERMS[self.role]


def authorize(principal: Principal, perm: Perm) -> Principal:
    """The one role check: raise :class:`Forbidden` unless ``principal``'s role grants ``perm``."""
    if not principal.can(perm):
        raise Forbidden(f"role {principal.role.value!r} may not {perm.value}")
    return principal


def parse_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError as exc:
        raise InvalidInput(f"unknown role {role!r}; one of {[r.value for r in Role]}") from exc


# ---------------------------------------------------------------------------------------- API keys

KEY_PREFIX = "aa_"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def create_api_key(
    session: Session, *, name: str, role: str, expires_in_days: float | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext key, which is never stored or shown again."""
    if not name.strip():
        raise InvalidInput("a key needs a name")
    prefix = secrets.token_hex(4)
    raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    key = ApiKey(name=name.strip(), prefix=prefix, key_hash=_sha256(raw), role=parse_role(role), expires_at=expires)
    session.add(key)
    session.flush()
    return key, raw


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if moment is not None and moment.tzinfo is None:
        from datetime import UTC

        return moment.replace(tzinfo=UTC)
    return moment


def authenticate_key(session: Session, raw: str, *, touch_every_s: float = 60.0) -> Principal:
    """The principal of a valid key; :class:`Unauthorized` if unknown, wrong, revoked or expired."""
    parts = raw.strip().split("_", 2)
    if len(parts) != 3 or f"{parts[0]}_" != KEY_PREFIX or len(parts[1]) != 8:
        raise Unauthorized("malformed API key")
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if key is None or not hmac.compare_digest(key.key_hash, _sha256(raw.strip())):
        raise Unauthorized("unknown API key")
    now = utcnow()
    if key.revoked_at is not None:
        raise Unauthorized(f"API key {key.prefix} was revoked")
    if (expires := _aware(key.expires_at)) is not None and expires <= now:
        raise Unauthorized(f"API key {key.prefix} expired")
    last = _aware(key.last_used_at)
    if last is None or (now - last).total_seconds() >= touch_every_s:
        session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return Principal("key", key.id, f"{key.name} ({key.prefix})", key.role)


def list_api_keys(session: Session, *, include_revoked: bool = True) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id.desc())
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke_api_key(session: Session, key_id: int) -> ApiKey:
    """Revoke a key (idempotent); it stops working on the next request."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id}")
    key.revoked_at = key.revoked_at or utcnow()
    session.flush()
    return key


# ------------------------------------------------------------------------------------------- users

_ARGON2 = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)  # argon2id, t=3, m=64 MiB, p=4


def hash_password(password: str) -> str:
    """An argon2id hash in the PHC string format (``$argon2id$v=19$m=65536,t=3,p=4$...``)."""
    return _ARGON2.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (argon2 or a legacy ``scrypt$n$r$p$salt$digest`` hash)."""
    if stored.startswith("$argon2"):
        try:
            return _ARGON2.verify(stored, password)
        except (VerificationError, InvalidHashError):  # VerifyMismatchError is a VerificationError
            return False
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` is not an argon2id hash with the current parameters (rehash it at login)."""
    if not stored.startswith("$argon2id$"):
        return True
    try:
        return _ARGON2.check_needs_rehash(stored)
    except InvalidHashError:
        return True


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown usernames, so they take as long as known ones (made on first use:
    an argon2 hash costs tens of milliseconds, which importing this module should not)."""
    return hash_password(secrets.token_hex(8))


def create_user(session: Session, *, username: str, password: str, role: str) -> User:
    """Add a dashboard user; usernames are unique, passwords at least 8 characters."""
    username = username.strip()
    if not username:
        raise InvalidInput("a user needs a username")
    if len(password) < 8:
        raise InvalidInput("passwords need at least 8 characters")
    if session.scalar(select(User).where(User.username == username)):
        raise Conflict(f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=parse_role(role))
    session.add(user)
    session.flush()
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def disable_user(session: Session, user_id: int) -> User:
    """Disable a user and end their sessions."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    user.disabled_at = user.disabled_at or utcnow()
    session.execute(
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return user


def authenticate_user(session: Session, *, username: str, password: str) -> User:
    """The user whose password matches; one error message for every failure."""
    user = session.scalar(select(User).where(User.username == username.strip()))
    ok = verify_password(password, user.password_hash if user else _dummy_hash())
    if user is None or not ok or user.disabled_at is not None:
        raise Unauthorized("wrong username or password")
    if needs_rehash(user.password_hash):  # an older scheme or weaker parameters: upgrade while we have the password
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    return user


# ---------------------------------------------------------------------------------------- sessions


def start_session(session: Session, user: User, *, hours: float) -> str:
    """Open a browser session for ``user``; returns the cookie token (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_hash=_sha256(token),
            csrf_token=secrets.token_urlsafe(24),
            user_id=user.id,
            expires_at=utcnow() + timedelta(hours=hours),
        )
    )
    session.flush()
    return token


def authenticate_session(session: Session, token: str) -> Principal:
    """The principal of a live session cookie; :class:`Unauthorized` otherwise."""
    row = session.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == _sha256(token))
    ).first()
    if row is None:
        raise Unauthorized("not logged in")
    web, user = row
    if web.revoked_at is not None or _aware(web.expires_at) <= utcnow() or user.disabled_at is not None:
        raise Unauthorized("session expired")
    return Principal("user", user.id, user.username, user.role, csrf_token=web.csrf_token)


def end_session(session: Session, token: str) -> None:
    session.execute(update(WebSession).where(WebSession.token_hash == _sha256(token)).values(revoked_at=utcnow()))


def check_csrf(principal: Principal, supplied: str | None) -> None:
    """Cookie-authenticated writes must echo the session's CSRF token (form field or header)."""
    if principal.csrf_token is None:
        return
    if not supplied or not hmac.compare_digest(supplied, principal.csrf_token):
        raise Forbidden("missing or wrong CSRF token")


# ----------------------------------------------------------------------------------- local admin


def ensure_local_admin(session: Session) -> dict[str, Any] | None:
    """On a fresh home, create an ``admin`` user (random password) and an admin API key.

    Returns ``{"username", "password", "key"}`` the first time (to print once), ``None`` afterwards.
    """
    has_admin_key = session.scalar(select(ApiKey.id).where(ApiKey.role == Role.admin).limit(1))
    has_admin_user = session.scalar(select(User.id).where(User.role == Role.admin).limit(1))
    if has_admin_key or has_admin_user:
        return None
    password = secrets.token_urlsafe(12)
    create_user(session, username="admin", password=password, role=Role.admin.value)
    key, raw = create_api_key(session, name="local-admin", role=Role.admin.value)
    return {"username": "admin", "password": password, "key": raw, "key_prefix": key.prefix}
