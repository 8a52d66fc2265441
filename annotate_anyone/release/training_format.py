"""CosmicMan's training columns: ``aa_text`` (20 group dicts) and ``aa_ids`` (20 parsing-id lists).

The groups, their attribute keys and their parsing ids come from the taxonomy
(``annotate_anyone/annotation/taxonomy.yaml``). Rules (brief, section 3):

* a group is ``null`` in both lists when it has no usable label: every value is missing or the
  taxonomy's "not applicable" value, or its ``present`` attribute says ``no``;
* a group dict maps attribute keys to values; ``present`` itself is left out (it says nothing the
  phrase can use); groups that end in a type keep their ``type`` key;
* ``aa_ids`` lists the ATR ids whose union is the group's region; ``foreground`` groups (person,
  body shape, style) list every id but background;
* a sample with no labels at all has ``aa_text = aa_ids = null``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from annotate_anyone.errors import ConfigError

TAXONOMY_FILE = Path(__file__).resolve().parents[1] / "annotation" / "taxonomy.yaml"
NUM_GROUPS = 20
ATR_LABELS = 18
FOREGROUND = list(range(1, ATR_LABELS))


@dataclass(frozen=True)
class GroupSpec:
    index: int
    name: str
    keys: tuple[str, ...]
    parsing_ids: tuple[int, ...]


@dataclass(frozen=True)
class TrainingFormat:
    """The taxonomy, reduced to what the training columns need."""

    version: str
    na_value: str
    groups: tuple[GroupSpec, ...]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TrainingFormat:
        groups = []
        for g in sorted(data.get("groups", []), key=lambda g: int(g["index"])):
            parsing = g.get("parsing")
            ids = FOREGROUND if parsing == "foreground" else [int(i) for i in (parsing or [])]
            keys = tuple(str(a["key"]) for a in g.get("attributes", []))
            groups.append(GroupSpec(int(g["index"]), str(g.get("name", g["index"])), keys, tuple(ids)))
        if [g.index for g in groups] != list(range(NUM_GROUPS)):
            raise ConfigError(f"the taxonomy must define groups 0..{NUM_GROUPS - 1} in order")
        return cls(str(data.get("version", "unknown")), str(data.get("na_value", "n/a")), tuple(groups))

    def columns(self, labels: Mapping[tuple[int, str], str | None]) -> tuple[list | None, list | None]:
        """``(aa_text, aa_ids)`` for one sample's labels, keyed by ``(group, attribute key)``."""
        if not labels:
            return None, None
        text: list[dict[str, str] | None] = [None] * NUM_GROUPS
        ids: list[list[int] | None] = [None] * NUM_GROUPS
        for spec in self.groups:
            values = {k: labels.get((spec.index, k)) for k in spec.keys}
            if values.get("present") == "no":
                continue
            entry = {
                k: v for k, v in values.items() if k != "present" and v is not None and v != self.na_value and v != ""
            }
            if entry:
                text[spec.index] = entry
                ids[spec.index] = list(spec.parsing_ids)
        return text, ids


@lru_cache
def training_format(path: Path = TAXONOMY_FILE) -> TrainingFormat:
    """The format built from the taxonomy file (read once per process)."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"taxonomy file not found: {path}") from exc
    return TrainingFormat.from_mapping(data)
