"""The CosmicMan caption grammar: one phrase per attribute group, composed into a training caption.

Pure Python (no torch). Stable API, also used by the annotation engine to write dense captions:

* ``SHOT_PHRASES``: shot type (``person_type``) -> leading phrase, CosmicMan's own wording
  (``"a upper body shot"``, ``"a close up portrait shot"``); ``SHOT_PHRASE_STYLES`` also holds
  ours (``"annotate-anyone"``: ``"an upper-body shot"``, ...), a trainer option.
* ``group_phrase(group_index, attrs, rng=None)``: one group's ``aa_text`` entry as a phrase; which
  keys count and when a group says nothing is the taxonomy's one rule
  (:meth:`~annotate_anyone.annotation.taxonomy.Taxonomy.aa_entry`); with ``rng`` the adjectives
  are shuffled.
* ``compose_caption(...)``: the per-sample training caption (brief, section 4).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from annotate_anyone.annotation.taxonomy import NUM_GROUPS, load_taxonomy
from annotate_anyone.errors import InvalidInput

SHOT = "shot"

SHOT_PHRASE_STYLES: dict[str, dict[str, str]] = {
    "cosmicman": {  # as CosmicMan's loader writes them
        "full_body": "a full-body shot",
        "nearly_full_body": "a nearly full-body shot",
        "upper_body": "a upper body shot",
        "portrait": "a close up portrait shot",
        "headshot": "a headshot",
    },
    "annotate-anyone": {
        "full_body": "a full-body shot",
        "nearly_full_body": "a nearly full-body shot",
        "upper_body": "an upper-body shot",
        "portrait": "a portrait shot",
        "headshot": "a headshot",
    },
}
SHOT_PHRASES: dict[str, str] = SHOT_PHRASE_STYLES["cosmicman"]

ORDERED_GROUPS = (0, 1, 2)  # always first, in this order
SHUFFLED_GROUPS = tuple(range(3, NUM_GROUPS))  # shuffled per sample
OPTIONAL_FROM = 14  # groups from here on are kept only half the time


def shot_phrases(style: str) -> dict[str, str]:
    """The shot phrases of ``style`` (``cosmicman`` or ``annotate-anyone``)."""
    if style not in SHOT_PHRASE_STYLES:
        raise InvalidInput(f"unknown shot phrase style {style!r}; expected one of {sorted(SHOT_PHRASE_STYLES)}")
    return SHOT_PHRASE_STYLES[style]


def group_phrase(group_index: int, attrs: Mapping[str, Any] | None, rng: random.Random | None = None) -> str:
    """Render one attribute group as a phrase; ``""`` when the group is absent under the taxonomy's rule.

    Adjectives (the group's keys other than its noun key, in taxonomy order, or shuffled with
    ``rng``) come first; then the noun: the ``gender`` value for group 0 (which starts with
    ``"a "``), the ``type`` value for groups 4-11, a fixed word ("hair", "belt", "scarf", ...) for
    3, 12, 13 and 15-19, none for 1, 2 and 14. Keys may be in either spelling.
    """
    if not 0 <= group_index < NUM_GROUPS:
        raise InvalidInput(f"attribute group {group_index} is outside 0..{NUM_GROUPS - 1}")
    taxonomy = load_taxonomy()
    entry = taxonomy.aa_entry(group_index, attrs)
    if entry is None:
        return ""
    spec = taxonomy.group(group_index)
    noun_key = taxonomy.release_key(spec.noun_key) if spec.noun_key else None
    adjectives = [value for key, value in entry.items() if key != noun_key]
    if rng is not None:
        rng.shuffle(adjectives)
    noun = entry[noun_key] if noun_key else spec.fixed_noun
    words = adjectives + ([noun] if noun else [])
    if not words:
        return ""
    return " ".join(["a", *words] if group_index == 0 else words)


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
