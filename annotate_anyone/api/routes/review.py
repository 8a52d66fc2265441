"""Review: Label Studio webhook receiver, signed image links, push/sync jobs, status and annotator stats."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from annotate_anyone.access.auth import Perm
from annotate_anyone.api import actions
from annotate_anyone.api.auth import ReviewReader, require
from annotate_anyone.api.deps import ExecutorDep, SessionDep, SettingsDep, StoreDep
from annotate_anyone.api.limits import json_too_deep
from annotate_anyone.api.params import IdPath
from annotate_anyone.api.schemas import JobOut
from annotate_anyone.jobs import kinds
from annotate_anyone.jobs.models import Job
from annotate_anyone.review import service

router = APIRouter(prefix="/review", tags=["review"])
JobStarter = Annotated[Any, require(Perm.jobs_start)]


PushIn = kinds.ReviewPushParams  # the job kinds' parameters, as the request bodies
SyncIn = kinds.ReviewSyncParams


@router.post("/webhook", status_code=status.HTTP_202_ACCEPTED, summary="Label Studio webhook (shared secret)")
async def webhook(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    background: BackgroundTasks,
    secret: Annotated[str | None, Header(alias="X-AA-Webhook-Secret")] = None,
) -> dict[str, int]:
    if not service.webhook_secret_ok(settings, secret):  # before the body is read or parsed
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-AA-Webhook-Secret")
    body = await request.body()  # at most AA_MAX_BODY_BYTES (api/limits.py)
    if json_too_deep(body, settings.max_json_depth):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the JSON body nests too deep")
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the body is not JSON") from exc
    if not isinstance(payload, dict):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the body must be a JSON object")
    try:
        event_id = service.accept_webhook(session, settings, secret=secret, payload=payload)
    except service.WebhookForbidden as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    session.commit()
    background.add_task(service.handle_events, settings)  # after the response: Label Studio waits 1 s at most
    return {"event": event_id}


@router.get(
    "/media/{person_id}", summary="A person's image, for a signed expiring link", response_class=StreamingResponse
)
def media(
    person_id: IdPath,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    exp: Annotated[int, Query(ge=0, le=2**62)],
    sig: Annotated[str, Query(pattern="^[0-9a-f]{64}$")],
    layer: Annotated[Literal["parsing"] | None, Query(description="parsing: the parsing overlay")] = None,
) -> StreamingResponse:
    stream, media_type = service.open_media(
        session, settings, store, person_id=person_id, expires=exp, sig=sig, layer=layer
    )
    # Label Studio fetches images with CORS (crossOrigin="anonymous"); the link itself is the credential.
    headers = {"Cache-Control": "private, max-age=3600", "Access-Control-Allow-Origin": "*"}
    return StreamingResponse(stream, media_type=media_type, headers=headers)


@router.post("/push", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, summary="Push queued tasks")
def push(
    body: PushIn,
    session: SessionDep,
    executor: ExecutorDep,
    background: BackgroundTasks,
    principal: JobStarter,
    request: Request,
) -> Job:
    return actions.start_job(
        session=session,
        executor=executor,
        background=background,
        principal=principal,
        request=request,
        kind="review_push",
        params=body.model_dump(),
    )


@router.post("/sync", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, summary="Reconcile answers")
def sync(
    body: SyncIn,
    session: SessionDep,
    executor: ExecutorDep,
    background: BackgroundTasks,
    principal: JobStarter,
    request: Request,
) -> Job:
    return actions.start_job(
        session=session,
        executor=executor,
        background=background,
        principal=principal,
        request=request,
        kind="review_sync",
        params=body.model_dump(),
    )


@router.get("/status", summary="Review queue and sync state")
def review_status(session: SessionDep, principal: ReviewReader) -> dict[str, Any]:
    return service.review_status(session)


@router.get("/annotators", summary="Per-annotator throughput, gold accuracy and flags")
def annotators(session: SessionDep, settings: SettingsDep, principal: ReviewReader) -> list[dict[str, Any]]:
    return service.annotator_stats(session, settings.review)


@router.get("/agreement", summary="Per-attribute agreement on overlapped tasks")
def agreement(session: SessionDep, principal: ReviewReader) -> dict[str, dict[str, float]]:
    return service.agreement(session)
