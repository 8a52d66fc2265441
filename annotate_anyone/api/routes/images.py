"""Images in the pool, filterable, with their persons and attributes; overlays; takedown (admins)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, select

from annotate_anyone.api import actions
from annotate_anyone.api.auth import PoolReader, TakedownAdmin
from annotate_anyone.api.auth_schemas import TakedownIn
from annotate_anyone.api.deps import SessionDep, StoreDep
from annotate_anyone.api.paging import AfterId
from annotate_anyone.api.params import IdPath, Limit, Offset, SourceIdQuery
from annotate_anyone.api.schemas import ImageDetail, ImageListItem, Page
from annotate_anyone.catalog import browse, images
from annotate_anyone.catalog.models import Image

router = APIRouter(prefix="/images", tags=["images"])
Overlay = Annotated[str, Path(pattern="^(parsing|mask)$", description="parsing: ATR label map; mask: person mask")]


@router.get(
    "",
    response_model=Page[ImageListItem],
    summary="List images (paginated, filterable)",
    description=(
        "Newest first. `total` is exact up to 1,000 matches (beyond, it reads 1,001) and null when filtering by "
        "shot type or attribute; `has_more` says whether another page follows. Rows carry person counts and shot "
        "types; `expand=persons` adds each person with keypoints and attributes (or fetch `/images/{id}`)."
    ),
)
def list_images(
    session: SessionDep,
    principal: PoolReader,
    status: str | None = Query(None, pattern="^(kept|dropped|taken_down)$"),
    drop_reason: str | None = Query(None, max_length=64),
    source_id: SourceIdQuery = None,
    shot_type: str | None = Query(None, max_length=32),
    attribute: str | None = Query(None, max_length=200, description="key=value", examples=["hair color=black"]),
    expand: Literal["persons"] | None = Query(None, description="persons: inline persons and their attributes"),
    limit: Limit = 50,
    offset: Offset = 0,
    after_id: AfterId = None,
) -> Any:
    filters = browse.ImageFilters.build(
        status=status, drop_reason=drop_reason, source_id=source_id, shot_type=shot_type, attribute=attribute
    )
    listed = filters if after_id is None else _Before(filters, after_id)
    page = browse.list_images(session, filters=listed, limit=limit, offset=offset, expand_persons=expand == "persons")
    total = page.total
    if after_id is not None and not filters.joins_persons:
        total = browse.count_capped(session, filters.apply(select(Image)))  # what the filters match, as offset pages
    return {
        "items": page.rows,
        "total": total,
        "limit": limit,
        "offset": offset,
        "has_more": page.has_more,
        "next_after_id": page.rows[-1]["id"] if page.has_more else None,
    }


@dataclass(frozen=True, slots=True)
class _Before:
    """The list's filters plus keyset paging: only images older than ``after_id`` (the list is newest first).

    It says it looks through persons so that the listing skips its own count: the route counts what the filters
    alone match, so that ``total`` means the same with ``after_id`` as with ``offset``."""

    filters: browse.ImageFilters
    after_id: int
    joins_persons: bool = True

    def apply(self, query: Select) -> Select:
        return self.filters.apply(query).where(Image.id < self.after_id)


@router.get("/{image_id}", response_model=ImageDetail, summary="One image with persons and attributes")
def get_image(image_id: IdPath, session: SessionDep, principal: PoolReader) -> Image:
    return images.get_image(session, image_id)


@router.get("/{image_id}/original", summary="The original bytes", response_class=StreamingResponse)
def get_original(image_id: IdPath, session: SessionDep, store: StoreDep, principal: PoolReader) -> StreamingResponse:
    image = images.get_image(session, image_id)
    stream = images.open_original(store, image)
    return StreamingResponse(
        stream, media_type=images.media_type(image), headers={"Cache-Control": "private, max-age=3600"}
    )


@router.get(
    "/{image_id}/persons/{index}/{overlay}",
    summary="A person's parsing map or mask (PNG)",
    response_class=StreamingResponse,
)
def get_overlay(
    image_id: IdPath,
    overlay: Overlay,
    session: SessionDep,
    store: StoreDep,
    principal: PoolReader,
    index: int = Path(ge=0, le=1000),
) -> StreamingResponse:
    key = browse.overlay_key(session, image_id=image_id, index=index, overlay=overlay)
    return StreamingResponse(
        store.open(key), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )


@router.post("/{image_id}/takedown", response_model=ImageDetail, summary="Take an image down (admins)")
def take_down(
    image_id: IdPath, body: TakedownIn, session: SessionDep, principal: TakedownAdmin, request: Request
) -> Any:
    image = actions.take_down_image(
        session=session, principal=principal, request=request, image_id=image_id, reason=body.reason
    )
    return image
