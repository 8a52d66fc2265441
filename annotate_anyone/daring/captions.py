"""The CosmicMan caption grammar: one phrase per attribute group, composed into a training caption.

Pure Python (no torch). Stable API, also used by the annotation engine to write dense captions:

* ``SHOT_PHRASES``: shot type (``person_type``) -> leading phrase, e.g. ``"a full-body shot"``.
* ``GROUP_NOUNS``: group index -> the noun its phrase ends with (``None``: no noun,
  ``TYPE_NOUN``: the group's ``"type"`` value, ``GENDER_NOUN``: the ``"gender"`` value).
* ``group_phrase(group_index, attrs, rng=None)``: one group's dict (an ``aa_text`` entry) as a phrase;
  with ``rng`` the adjectives are shuffled.
* ``compose_caption(...)``: the per-sample training caption (brief, section 4).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from annotate_anyone.errors import InvalidInput

NUM_GROUPS = 20
SHOT = "shot"
TYPE_NOUN = "<type>"
GENDER_NOUN = "<gender>"

SHOT_PHRASES: dict[str, str] = {
    "full_body": "a full-body shot",
    "nearly_full_body": "a nearly full-body shot",
    "upper_body": "an upper-body shot",
    "portrait": "a portrait shot",
    "headshot": "a headshot",
}

GROUP_NOUNS: dict[int, str | None] = {
    0: GENDER_NOUN,
    1: None,
    2: None,
    3: "hair",
    **{i: TYPE_NOUN for i in range(4, 12)},
    12: "belt",
    13: "scarf",
    14: None,
    15: "headband",
    16: "headscarf",
    17: "veil",
    18: "socks",
    19: "ties",
}

ORDERED_GROUPS = (0, 1, 2)  # always first, in this order
SHUFFLED_GROUPS = tuple(range(3, NUM_GROUPS))  # shuffled per sample
OPTIONAL_FROM = 14  # groups from here on are kept only half the time


def _words(value: Any) -> list[str]:
    """One attribute value as a list of phrase pieces (lists are flattened, blanks skipped)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [w for v in value for w in _words(v)]
    text = str(value).strip()
    return [text] if text else []


def group_phrase(group_index: int, attrs: Mapping[str, Any] | None, rng: random.Random | None = None) -> str:
    """Render one attribute group as a phrase; ``""`` when the group has nothing to say.

    Adjectives (every value except the noun's) keep the dict's order, or are shuffled with ``rng``.
    Group 0 starts with ``"a "`` and ends with the gender; group 3 ends with ``"hair"``; groups 4-11
    with their ``"type"`` value; 12/13/15-19 with their fixed noun; 1, 2 and 14 have no noun.
    """
    if group_index not in GROUP_NOUNS:
        raise InvalidInput(f"attribute group {group_index} is outside 0..{NUM_GROUPS - 1}")
    if not attrs:
        return ""
    noun_rule = GROUP_NOUNS[group_index]
    noun_key = {TYPE_NOUN: "type", GENDER_NOUN: "gender"}.get(noun_rule or "")
    adjectives = [w for key, value in attrs.items() if key != noun_key for w in _words(value)]
    if noun_key is not None:
        noun = _words(attrs.get(noun_key))
    else:
        noun = [noun_rule] if noun_rule else []
    if rng is not None:
        rng.shuffle(adjectives)
    words = adjectives + noun
    if not words:
        return ""
    if group_index == 0:
        words = ["a", *words]
    return " ".join(words)


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
) -> ComposedCaption:
    """Compose one training caption (CosmicMan rules).

    Shot phrase first; groups 0-2 in order; groups 3-19 shuffled; adjectives shuffled; a group from
    ``optional_from`` on is kept with probability ``optional_keep``; every group is then dropped with
    probability ``group_dropout``; phrases joined with ``", "``; trailing groups removed until
    ``tokenizer_len_fn(text) <= max_tokens`` (the function counts special tokens too).
    ``dropped`` lists present groups whose text was removed (their masks must be empty).
    """
    if person_type is not None and person_type not in SHOT_PHRASES:
        raise InvalidInput(f"unknown shot type {person_type!r}; expected one of {sorted(SHOT_PHRASES)}")
    groups = list(aa_text or [])
    if len(groups) not in (0, NUM_GROUPS):
        raise InvalidInput(f"aa_text has {len(groups)} entries, expected {NUM_GROUPS}")
    order = list(SHUFFLED_GROUPS)
    if shuffle_groups:
        rng.shuffle(order)
    parts: list[tuple[int | str, str]] = []
    if person_type is not None:
        parts.append((SHOT, SHOT_PHRASES[person_type]))
    dropped: set[int] = set()
    for index in (*ORDERED_GROUPS, *order) if groups else ():
        attrs = groups[index]
        if not attrs or not group_phrase(index, attrs):
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
