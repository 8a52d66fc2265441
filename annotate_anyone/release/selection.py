"""What an export selects: a label preset and a sample filter, both plain data (stored in the manifest)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from annotate_anyone.catalog.models import AttributeState
from annotate_anyone.errors import InvalidInput

_CONFIDENCE = re.compile(r"^confidence\s*>=\s*([0-9]*\.?[0-9]+)$")


@dataclass(frozen=True)
class Preset:
    """Which labels count, and which samples qualify.

    * ``all-accepted``: auto-accepted and human-verified labels; persons without labels are exported
      too (20 null groups); images without person rows are selected but left out of the release
      (``export:no_person`` in the manifest's ``counts.left_out``: CosmicMan's loader needs a
      shot type and a parsing map).
    * ``human-verified-only``: human-verified labels only; a sample needs at least one.
    * ``confidence>=X``: human-verified labels, plus model labels (not rejected) with confidence >= X;
      a sample needs at least one.
    """

    name: str
    states: frozenset[str]
    min_confidence: float | None = None
    require_labels: bool = False
    whole_images: bool = False

    def accepts(self, *, state: str, origin: str, confidence: float | None) -> bool:
        """Whether one attribute row counts as a label under this preset."""
        if state not in self.states:
            return False
        if self.min_confidence is None or state == "human_verified" or origin == "human":
            return True
        return confidence is not None and confidence >= self.min_confidence

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "states": sorted(self.states)}


def parse_preset(text: str) -> Preset:
    """``all-accepted`` | ``human-verified-only`` | ``confidence>=X`` (0 <= X <= 1)."""
    name = text.strip().lower().replace(" ", "")
    if name == "all-accepted":
        states = frozenset({AttributeState.auto_accepted.value, AttributeState.human_verified.value})
        return Preset(name, states, whole_images=True)
    if name == "human-verified-only":
        return Preset(name, frozenset({AttributeState.human_verified.value}), require_labels=True)
    if m := _CONFIDENCE.match(name):
        threshold = float(m.group(1))
        if not 0.0 <= threshold <= 1.0:
            raise InvalidInput(f"confidence threshold {threshold} is outside 0..1")
        states = frozenset(s.value for s in AttributeState if s != AttributeState.rejected)
        return Preset(f"confidence>={threshold:g}", states, min_confidence=threshold, require_labels=True)
    raise InvalidInput(f"unknown preset {text!r}: use all-accepted, human-verified-only or confidence>=X")


@dataclass(frozen=True)
class SampleFilter:
    """Restrict an export to some sources (names or ids), shot types and an image ``created_at`` range."""

    sources: tuple[str | int, ...] = ()
    shot_types: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, value: SampleFilter | dict[str, Any] | None) -> SampleFilter:
        """From a dict as given to the job/API (``since``/``until`` as ISO strings or datetimes)."""
        if value is None:
            return cls()
        if isinstance(value, SampleFilter):
            return value
        known = {"sources", "shot_types", "since", "until"}
        unknown = set(value) - known
        if unknown:
            raise InvalidInput(f"unknown filter keys: {', '.join(sorted(unknown))}")
        return cls(
            sources=tuple(value.get("sources") or ()),
            shot_types=tuple(value.get("shot_types") or ()),
            since=_datetime(value.get("since")),
            until=_datetime(value.get("until")),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "shot_types": list(self.shot_types),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


def _datetime(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"not an ISO date/time: {value!r}") from exc
