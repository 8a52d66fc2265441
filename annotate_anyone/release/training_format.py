"""CosmicMan's training columns: ``aa_text`` (20 group dicts) and ``aa_ids`` (20 parsing-id lists).

Both come from the taxonomy (``annotate_anyone/annotation/taxonomy.yaml``) through its one rule,
:meth:`~annotate_anyone.annotation.taxonomy.Taxonomy.aa_entry`, which the dense captions and the
trainer use too (brief, sections 2-3):

* keys are spelled as CosmicMan's loader reads them (``"hair color"``, ``"overall-style"``, ...);
* a group is ``null`` in both lists when it is absent: no usable label, ``present`` is ``no``, or
  its noun (``type``; ``gender`` for group 0) is missing;
* ``aa_ids`` lists the ATR ids whose union is the group's region; ``foreground`` groups (person,
  body shape, style) list every id but background;
* both are always lists of 20 (a sample without labels has 20 nulls): CosmicMan's loader fails on
  a null ``aa_text``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from annotate_anyone.annotation.taxonomy import NUM_GROUPS, Taxonomy, load_taxonomy
from annotate_anyone.errors import ConfigError

TAXONOMY_FILE = Path(__file__).resolve().parents[1] / "annotation" / "taxonomy.yaml"
ATR_LABELS = 18
FOREGROUND = list(range(1, ATR_LABELS))
__all__ = ["FOREGROUND", "NUM_GROUPS", "TrainingFormat", "training_format"]


@dataclass(frozen=True)
class TrainingFormat:
    """The taxonomy, as the export uses it for the training columns."""

    taxonomy: Taxonomy

    @property
    def version(self) -> str:
        return self.taxonomy.version

    def columns(self, labels: Mapping[tuple[int, str], str | None]) -> tuple[list, list]:
        """``(aa_text, aa_ids)`` for one sample's labels, keyed by ``(group, attribute identifier)``."""
        text = self.taxonomy.aa_text(labels)
        return text, self.taxonomy.aa_ids(text)


@lru_cache
def training_format(path: Path = TAXONOMY_FILE) -> TrainingFormat:
    """The format built from the taxonomy file (read once per process)."""
    if not Path(path).exists():
        raise ConfigError(f"taxonomy file not found: {path}")
    return TrainingFormat(load_taxonomy(path))
