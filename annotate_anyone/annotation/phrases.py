"""The CosmicMan caption grammar's phrases: a leading phrase per shot type, one phrase per attribute group.

Pure Python. The annotation engine writes dense captions with them (:mod:`annotate_anyone.annotation.dense_captions`)
and the Daring trainer composes its training captions from them (:mod:`annotate_anyone.daring.training_captions`):

* ``SHOT_PHRASES``: shot type (``person_type``) -> leading phrase, CosmicMan's own wording
  (``"a upper body shot"``, ``"a close up portrait shot"``); ``SHOT_PHRASE_STYLES`` also holds
  ours (``"annotate-anyone"``: ``"an upper-body shot"``, ...), a trainer option.
* ``group_phrase(group_index, attrs, rng=None)``: one group's ``aa_text`` entry as a phrase; which
  keys count and when a group says nothing is the taxonomy's one rule
  (:meth:`~annotate_anyone.annotation.taxonomy.Taxonomy.aa_entry`); with ``rng`` the adjectives
  are shuffled.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from annotate_anyone.annotation.taxonomy import NUM_GROUPS, load_taxonomy
from annotate_anyone.errors import InvalidInput

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
