"""The dashboard: server-rendered pages under ``/ui`` (thin views over the services)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from annotate_anyone import jobs
from annotate_anyone.access import audit, auth
from annotate_anyone.api import actions, dashboard
from annotate_anyone.api.auth import (
    AuditReader,
    CurrentPrincipal,
    JobCanceller,
    KeyManager,
    PoolReader,
    ReleaseReader,
    ReviewReader,
    SourceWriter,
    TakedownAdmin,
    client_addr,
)
from annotate_anyone.api.deps import ExecutorDep, SessionDep, SettingsDep, StoreDep
from annotate_anyone.api.params import IdPath, Offset
from annotate_anyone.api.templating import NAV, render
from annotate_anyone.catalog import browse, images
from annotate_anyone.catalog.sources import guess_kind, register_source
from annotate_anyone.db.base import session_scope
from annotate_anyone.errors import AnnotateAnyoneError, NotFound
from annotate_anyone.jobs import kinds
from annotate_anyone.release import service as release_service
from annotate_anyone.release import views as release_views
from annotate_anyone.release.manifest import manifest_files
from annotate_anyone.settings import Settings

router = APIRouter(include_in_schema=False)
PAGE = 50


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _cache(request: Request) -> dashboard.TTLCache:
    cache = getattr(request.app.state, "dashboard_cache", None)
    if cache is None:
        cache = request.app.state.dashboard_cache = dashboard.TTLCache(ttl_s=30.0)
    return cache


def _fresh(settings: Settings, compute: Callable[..., Any], *args: Any) -> Any:
    """Run a cached aggregate in its own session (it may run on the cache's refresh thread)."""
    with session_scope(settings.db_url) as session:
        return compute(session, *args)


@router.get("/")
def root() -> RedirectResponse:
    return _see_other("/ui/")


@router.get("/ui/", response_class=HTMLResponse)
def overview(request: Request, session: SessionDep, settings: SettingsDep, principal: CurrentPrincipal) -> Response:
    if not principal.can(auth.Perm.pool_read):  # trainers land on what they may read
        return _see_other(next(path for _, path, perm in NAV if principal.can(perm)))
    data = _cache(request).get("overview", lambda: _fresh(settings, dashboard.overview, settings))
    workers = _cache(request).get("workers", lambda: dashboard.worker_health(settings))
    return render(request, "overview.html", {**data, "workers": workers})


# -------------------------------------------------------------------------------------------- jobs


@router.get("/ui/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    session: SessionDep,
    principal: PoolReader,
    status: str | None = Query(None, pattern="^(queued|running|succeeded|failed|cancelled)$"),
    offset: Offset = 0,
) -> Response:
    rows = jobs.list_jobs(session, status=status, limit=PAGE + 1, offset=offset)
    sources, _ = _sources(session)
    return render(
        request,
        "jobs.html",
        {"jobs": rows[:PAGE], "more": len(rows) > PAGE, "offset": offset, "status": status, "sources": sources},
    )


def _sources(session: Any) -> tuple[list[Any], int]:
    from sqlalchemy import select

    from annotate_anyone.catalog.models import Source

    rows = list(session.scalars(select(Source).order_by(Source.id.desc()).limit(200)))
    return rows, len(rows)


@router.post("/ui/sources")
def add_source(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: SourceWriter,
    uri: Annotated[str, Form(min_length=1, max_length=4096)],
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    source = register_source(
        session, settings, principal, name=name.strip() or uri, kind=guess_kind(uri), uri=uri.strip(), reuse=True
    )
    audit.record(
        session,
        principal=principal,
        action="source.create",
        target_type="source",
        target_id=source.id,
        detail={"uri": source.uri},
        remote_addr=client_addr(request),
    )
    return _see_other(f"/ui/jobs?source={source.id}")


@router.post("/ui/jobs")
def start_job(
    request: Request,
    session: SessionDep,
    executor: ExecutorDep,
    background: BackgroundTasks,
    principal: CurrentPrincipal,
    kind: Annotated[str, Form(pattern=f"^({'|'.join(kinds.STARTABLE)})$")],
    source_id: Annotated[int | None, Form(ge=1)] = None,
    preset: Annotated[str, Form(max_length=64)] = "all-accepted",
    version: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    auth.authorize(principal, kinds.permission(kind))  # before any other error, as a role check should be
    params: dict[str, Any] = {}
    if kind == "ingest":
        if source_id is None:
            raise NotFound("choose a source to ingest")
        params["source_ids"] = [source_id]
    elif kind == "export":
        params["preset"] = preset
        if version.strip():
            params["version"] = version.strip()
    job = actions.start_job(
        session=session,
        executor=executor,
        background=background,
        principal=principal,
        request=request,
        kind=kind,
        params=params,
    )
    return _see_other(f"/ui/jobs/{job.id}")


@router.get("/ui/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: IdPath, request: Request, session: SessionDep, principal: PoolReader) -> Response:
    return render(request, "job.html", {"job": jobs.get_job(session, job_id)})


@router.post("/ui/jobs/{job_id}/cancel")
def cancel(job_id: IdPath, request: Request, session: SessionDep, principal: JobCanceller) -> Response:
    actions.cancel_job(session=session, principal=principal, request=request, job_id=job_id)
    return _see_other(f"/ui/jobs/{job_id}")


# ------------------------------------------------------------------------------------------ images


@router.get("/ui/images", response_class=HTMLResponse)
def images_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: PoolReader,
    status: str | None = Query(None, max_length=16),
    drop_reason: str | None = Query(None, max_length=64),
    shot_type: str | None = Query(None, max_length=32),
    attribute: str | None = Query(None, max_length=200),
    offset: Offset = 0,
) -> Response:
    filters = browse.ImageFilters.build(
        status=status, drop_reason=drop_reason, shot_type=shot_type, attribute=attribute
    )
    page = browse.list_images(session, filters=filters, limit=PAGE, offset=offset)
    rows, total, more = page.rows, page.total, page.has_more
    facets = _cache(request).get("facets", lambda: _fresh(settings, browse.facet_values))
    query = {
        k: v
        for k, v in (
            ("status", status),
            ("drop_reason", drop_reason),
            ("shot_type", shot_type),
            ("attribute", attribute),
        )
        if v
    }
    return render(
        request,
        "images.html",
        {
            "rows": rows,
            "total": total,
            "offset": offset,
            "page": PAGE,
            "filters": query,
            "facets": facets,
            "cap": browse.COUNT_CAP,
            "more": more,
        },
    )


@router.get("/ui/images/{image_id}", response_class=HTMLResponse)
def image_page(image_id: IdPath, request: Request, session: SessionDep, principal: PoolReader) -> Response:
    image = images.get_image(session, image_id)
    return render(
        request,
        "image.html",
        {"image": image, "overlays": dashboard.person_overlays(image), "attributes": dashboard.attribute_rows(image)},
    )


@router.post("/ui/images/{image_id}/takedown")
def takedown(
    image_id: IdPath,
    request: Request,
    session: SessionDep,
    principal: TakedownAdmin,
    reason: Annotated[str, Form(min_length=1, max_length=500)],
) -> Response:
    actions.take_down_image(session=session, principal=principal, request=request, image_id=image_id, reason=reason)
    return _see_other(f"/ui/images/{image_id}")


# ------------------------------------------------------------------------------- review, flywheel


@router.get("/ui/review", response_class=HTMLResponse)
def review_page(request: Request, session: SessionDep, settings: SettingsDep, principal: ReviewReader) -> Response:
    return render(
        request,
        "review.html",
        _cache(request).get("review", lambda: _fresh(settings, dashboard.review_overview, settings)),
    )


@router.get("/ui/flywheel", response_class=HTMLResponse)
def flywheel_page(request: Request, session: SessionDep, settings: SettingsDep, principal: PoolReader) -> Response:
    context = {"report": dashboard.flywheel(session, settings), "coverage": dashboard.category_coverage()}
    return render(request, "flywheel.html", context)


# ---------------------------------------------------------------------------------------- releases


@router.get("/ui/releases", response_class=HTMLResponse)
def releases_page(request: Request, session: SessionDep, principal: ReleaseReader, offset: Offset = 0) -> Response:
    rows = release_service.list_releases(session, limit=PAGE + 1, offset=offset)
    return render(request, "releases.html", {"releases": rows[:PAGE], "more": len(rows) > PAGE, "offset": offset})


@router.get("/ui/releases/{version}", response_class=HTMLResponse)
def release_page(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    principal: ReleaseReader,
    version: str,
) -> Response:
    release = release_service.get_release(session, version)
    context: dict[str, Any] = {"release": release, "summary": None, "files": [], "diff": None, "problem": None}
    try:
        manifest = release_views.manifest(store, version)
        context.update(summary=release_views.summary(manifest), files=manifest_files(manifest))
        context["diff"] = release_views.changes(store, version)
    except AnnotateAnyoneError as exc:
        context["problem"] = str(exc)
    return render(request, "release.html", context)


# ------------------------------------------------------------------------------------ admin, audit


def _admin(request: Request, session: Any, new_key: str | None = None) -> Response:
    return render(
        request,
        "admin.html",
        {
            "keys": auth.list_api_keys(session),
            "users": auth.list_users(session),
            "new_key": new_key,
            "roles": [r.value for r in auth.Role],
        },
    )


@router.get("/ui/admin", response_class=HTMLResponse)
def admin_page(request: Request, session: SessionDep, principal: KeyManager) -> Response:
    return _admin(request, session)


@router.post("/ui/admin/keys", response_class=HTMLResponse)
def admin_create_key(
    request: Request,
    session: SessionDep,
    principal: KeyManager,
    name: Annotated[str, Form(min_length=1, max_length=128)],
    role: Annotated[str, Form(pattern="^(admin|engineer|annotator|trainer)$")],
    expires_in_days: Annotated[float | None, Form(gt=0, le=3650)] = None,
) -> Response:
    """Create a key and show it on this one response (it is never shown again)."""
    _key, raw = actions.create_api_key(
        session=session, principal=principal, request=request, name=name, role=role, expires_in_days=expires_in_days
    )
    response = _admin(request, session, new_key=raw)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/ui/admin/keys/{key_id}/revoke")
def admin_revoke_key(key_id: IdPath, request: Request, session: SessionDep, principal: KeyManager) -> Response:
    actions.revoke_api_key(session=session, principal=principal, request=request, key_id=key_id)
    return _see_other("/ui/admin")


@router.post("/ui/admin/users")
def admin_create_user(
    request: Request,
    session: SessionDep,
    principal: KeyManager,
    username: Annotated[str, Form(min_length=1, max_length=128)],
    password: Annotated[str, Form(min_length=8, max_length=256)],
    role: Annotated[str, Form(pattern="^(admin|engineer|annotator|trainer)$")],
) -> Response:
    actions.create_user(
        session=session, principal=principal, request=request, username=username, password=password, role=role
    )
    return _see_other("/ui/admin")


@router.get("/ui/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    session: SessionDep,
    principal: AuditReader,
    action: str | None = Query(None, max_length=64),
    offset: Offset = 0,
) -> Response:
    rows, total = audit.list_events(session, action=action, limit=PAGE, offset=offset)
    return render(
        request, "audit.html", {"events": rows, "total": total, "offset": offset, "page": PAGE, "action": action}
    )
