"""Images in the pool, filterable, with their persons and attributes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from annotate_anyone.api.deps import SessionDep, StoreDep
from annotate_anyone.api.schemas import ImageDetail, Page
from annotate_anyone.db.models import Image
from annotate_anyone.services import images

router = APIRouter(prefix="/images", tags=["images"])


@router.get("", response_model=Page[ImageDetail], summary="List images (paginated, filterable)")
def list_images(
    session: SessionDep,
    status: str | None = Query(None, pattern="^(kept|dropped|taken_down)$"),
    drop_reason: str | None = Query(None, max_length=64),
    source_id: int | None = None,
    shot_type: str | None = Query(None, max_length=32),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> Any:
    rows, total = images.list_images(
        session,
        status=status,
        drop_reason=drop_reason,
        source_id=source_id,
        shot_type=shot_type,
        limit=limit,
        offset=offset,
    )
    return {"items": rows, "total": total, "limit": limit, "offset": offset}


@router.get("/{image_id}", response_model=ImageDetail, summary="One image with persons and attributes")
def get_image(image_id: int, session: SessionDep) -> Image:
    return images.get_image(session, image_id)


@router.get("/{image_id}/original", summary="The original bytes", response_class=StreamingResponse)
def get_original(image_id: int, session: SessionDep, store: StoreDep) -> StreamingResponse:
    image = images.get_image(session, image_id)
    stream = images.open_original(store, image)
    return StreamingResponse(stream, media_type=images.media_type(image))
