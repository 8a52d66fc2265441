"""Factories for the release tests: a small pool of real images, persons and labels in a migrated SQLite
database with a local (or S3) object store. Imported by tests/unit and tests/integration release tests."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from annotate_anyone.catalog.models import (
    Attribute,
    AttributeOrigin,
    AttributeState,
    Image,
    ImageStatus,
    Person,
    Source,
    SourceKind,
)
from annotate_anyone.db import migrate
from annotate_anyone.db.base import session_factory
from annotate_anyone.release.export import export_release
from annotate_anyone.release.models import Release
from annotate_anyone.storage.base import ObjectStore
from annotate_anyone.storage.local import LocalStore

TAXONOMY = "cm-1.0"


def jpeg(seed: int, size: tuple[int, int] = (96, 64), fmt: str = "JPEG") -> bytes:
    """Distinct, decodable image bytes (smooth random colour blocks)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (max(1, size[1] // 8), max(1, size[0] // 8), 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(pixels).resize(size, PILImage.Resampling.NEAREST).save(buf, format=fmt, quality=90)
    return buf.getvalue()


def astronaut() -> bytes:
    import skimage.data

    buf = io.BytesIO()
    PILImage.fromarray(skimage.data.astronaut()).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def parsing_map(width: int, height: int, seed: int) -> np.ndarray:
    """An ATR-style uint8 map: background, hair (2), face (11), upper clothes (4), pants (6)."""
    rng = np.random.default_rng(seed)
    m = np.zeros((height, width), np.uint8)
    top, left = int(rng.integers(0, height // 4)), int(rng.integers(0, width // 4))
    h, w = height - top, width // 2
    m[top : top + h // 8, left : left + w] = 2
    m[top + h // 8 : top + h // 4, left : left + w] = 11
    m[top + h // 4 : top + h // 2, left : left + w] = 4
    m[top + h // 2 :, left : left + w] = 6
    return m


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class World:
    """A database + object store with named images and persons."""

    url: str
    session: Session
    store: ObjectStore
    sources: dict[str, Source] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    persons: dict[str, Person] = field(default_factory=dict)
    parsing: dict[str, np.ndarray] = field(default_factory=dict)
    originals: dict[str, bytes] = field(default_factory=dict)

    def source(self, name: str) -> Source:
        if name not in self.sources:
            src = Source(name=name, kind=SourceKind.folder, uri=f"/data/{name}")
            self.session.add(src)
            self.session.flush()
            self.sources[name] = src
        return self.sources[name]

    def image(self, name: str, data: bytes, *, source: str = "web", status: ImageStatus = ImageStatus.kept) -> Image:
        sha, key = self.store.put_content(data)
        with PILImage.open(io.BytesIO(data)) as img:
            width, height, fmt = img.width, img.height, img.format
        row = Image(
            sha256=sha,
            source_id=self.source(source).id,
            source_uri=f"https://example.test/{source}/{name}",
            storage_key=key,
            width=width,
            height=height,
            format=fmt,
            bytes=len(data),
            status=status,
            drop_reason="quality:blur" if status == ImageStatus.dropped else None,
        )
        self.session.add(row)
        self.session.flush()
        self.images[name] = row
        self.originals[name] = data
        return row

    def person(
        self,
        name: str,
        image: str,
        index: int = 0,
        *,
        shot_type: str = "upper_body",
        with_parsing: bool = True,
        caption: str | None = None,
    ) -> Person:
        img = self.images[image]
        parsing_key = None
        if with_parsing:
            m = parsing_map(img.width, img.height, seed=len(self.persons))
            _sha, parsing_key = self.store.put_content(png(m), prefix="parsing", ext="png")
            self.parsing[name] = m
        row = Person(
            image_id=img.id,
            index=index,
            box=[1.0, 2.0, img.width - 3.0, img.height - 4.0],
            score=0.9,
            keypoints=[[10.0 + i, 20.0 + i, 0.5] for i in range(33)],
            shot_type=shot_type,
            parsing_key=parsing_key,
            parsing_model="offline-parser@1" if with_parsing else None,
            caption=caption or f"a photo of {name}",
        )
        self.session.add(row)
        self.session.flush()
        self.persons[name] = row
        return row

    def label(
        self,
        person: str,
        group: int,
        key: str,
        value: str,
        *,
        confidence: float | None = 0.95,
        origin: AttributeOrigin = AttributeOrigin.model,
        state: AttributeState = AttributeState.auto_accepted,
        model_version: str = "vlm@1",
        annotator: str = "",
    ) -> Attribute:
        row = Attribute(
            person_id=self.persons[person].id,
            group=group,
            key=key,
            value=value,
            confidence=confidence,
            origin=origin,
            model_version=model_version if origin == AttributeOrigin.model else "",
            taxonomy_version=TAXONOMY,
            state=state,
            annotator=annotator,
        )
        self.session.add(row)
        self.session.flush()
        return row

    def human(self, person: str, group: int, key: str, value: str, annotator: str) -> Attribute:
        return self.label(
            person,
            group,
            key,
            value,
            confidence=None,
            origin=AttributeOrigin.human,
            state=AttributeState.human_verified,
            annotator=annotator,
        )


def make_world(tmp_path: Path, store: ObjectStore | None = None) -> World:
    """The standard pool: 5 exportable samples under all-accepted, plus a dropped image.

    * ``A`` astronaut, person ``A0``: model labels (one n/a, a belt that is absent, a rejected one,
      a low-confidence one under review) and human answers (gender, style by two annotators);
    * ``B`` two persons: ``B0`` with model labels of mixed confidence, ``B1`` with nothing and no parsing;
    * ``C`` a PNG with no person row (a whole-image sample);
    * ``D`` studio source, person ``D0``: human-verified labels only;
    * ``E`` dropped by quality (never exported).
    """
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate.upgrade(url)
    session = session_factory(url)()
    w = World(url, session, store or LocalStore(tmp_path / "objects"))
    w.image("A", astronaut())
    w.person("A0", "A", shot_type="upper_body", caption="an astronaut in a white spacesuit")
    w.label("A0", 0, "country", "Caucasian", confidence=0.93)
    w.label("A0", 0, "age", "adult", confidence=0.91)
    w.label("A0", 0, "gender", "male", confidence=0.4, state=AttributeState.needs_review)
    w.human("A0", 0, "gender", "female", "ann1")
    w.label("A0", 3, "hair_color", "brown", confidence=0.88)
    w.label("A0", 3, "hair_length", "n/a", confidence=0.9)
    w.label("A0", 6, "type", "spacesuit", confidence=0.97)
    w.label("A0", 6, "color", "white", confidence=0.96)
    w.label("A0", 8, "type", "jeans", confidence=0.7, state=AttributeState.rejected)
    w.label("A0", 12, "present", "no", confidence=0.99)
    w.human("A0", 14, "overall_style", "uniform", "ann1")
    w.human("A0", 14, "overall_style", "uniform", "ann2")
    w.human("A0", 14, "overall_style", "casual", "ann3")
    w.image("B", jpeg(1, (160, 120)))
    w.person("B0", "B", 0, shot_type="full_body")
    w.label("B0", 0, "gender", "male", confidence=0.6)
    w.label("B0", 6, "type", "t-shirt", confidence=0.95)
    w.person("B1", "B", 1, shot_type="portrait", with_parsing=False)
    w.image("C", jpeg(2, (120, 80), fmt="PNG"))
    w.image("D", jpeg(3, (80, 120)), source="studio")
    w.person("D0", "D", shot_type="full_body")
    w.human("D0", 0, "gender", "female", "ann2")
    w.human("D0", 8, "type", "skirt", "ann2")
    w.image("E", jpeg(4), status=ImageStatus.dropped)
    w.person("E0", "E")
    w.label("E0", 0, "gender", "male")
    session.commit()
    return w


@pytest.fixture(name="world")
def world_fixture(tmp_path: Path) -> World:
    w = make_world(tmp_path)
    yield w
    w.session.close()


def export(world: World, **kwargs: Any) -> Release:
    """``export_release`` with the calibration figures given (the tests do not depend on the engine's)."""
    kwargs.setdefault("expected_error_rate", 0.05)
    kwargs.setdefault("routing", {"gate": 0.85})
    return export_release(world.session, world.store, **kwargs)


def many(world: World, n: int, *, seed: int = 100) -> list[str]:
    """Add ``n`` small single-person images (``S0``..) with one label each; returns the person names."""
    names = []
    for i in range(n):
        world.image(f"S{i}", jpeg(seed + i, (48, 32)))
        name = f"S{i}p"
        world.person(name, f"S{i}", shot_type="headshot", with_parsing=i % 2 == 0)
        world.label(name, 0, "gender", "female" if i % 2 else "male", confidence=0.9)
        names.append(name)
    world.session.commit()
    return names
