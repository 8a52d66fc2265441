"""The one authentication dependency and the role check built on it.

Every protected route depends on :func:`require` (directly or through its router): the caller is an
API key (``Authorization: Bearer aa_...``) or a browser session cookie; cookie-authenticated writes
must carry the session's CSRF token; each principal has a token bucket.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from annotate_anyone.access.auth import (
    AuthConfig,
    Perm,
    Principal,
    RateLimited,
    Unauthorized,
    authenticate_key,
    authenticate_session,
    authorize,
    check_csrf,
)
from annotate_anyone.access.ratelimit import RateLimiter, RedisRateLimiter, SqliteRateLimiter
from annotate_anyone.api.deps import SessionDep
from annotate_anyone.settings import Settings

SESSION_COOKIE = "aa_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RATE_LIMIT_FILE = "ratelimit.db"  # in the home: the buckets every embedded server process shares

bearer_scheme = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer aa_<prefix>_<secret>`")
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="Dashboard login session")


def make_limiter(settings: Settings) -> RateLimiter:
    """Buckets every server process shares: in Redis when a service fleet has a Redis broker, else in a
    SQLite file of the home (``serve --workers N`` on one machine)."""
    if settings.profile == "service" and settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisRateLimiter(settings.broker_url)
    return SqliteRateLimiter(settings.resolved_home / RATE_LIMIT_FILE)


async def get_limiter(request: Request) -> RateLimiter:
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        limiter = request.app.state.rate_limiter = make_limiter(request.app.state.settings)
    return limiter


LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]


async def get_auth_config(request: Request) -> AuthConfig:
    """``app.state.auth_config`` when set (tests, benchmarks), else from the settings."""
    return getattr(request.app.state, "auth_config", None) or request.app.state.settings.auth


AuthConfigDep = Annotated[AuthConfig, Depends(get_auth_config)]


def client_addr(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def limit(limiter: RateLimiter, key: str, *, burst: float, per_second: float, what: str) -> None:
    """Spend a token from ``key``'s bucket or raise :class:`RateLimited`."""
    wait = limiter.take(key, capacity=burst, rate=per_second)
    if wait > 0:
        raise RateLimited(f"too many {what}; retry in {wait:.1f} s", retry_after=wait)


async def supplied_csrf(request: Request) -> str | None:
    """The CSRF token a write request carries: the header, or the form field of an HTML form."""
    if request.method not in UNSAFE:
        return None
    if header := request.headers.get(CSRF_HEADER):
        return header
    if request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def current_principal(
    request: Request,
    session: SessionDep,
    cfg: AuthConfigDep,
    limiter: LimiterDep,
    csrf: Annotated[str | None, Depends(supplied_csrf)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> Principal:
    """Authenticate the request (API key first, then session cookie) and spend one rate-limit token."""
    if bearer is not None:
        try:
            principal = authenticate_key(session, bearer.credentials, touch_every_s=cfg.last_used_every_s)
        except Unauthorized:
            addr = client_addr(request)
            limit(limiter, f"fail:{addr}", burst=cfg.login_burst * 4, per_second=cfg.login_per_second, what="bad keys")
            raise
    elif cookie:
        principal = authenticate_session(session, cookie)
        if request.method in UNSAFE:
            check_csrf(principal, csrf)
    else:
        raise Unauthorized("authentication required: send 'Authorization: Bearer <API key>' or log in")
    bucket = f"p:{principal.kind}:{principal.id}"
    limit(limiter, bucket, burst=cfg.key_burst, per_second=cfg.key_per_second, what="requests")
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(*perms: Perm) -> Any:
    """A dependency that authenticates the caller and checks that its role grants every one of ``perms``."""

    async def check(principal: CurrentPrincipal) -> Principal:  # pure: runs on the loop, no thread hop
        for perm in perms:
            authorize(principal, perm)
        return principal

    check.__name__ = "require_" + "_".join(p.name for p in perms)
    return Depends(check)


PoolReader = Annotated[Principal, require(Perm.pool_read)]
SourceWriter = Annotated[Principal, require(Perm.sources_write)]
JobCanceller = Annotated[Principal, require(Perm.jobs_cancel)]
ReleaseReader = Annotated[Principal, require(Perm.releases_read)]
ReviewReader = Annotated[Principal, require(Perm.review_read)]
KeyManager = Annotated[Principal, require(Perm.keys_manage)]
AuditReader = Annotated[Principal, require(Perm.audit_read)]
TakedownAdmin = Annotated[Principal, require(Perm.takedown)]
