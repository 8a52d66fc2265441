"""Jinja2 templates of the dashboard (``web/templates``) and the context every page gets."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from annotate_anyone import __version__
from annotate_anyone._resources import resource_dir
from annotate_anyone.access.auth import Perm, Principal

WEB = resource_dir("web")  # the top-level web/, shipped as annotate_anyone._resources.web
templates = Jinja2Templates(directory=str(WEB / "templates"))

# (label, path, permission): the navigation shows what the role may open
NAV: tuple[tuple[str, str, Perm], ...] = (
    ("Overview", "/ui/", Perm.pool_read),
    ("Jobs", "/ui/jobs", Perm.pool_read),
    ("Images", "/ui/images", Perm.pool_read),
    ("Review", "/ui/review", Perm.review_read),
    ("Flywheel", "/ui/flywheel", Perm.pool_read),
    ("Releases", "/ui/releases", Perm.releases_read),
    ("Keys & users", "/ui/admin", Perm.keys_manage),
    ("Audit", "/ui/audit", Perm.audit_read),
)


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200
) -> HTMLResponse:
    """Render a page with the caller, its CSRF token and the navigation it may see."""
    principal: Principal | None = getattr(request.state, "principal", None)
    nav = [(label, path) for label, path, perm in NAV if principal is not None and principal.can(perm)]
    base = {
        "principal": principal,
        "csrf_token": principal.csrf_token if principal else None,
        "nav": nav,
        "path": request.url.path,
        "version": __version__,
        "Perm": Perm,
    }
    return templates.TemplateResponse(request, name, {**base, **(context or {})}, status_code=status_code)
