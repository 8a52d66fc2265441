"""The CosmicMan caption grammar composed into a training caption.

Pure Python (no torch). The phrases (shot phrases and one phrase per attribute group) are the annotation
engine's, which writes dense captions with them (:mod:`annotate_anyone.annotation.phrases`); this module
composes them per sample:

* ``compose_caption(...)``: the per-sample training caption (brief, section 4): groups ordered, shuffled,
  dropped, adjectives shuffled, cut to the tokenizer's length.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from annotate_anyone.annotation.phrases import SHOT_PHRASES, group_phrase
from annotate_anyone.annotation.taxonomy import NUM_GROUPS
from annotate_anyone.errors import InvalidInput

SHOT = "shot"

ORDERED_GROUPS = (0, 1, 2)  # always first, in this order
SHUFFLED_GROUPS = tuple(range(3, NUM_GROUPS))  # shuffled per sample
OPTIONAL_FROM = 14  # groups from here on are kept only half the time


@dataclass(frozen=True, slots=True)
class ComposedCaption:
    """A composed caption and, in caption order, the ``(group index or "shot", phrase)`` parts it kept."""

    text: str
    parts: tuple[tuple[int | str, str], ...]
    dropped: frozenset[int] = field(default_factory=frozenset)

    @property
    def kept_groups(self) -> tuple[int, ...]:
        return tuple(k for k, _ in self.parts if isinstance(k, int))


def compose_caption(
    person_type: str | None,
    aa_text: Sequence[Mapping[str, Any] | None] | None,
    rng: random.Random,
    tokenizer_len_fn: Callable[[str], int],
    max_tokens: int = 77,
    group_dropout: float = 0.1,
    optional_keep: float = 0.5,
    optional_from: int = OPTIONAL_FROM,
    shuffle_groups: bool = True,
    shuffle_adjectives: bool = True,
    shots: Mapping[str, str] = SHOT_PHRASES,
) -> ComposedCaption:
    """Compose one training caption (CosmicMan rules).

    Shot phrase first; groups 0-2 in order; groups 3-19 shuffled; adjectives shuffled; a group from
    ``optional_from`` on is kept with probability ``optional_keep``; every group is then dropped with
    probability ``group_dropout``; phrases joined with ``", "``; trailing groups removed until
    ``tokenizer_len_fn(text) <= max_tokens`` (the function counts special tokens too).
    ``dropped`` lists present groups whose text was removed (their masks must be empty). ``shots``
    maps shot types to their phrases (CosmicMan's by default).
    """
    if person_type is not None and person_type not in shots:
        raise InvalidInput(f"unknown shot type {person_type!r}; expected one of {sorted(shots)}")
    groups = list(aa_text or [])
    if len(groups) not in (0, NUM_GROUPS):
        raise InvalidInput(f"aa_text has {len(groups)} entries, expected {NUM_GROUPS}")
    order = list(SHUFFLED_GROUPS)
    if shuffle_groups:
        rng.shuffle(order)
    parts: list[tuple[int | str, str]] = []
    if person_type is not None:
        parts.append((SHOT, shots[person_type]))
    dropped: set[int] = set()
    for index in (*ORDERED_GROUPS, *order) if groups else ():
        attrs = groups[index]
        if attrs is None or not group_phrase(index, attrs):
            continue
        if index >= optional_from and rng.random() >= optional_keep:
            dropped.add(index)
            continue
        if rng.random() < group_dropout:
            dropped.add(index)
            continue
        parts.append((index, group_phrase(index, attrs, rng if shuffle_adjectives else None)))
    text = ", ".join(p for _, p in parts)
    while len(parts) > 1 and tokenizer_len_fn(text) > max_tokens:
        key, _ = parts.pop()
        if isinstance(key, int):
            dropped.add(key)
        text = ", ".join(p for _, p in parts)
    return ComposedCaption(text=text, parts=tuple(parts), dropped=frozenset(dropped))
