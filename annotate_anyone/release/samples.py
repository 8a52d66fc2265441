"""Read the samples of an export from the database, in pages, with the labels a preset selects.

A sample is a person (image, index) or, where the preset allows, a kept image with no person row.
Taken-down images (by hash, URL or source, or with status ``taken_down``) are never read.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, and_, false, func, or_, select, type_coerce
from sqlalchemy.orm import Session

from annotate_anyone.catalog.models import Attribute, Image, ImageStatus, Item, Person, Source, Takedown
from annotate_anyone.release.paths import sample_key
from annotate_anyone.release.selection import Preset, SampleFilter

PAGE_IMAGES = 512


@dataclass(slots=True)
class Label:
    """The one label a preset picked for (person, group, key), with its provenance."""

    group: int
    key: str
    value: str | None
    confidence: float | None
    origin: str
    model_version: str
    taxonomy_version: str
    state: str
    annotator: str
    agreement: float | None = None  # share of human answers that agree with ``value`` (>= 2 answers)
    human_answers: int = 0

    @property
    def name(self) -> str:
        return f"{self.group}.{self.key}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group, "key": self.key, "value": self.value, "confidence": self.confidence,
            "origin": self.origin, "model_version": self.model_version, "taxonomy_version": self.taxonomy_version,
            "state": self.state, "annotator": self.annotator, "agreement": self.agreement,
            "human_answers": self.human_answers,
        }  # fmt: skip


@dataclass(slots=True)
class Sample:
    key: str
    image_id: int
    sha256: str
    storage_key: str
    width: int
    height: int
    format: str | None
    source_id: int | None
    source_name: str | None
    source_uri: str
    person: dict[str, Any] | None
    labels: list[Label] = field(default_factory=list)

    def provenance(self) -> dict[str, Any]:
        """Label provenance summary: counts by origin and state, model versions, lowest model confidence."""
        model_conf = [lb.confidence for lb in self.labels if lb.origin == "model" and lb.confidence is not None]
        return {
            "labels": len(self.labels),
            "by_origin": dict(sorted(Counter(lb.origin for lb in self.labels).items())),
            "by_state": dict(sorted(Counter(lb.state for lb in self.labels).items())),
            "model_versions": sorted({lb.model_version for lb in self.labels if lb.model_version}),
            "min_model_confidence": min(model_conf) if model_conf else None,
        }


def _taken_down_clause() -> Any:
    """SQL condition: the image is covered by a takedown (by hash, URL or source)."""
    urls = select(Takedown.url).where(Takedown.url.is_not(None))
    return or_(
        Image.status == ImageStatus.taken_down,
        Image.sha256.in_(select(Takedown.sha256).where(Takedown.sha256.is_not(None))),
        Image.source_uri.in_(urls),
        Image.id.in_(select(Item.image_id).where(Item.uri.in_(urls), Item.image_id.is_not(None))),
        Image.source_id.in_(select(Takedown.source_id).where(Takedown.source_id.is_not(None))),
        Image.source_id.in_(select(Source.id).where(Source.taken_down.is_(True))),
    )


class SampleReader:
    """Pages through the images an export selects and yields their samples in a stable order."""

    def __init__(self, session: Session, preset: Preset, sample_filter: SampleFilter) -> None:
        self.session = session
        self.preset = preset
        self.filter = sample_filter

    def _images(self) -> Select:
        query = select(Image.id).where(Image.status == ImageStatus.kept, ~_taken_down_clause())
        f = self.filter
        if f.sources:
            names = [s for s in f.sources if isinstance(s, str) and not s.isdigit()]
            ids = [int(s) for s in f.sources if isinstance(s, int) or (isinstance(s, str) and s.isdigit())]
            by_name = select(Source.id).where(Source.name.in_(names)) if names else None
            query = query.where(
                or_(
                    Image.source_id.in_(ids) if ids else false(),
                    Image.source_id.in_(by_name) if by_name is not None else false(),
                )
            )
        if f.since is not None:
            query = query.where(Image.created_at >= f.since)
        if f.until is not None:
            query = query.where(Image.created_at < f.until)
        return query

    def _person_ok(self) -> Any:
        if self.filter.shot_types:
            return Person.shot_type.in_(self.filter.shot_types)
        return Person.id.is_not(None) if not self.preset.whole_images else None

    def count(self) -> int:
        """Candidate samples (before the preset's label requirement): for progress totals."""
        images = self._images().subquery()
        persons = select(func.count(Person.id)).where(Person.image_id.in_(select(images.c.id)))
        if self.filter.shot_types:
            persons = persons.where(Person.shot_type.in_(self.filter.shot_types))
        n = int(self.session.scalar(persons) or 0)
        if self.preset.whole_images and not self.filter.shot_types:
            bare = (
                select(func.count()).where(images.c.id.not_in(select(Person.image_id).distinct())).select_from(images)
            )
            n += int(self.session.scalar(bare) or 0)
        return n

    def __iter__(self) -> Iterator[Sample]:
        last = 0
        while True:
            ids = list(
                self.session.scalars(self._images().where(Image.id > last).order_by(Image.id).limit(PAGE_IMAGES))
            )
            if not ids:
                return
            last = ids[-1]
            yield from self._page(ids)

    def _page(self, image_ids: Sequence[int]) -> Iterator[Sample]:
        join = Person.image_id == Image.id
        if self.filter.shot_types:
            join = and_(join, Person.shot_type.in_(self.filter.shot_types))
        rows = self.session.execute(
            select(
                Image.id,
                Image.sha256,
                Image.storage_key,
                Image.width,
                Image.height,
                Image.format,
                Image.source_id,
                Image.source_uri,
                Source.name,
                Person.id,
                Person.index,
                Person.box,
                Person.keypoints,
                Person.face_boxes,
                Person.score,
                Person.shot_type,
                Person.caption,
                Person.parsing_key,
                Person.parsing_model,
            )  # fmt: skip
            .select_from(Image)
            .outerjoin(Source, Source.id == Image.source_id)
            .outerjoin(Person, join)
            .where(Image.id.in_(image_ids))
            .order_by(Image.id, Person.index)
        ).all()
        labels = self._labels([r[9] for r in rows if r[9] is not None])
        for r in rows:
            person_id = r[9]
            if person_id is None:
                if not self.preset.whole_images or self.filter.shot_types:
                    continue
                person = None
            else:
                person = {
                    "index": r[10], "box": r[11], "keypoints": r[12], "face_boxes": r[13], "score": r[14],
                    "shot_type": r[15], "caption": r[16], "parsing_key": r[17], "parsing_model": r[18],
                }  # fmt: skip
            chosen = labels.get(person_id, []) if person_id is not None else []
            if self.preset.require_labels and not chosen:
                continue
            yield Sample(
                key=sample_key(r[1], None if person is None else person["index"]),
                image_id=r[0], sha256=r[1], storage_key=r[2], width=r[3], height=r[4], format=r[5],
                source_id=r[6], source_uri=r[7], source_name=r[8], person=person, labels=chosen,
            )  # fmt: skip

    def _labels(self, person_ids: Sequence[int]) -> dict[int, list[Label]]:
        """Per person, one label per (group, key): human-verified first, then the newest, then the surest."""
        if not person_ids:
            return {}
        rows = self.session.execute(
            select(
                Attribute.person_id, Attribute.group, Attribute.key, Attribute.value, Attribute.confidence,
                type_coerce(Attribute.origin, String), Attribute.model_version, Attribute.taxonomy_version,
                type_coerce(Attribute.state, String), Attribute.annotator, Attribute.updated_at,
            ).where(Attribute.person_id.in_(person_ids))
        ).all()  # fmt: skip
        humans: dict[tuple[int, int, str], list[str | None]] = defaultdict(list)
        best: dict[tuple[int, int, str], tuple[tuple[Any, ...], Any]] = {}
        accepts = self.preset.accepts
        for row in rows:
            pid, group, key, value, conf, origin, _mv, _tv, state, annotator, updated = row
            ident = (pid, group, key)
            if origin == "human" and state != "rejected":
                humans[ident].append(value)
            if not accepts(state=state, origin=origin, confidence=conf):
                continue
            rank = (state == "human_verified", origin == "human", _ts(updated), conf or 0.0, annotator, _mv)
            if ident not in best or rank > best[ident][0]:
                best[ident] = (rank, row)
        out: dict[int, list[Label]] = defaultdict(list)
        for ident in sorted(best):
            _pid, group, key, value, conf, origin, mv, tv, state, annotator, _updated = best[ident][1]
            label = Label(group, key, value, conf, origin, mv, tv, state, annotator)
            answers = humans.get(ident, [])
            label.human_answers = len(answers)
            if len(answers) >= 2:
                label.agreement = round(sum(a == value for a in answers) / len(answers), 4)
            out[ident[0]].append(label)
        return out


def _ts(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0
