"""Browser login and logout (session cookie + CSRF) and ``/auth/whoami`` for any credential."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from annotate_anyone.access import audit, auth
from annotate_anyone.api.auth import (
    CSRF_FIELD,
    SESSION_COOKIE,
    AuthConfigDep,
    CurrentPrincipal,
    LimiterDep,
    client_addr,
    limit,
)
from annotate_anyone.api.auth_schemas import WhoAmI
from annotate_anyone.api.deps import SessionDep, SettingsDep
from annotate_anyone.api.templating import render

LOGIN_CSRF_COOKIE = "aa_login_csrf"
router = APIRouter(tags=["auth"])


def safe_next(target: str | None) -> str:
    """Only same-site paths are followed after login (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


def _login_page(request: Request, next_: str, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    page = render(request, "login.html", {"login_csrf": token, "next": next_, "error": error}, status_code=status_code)
    page.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login")
    return page


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:  # noqa: A002 (the query's name)
    return _login_page(request, safe_next(next))


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    cfg: AuthConfigDep,
    limiter: LimiterDep,
    username: Annotated[str, Form(max_length=128)],
    password: Annotated[str, Form(max_length=256)],
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=64)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/ui/",  # noqa: A002
    login_csrf: Annotated[str | None, Cookie(alias=LOGIN_CSRF_COOKIE)] = None,
) -> Response:
    """Check the password (rate-limited per client and username), then set the session cookie."""
    target = safe_next(next)
    if not login_csrf or not secrets.compare_digest(login_csrf, csrf_token):
        return _login_page(request, target, "The form expired; please try again.", 403)
    try:
        limit(
            limiter,
            f"login:{client_addr(request)}:{username.strip().lower()}",
            burst=cfg.login_burst,
            per_second=cfg.login_per_second,
            what="login attempts",
        )
        user = auth.authenticate_user(session, username=username, password=password)
    except auth.RateLimited as exc:
        page = _login_page(request, target, str(exc), 429)
        page.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return page
    except auth.Unauthorized as exc:
        return _login_page(request, target, str(exc), 401)
    token = auth.start_session(session, user, hours=cfg.session_hours)
    audit.record(
        session,
        principal=None,
        actor=f"user:{user.username}",
        action="auth.login",
        target_type="user",
        target_id=user.username,
        remote_addr=client_addr(request),
    )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(cfg.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=settings.public_url.startswith("https://"),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout", include_in_schema=False)
def logout(principal: CurrentPrincipal, session: SessionDep, request: Request) -> Response:
    """End the browser session (the CSRF check runs in the auth dependency)."""
    if token := request.cookies.get(SESSION_COOKIE):
        auth.end_session(session, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/auth/whoami", response_model=WhoAmI, summary="The caller's identity, role and permissions")
def whoami(principal: CurrentPrincipal) -> Any:
    perms = sorted(p.value for p in auth.Perm if principal.can(p))
    return {"kind": principal.kind, "name": principal.name, "role": principal.role.value, "permissions": perms}
