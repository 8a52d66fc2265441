"""Queries over the image pool."""

from __future__ import annotations

from typing import BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from annotate_anyone.catalog.models import Image, ImageStatus, Person
from annotate_anyone.errors import NotFound
from annotate_anyone.storage import ObjectStore

MEDIA = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "MPO": "image/jpeg"}


def list_images(
    session: Session,
    *,
    status: str | None = None,
    drop_reason: str | None = None,
    source_id: int | None = None,
    shot_type: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Image], int]:
    """A page of images (newest first) and the total matching the filters."""
    query = select(Image)
    if status:
        query = query.where(Image.status == ImageStatus(status))
    if drop_reason:
        query = query.where(Image.drop_reason == drop_reason)
    if source_id is not None:
        query = query.where(Image.source_id == source_id)
    if shot_type:
        query = query.where(Image.id.in_(select(Person.image_id).where(Person.shot_type == shot_type)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = query.options(selectinload(Image.persons).selectinload(Person.attributes))
    rows = session.scalars(page.order_by(Image.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), total


def get_image(session: Session, image_id: int) -> Image:
    image = session.get(Image, image_id, options=[selectinload(Image.persons).selectinload(Person.attributes)])
    if image is None:
        raise NotFound(f"no image {image_id}")
    return image


def open_original(store: ObjectStore, image: Image) -> BinaryIO:
    if not image.storage_key:
        raise NotFound(f"image {image.id} was dropped before its original was stored")
    return store.open(image.storage_key)


def media_type(image: Image) -> str:
    return MEDIA.get(image.format or "", "application/octet-stream")
