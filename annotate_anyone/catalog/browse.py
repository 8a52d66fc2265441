"""Browsing the image pool: filters (status, drop reason, source, shot type, attribute value), overlays, takedown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from annotate_anyone.catalog.images import get_image
from annotate_anyone.catalog.models import Attribute, Image, ImageStatus, Person
from annotate_anyone.catalog.takedown import take_down
from annotate_anyone.errors import InvalidInput, NotFound


@dataclass(frozen=True, slots=True)
class ImageFilters:
    """What the image list can be narrowed by; every filter uses an index."""

    status: str | None = None
    drop_reason: str | None = None
    source_id: int | None = None
    shot_type: str | None = None
    attribute_key: str | None = None
    attribute_value: str | None = None

    @classmethod
    def build(cls, *, attribute: str | None = None, **kwargs: Any) -> ImageFilters:
        """Filters from request values; ``attribute`` is ``key=value`` (or ``key`` for any value)."""
        key = value = None
        if attribute:
            key, _, value = attribute.partition("=")
            key, value = key.strip(), value.strip() or None
            if not key:
                raise InvalidInput("attribute filter must be key=value")
        clean = {k: (v or None) if isinstance(v, str) else v for k, v in kwargs.items()}
        if clean.get("status") and clean["status"] not in {s.value for s in ImageStatus}:
            raise InvalidInput(f"unknown image status {clean['status']!r}")
        return cls(attribute_key=key, attribute_value=value, **clean)

    @property
    def joins_persons(self) -> bool:
        """Whether a filter looks through persons or attributes (no cheap count exists then)."""
        return bool(self.shot_type or self.attribute_key)

    def apply(self, query: Select) -> Select:
        if self.status:
            query = query.where(Image.status == ImageStatus(self.status))
        if self.drop_reason:
            query = query.where(Image.drop_reason == self.drop_reason)
        if self.source_id is not None:
            query = query.where(Image.source_id == self.source_id)
        if self.shot_type:
            query = query.where(Image.id.in_(select(Person.image_id).where(Person.shot_type == self.shot_type)))
        if self.attribute_key:
            labelled = select(Person.image_id).join(Attribute, Attribute.person_id == Person.id)
            labelled = labelled.where(Attribute.key == self.attribute_key)
            if self.attribute_value:
                labelled = labelled.where(Attribute.value == self.attribute_value)
            query = query.where(Image.id.in_(labelled))
        return query


COUNT_CAP = 1_000  # totals are exact up to here; beyond, pages say "1,000+" (a full count costs a scan)


def count_capped(session: Session, query: Select, cap: int = COUNT_CAP) -> int:
    """How many rows ``query`` matches, counting at most ``cap + 1`` (so the cost stays bounded)."""
    # ordered like the page, so the planner walks the primary key and stops early instead of hashing everything
    bounded = query.with_only_columns(Image.id).order_by(Image.id.desc()).limit(cap + 1).subquery()
    return session.scalar(select(func.count()).select_from(bounded)) or 0


@dataclass(slots=True)
class ImagePage:
    """One page of the image list: rows newest first, the total (``None`` where counting would cost a scan)
    and whether more rows follow."""

    rows: list[dict[str, Any]]
    total: int | None
    has_more: bool


_IMAGE_FIELDS = (
    "id", "sha256", "phash", "source_id", "source_uri", "width", "height", "format", "status", "drop_reason",
    "duplicate_of", "metrics", "created_at",
)  # fmt: skip


def list_images(
    session: Session, *, filters: ImageFilters, limit: int = 50, offset: int = 0, expand_persons: bool = False
) -> ImagePage:
    """A page of images (newest first) as plain rows with ``person_count`` and ``shot_types``.

    ``expand_persons`` adds ``persons``: every person with keypoints and attributes (one extra query).
    The total is exact up to :data:`COUNT_CAP`; it is ``None`` when a filter looks through persons or
    attributes, where even a bounded count walks many index entries: ``has_more`` pages instead.
    """
    query = filters.apply(select(Image))
    total = None if filters.joins_persons else count_capped(session, query)
    images = list(session.scalars(query.order_by(Image.id.desc()).limit(limit + 1).offset(offset)))
    has_more, images = len(images) > limit, images[:limit]
    ids = [image.id for image in images]
    persons: dict[int, list[Any]] = {}
    shots: dict[int, list[str]] = {}
    if ids and expand_persons:
        loaded = session.scalars(
            select(Person)
            .where(Person.image_id.in_(ids))
            .order_by(Person.image_id, Person.index)
            .options(selectinload(Person.attributes))
        )
        for person in loaded:
            persons.setdefault(person.image_id, []).append(person)
            shots.setdefault(person.image_id, []).append(person.shot_type or "?")
    elif ids:
        for image_id, shot in session.execute(
            select(Person.image_id, Person.shot_type).where(Person.image_id.in_(ids))
        ):
            shots.setdefault(image_id, []).append(shot or "?")
    rows = []
    for image in images:
        row = {name: getattr(image, name) for name in _IMAGE_FIELDS}
        row["status"] = image.status.value
        row["person_count"] = len(shots.get(image.id, []))
        row["shot_types"] = sorted(set(shots.get(image.id, [])))
        row["persons"] = persons.get(image.id, []) if expand_persons else None
        rows.append(row)
    return ImagePage(rows=rows, total=total, has_more=has_more)


def facet_values(session: Session) -> dict[str, list[str]]:
    """Values offered by the browser's filter menus (drop reasons, shot types, attribute keys)."""
    return {
        "drop_reason": [r for r in session.scalars(select(Image.drop_reason).distinct().limit(200)) if r],
        "shot_type": [s for s in session.scalars(select(Person.shot_type).distinct().limit(50)) if s],
        "attribute_key": list(session.scalars(select(Attribute.key).distinct().order_by(Attribute.key).limit(200))),
    }


def overlay_key(session: Session, *, image_id: int, index: int, overlay: str) -> str:
    """The store key of a person's parsing map or mask."""
    person = session.scalar(select(Person).where(Person.image_id == image_id, Person.index == index))
    if person is None:
        raise NotFound(f"image {image_id} has no person {index}")
    key = person.parsing_key if overlay == "parsing" else person.mask_key
    if not key:
        raise NotFound(f"person {index} of image {image_id} has no {overlay}")
    return key


def take_down_image(session: Session, *, image_id: int, reason: str, requested_by: str) -> Image:
    """Take an image down by its hash: it leaves every later release (:mod:`annotate_anyone.catalog.takedown`)."""
    image = get_image(session, image_id)
    take_down(session, sha256=image.sha256, reason=reason, requested_by=requested_by)
    session.refresh(image)
    return image
