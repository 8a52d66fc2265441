"""The labeler contract: a person in context in, one :class:`Prediction` per answered category out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from annotate_anyone.annotation.parsing.base import PersonView
from annotate_anyone.annotation.taxonomy import Category, category_id

EPS = 1e-4


def normalize(dist: Mapping[str, float], options: Sequence[str], eps: float = EPS) -> dict[str, float]:
    """A proper distribution over exactly ``options``: missing ones get 0, a small floor keeps logs finite."""
    p = np.array([max(0.0, float(dist.get(o, 0.0))) for o in options]) + eps
    p /= p.sum()
    return {o: float(v) for o, v in zip(options, p, strict=True)}


@dataclass(slots=True)
class Prediction:
    """One model answer: value (the argmax), its distribution over the category's options, model version."""

    group: int
    key: str
    value: str
    distribution: dict[str, float]
    model_version: str

    @property
    def category(self) -> str:
        return category_id(self.group, self.key)

    @property
    def confidence(self) -> float:
        return float(self.distribution.get(self.value, 0.0))

    @classmethod
    def from_distribution(cls, category: Category, dist: Mapping[str, float], model_version: str) -> Prediction:
        d = normalize(dist, category.options)
        value = max(d, key=d.__getitem__)
        return cls(category.group, category.key, value, d, model_version)


@dataclass(slots=True)
class PersonContext:
    """What labelers may look at: the image, the person, the parsing map and precomputed features."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    person: PersonView
    parsing: np.ndarray | None = None
    parsing_labels: frozenset[int] = frozenset()  # labels the parser can output at all
    shot_type: str | None = None
    person_id: int | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict)


class Labeler(ABC):
    """Answers some categories for a person; categories it cannot judge are simply left out."""

    name: str
    model_version: str

    @abstractmethod
    def label(self, ctx: PersonContext, categories: Sequence[Category]) -> list[Prediction]: ...

    def label_many(self, ctxs: Sequence[PersonContext], categories: Sequence[Category]) -> list[list[Prediction]]:
        return [self.label(c, categories) for c in ctxs]
