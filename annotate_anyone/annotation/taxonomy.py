"""The attribute taxonomy, loaded from the packaged ``taxonomy.yaml`` and validated.

A *category* is one ``(group, key)`` pair (the paper's question categories), named ``"<group>.<key>"``.
Every attribute's options end with the taxonomy's ``na_value`` ("not visible / not applicable")
unless the attribute sets ``na: false`` (the yes/no presence questions).

Releases spell attribute keys as CosmicMan's loader reads them (``release_keys``: ``hair_color`` ->
``"hair color"``); :meth:`Taxonomy.aa_entry` is the one rule for what a group's ``aa_text`` entry holds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from annotate_anyone.errors import InvalidInput

TAXONOMY_FILE = Path(__file__).with_name("taxonomy.yaml")
NUM_GROUPS = 20
ATR_LABELS: tuple[str, ...] = (
    "background",
    "hat",
    "hair",
    "sunglasses",
    "upper-clothes",
    "skirt",
    "pants",
    "dress",
    "belt",
    "left-shoe",
    "right-shoe",
    "face",
    "left-leg",
    "right-leg",
    "left-arm",
    "right-arm",
    "bag",
    "scarf",
)
ATR = {name: i for i, name in enumerate(ATR_LABELS)}
PRESENT = "present"  # the yes/no presence question: decides whether a group is there, never in aa_text


def category_id(group: int, key: str) -> str:
    """The stable name of a category, e.g. ``"6.color"``."""
    return f"{group}.{key}"


def split_category(category: str) -> tuple[int, str]:
    group, _, key = category.partition(".")
    if not key or not group.isdigit():
        raise InvalidInput(f"not a category id: {category!r} (expected '<group>.<key>')")
    return int(group), key


class AttributeSpec(BaseModel):
    """One question: its key, wording and allowed values (without the n/a value)."""

    model_config = ConfigDict(frozen=True)

    key: str
    question: str
    values: list[str] = Field(min_length=1)
    na: bool = True

    @model_validator(mode="after")
    def _unique(self) -> AttributeSpec:
        if len({v.lower() for v in self.values}) != len(self.values):
            raise ValueError(f"attribute {self.key!r} repeats a value")
        return self


class GroupSpec(BaseModel):
    """One of the 20 attribute groups: its attributes and the ATR ids whose union is its region."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0, lt=NUM_GROUPS)
    name: str
    noun: str | None = None
    parsing: list[int] | Literal["foreground"]
    attributes: list[AttributeSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> GroupSpec:
        keys = [a.key for a in self.attributes]
        if len(set(keys)) != len(keys):
            raise ValueError(f"group {self.index} repeats an attribute key")
        if self.parsing != "foreground" and any(not 0 <= i < len(ATR_LABELS) for i in self.parsing):
            raise ValueError(f"group {self.index} names a parsing id outside 0..{len(ATR_LABELS) - 1}")
        return self

    @property
    def parsing_ids(self) -> list[int]:
        """ATR ids of the group's region (``foreground`` = every id but background)."""
        return list(range(1, len(ATR_LABELS))) if self.parsing == "foreground" else list(self.parsing)

    @property
    def noun_key(self) -> str | None:
        """The attribute whose value is the phrase's noun (``type``, ``gender``), if the noun is one."""
        return self.noun if self.noun and any(a.key == self.noun for a in self.attributes) else None

    @property
    def fixed_noun(self) -> str | None:
        """The literal noun the phrase ends with (``hair``, ``belt``, ...), if any."""
        return self.noun if self.noun and self.noun_key is None else None

    @property
    def presence_key(self) -> str | None:
        """The attribute that says whether the group's item is there (``type`` or ``present``)."""
        for key in ("present", "type"):
            if any(a.key == key for a in self.attributes):
                return key
        return None


class Category(BaseModel):
    """A ``(group, key)`` pair with its question and options (n/a included where allowed)."""

    model_config = ConfigDict(frozen=True)

    group: int
    key: str
    question: str
    options: tuple[str, ...]

    @property
    def id(self) -> str:
        return category_id(self.group, self.key)


class Taxonomy(BaseModel):
    """The whole schema; ``version`` is recorded on every stored label."""

    model_config = ConfigDict(frozen=True)

    version: str
    na_value: str = "n/a"
    atr_labels: list[str]
    shot_types: list[str]
    values: dict[str, list[str]] = Field(default_factory=dict)  # shared lists (documentation only)
    release_keys: dict[str, str] = Field(default_factory=dict)  # identifier -> spelling in aa_text
    groups: list[GroupSpec]

    @model_validator(mode="after")
    def _check(self) -> Taxonomy:
        if [g.index for g in self.groups] != list(range(NUM_GROUPS)):
            raise ValueError(f"taxonomy must list groups 0..{NUM_GROUPS - 1} in order")
        if tuple(self.atr_labels) != ATR_LABELS:
            raise ValueError("taxonomy atr_labels must be the 18 ATR labels in order")
        for g in self.groups:
            for a in g.attributes:
                if self.na_value in a.values:
                    raise ValueError(f"{category_id(g.index, a.key)} lists the n/a value explicitly")
        keys = {a.key for g in self.groups for a in g.attributes}
        unknown = sorted(set(self.release_keys) - keys)
        if unknown or PRESENT in self.release_keys:
            raise ValueError(f"release_keys names keys no group has (or 'present'): {unknown or [PRESENT]}")
        spelled = [self.release_key(k) for k in sorted(keys)]
        if len(set(spelled)) != len(spelled):
            raise ValueError("release_keys spells two attribute keys the same")
        return self

    def group(self, index: int) -> GroupSpec:
        if not 0 <= index < len(self.groups):
            raise InvalidInput(f"attribute group {index} is outside 0..{NUM_GROUPS - 1}")
        return self.groups[index]

    def attribute(self, group: int, key: str) -> AttributeSpec:
        for a in self.group(group).attributes:
            if a.key == key:
                return a
        raise InvalidInput(f"unknown attribute {category_id(group, key)!r} in taxonomy {self.version}")

    def options(self, group: int, key: str) -> tuple[str, ...]:
        """Allowed values of one attribute, n/a last where allowed."""
        a = self.attribute(group, key)
        return (*a.values, self.na_value) if a.na else tuple(a.values)

    def category(self, group: int, key: str) -> Category:
        a = self.attribute(group, key)
        return Category(group=group, key=key, question=a.question, options=self.options(group, key))

    def categories(self) -> list[Category]:
        """Every question category, in group order."""
        return [self.category(g.index, a.key) for g in self.groups for a in g.attributes]

    def attributes(self) -> list[AttributeSpec]:
        return [a for g in self.groups for a in g.attributes]

    def is_absent(self, group: int, key: str, value: str | None) -> bool:
        """Whether ``value`` says the attribute (or, for presence keys, the item) is not there."""
        return value is None or value == self.na_value or (key == "present" and value == "no")

    # -- the release columns (aa_text, aa_ids) ---------------------------------------------------
    def release_key(self, key: str) -> str:
        """How attribute ``key`` is spelled in ``aa_text`` (``hair_color`` -> ``"hair color"``)."""
        return self.release_keys.get(key, key)

    @cached_property
    def _text_keys(self) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(self.release_key(a.key) for a in g.attributes if a.key != PRESENT) for g in self.groups)

    @cached_property
    def _spellings(self) -> dict[str, str]:
        """Either spelling of a key -> its release spelling."""
        keys = {a.key for g in self.groups for a in g.attributes if a.key != PRESENT}
        return {**{k: self.release_key(k) for k in keys}, **{self.release_key(k): self.release_key(k) for k in keys}}

    def text_keys(self, group: int) -> tuple[str, ...]:
        """The keys group ``group`` may hold in ``aa_text`` (release spellings, taxonomy order)."""
        return self._text_keys[self.group(group).index]

    def aa_entry(self, group: int, values: Mapping[str, object] | None) -> dict[str, str] | None:
        """The one rule for a group's ``aa_text`` entry; used by the export, the dense captions and the trainer.

        ``values`` maps keys in either spelling (``hair_color`` or ``"hair color"``, plus ``present``)
        to values; ``None`` means nothing is known. Keys the group does not have, and values that are
        not non-empty strings or are the n/a value, are left out; keys come back in release spelling.
        The group is ``None`` (absent) when

        * ``present`` is ``"no"``;
        * its phrase ends in an attribute's value (``type``; ``gender`` for group 0) and that value
          is missing: CosmicMan's loader renders such a group as nothing, so it carries nothing;
        * nothing is left to say. A group with a literal noun and a presence question ("belt",
          "scarf", "socks", ...) is ``{}`` (its noun alone) when ``present`` is ``"yes"``, or when
          given as ``{}`` (how a release writes exactly that).
        """
        if values is None:
            return None
        spec = self.group(group)
        allowed = self._text_keys[spec.index]
        kept: dict[str, str] = {}
        for key, value in values.items():
            name = self._spellings.get(key)
            if name in allowed and isinstance(value, str) and value.strip() and value.strip() != self.na_value:
                kept[name] = value.strip()
        present = values.get(PRESENT)
        if present == "no":
            return None
        if spec.noun_key is not None and self.release_key(spec.noun_key) not in kept:
            return None
        if not kept:
            bare_item = spec.fixed_noun is not None and spec.presence_key == PRESENT
            if not (bare_item and (present == "yes" or len(values) == 0)):
                return None
        return {k: kept[k] for k in allowed if k in kept}

    def aa_text(self, labels: Mapping[tuple[int, str], str | None]) -> list[dict[str, str] | None]:
        """The 20 ``aa_text`` entries for one sample's labels, keyed by ``(group, identifier)``."""
        out: list[dict[str, str] | None] = []
        for g in self.groups:
            values = {a.key: labels[(g.index, a.key)] for a in g.attributes if labels.get((g.index, a.key)) is not None}
            out.append(self.aa_entry(g.index, values or None))
        return out

    def release_aa_text(self, entries: Sequence[Mapping[str, object] | None] | None) -> list[dict[str, str] | None]:
        """An ``aa_text`` read from a release (either key spelling: old releases used identifiers) under the rule."""
        if entries is None:
            return [None] * NUM_GROUPS
        if len(entries) != NUM_GROUPS:
            raise InvalidInput(f"aa_text has {len(entries)} entries, expected {NUM_GROUPS}")
        return [None if e is None else self.aa_entry(i, e) for i, e in enumerate(entries)]

    def aa_ids(self, aa_text: Sequence[Mapping[str, str] | None]) -> list[list[int] | None]:
        """``aa_ids``: each present group's parsing ids (foreground groups: every id but background)."""
        return [None if e is None else self.groups[i].parsing_ids for i, e in enumerate(aa_text)]

    def extended(self, extra: dict[str, list[str]]) -> Taxonomy:
        """A copy with more allowed values (``{"6.color": ["teal"]}``); the version records the change."""
        data = self.model_dump()
        for cat, new_values in sorted(extra.items()):
            group, key = split_category(cat)
            self.attribute(group, key)
            for attr in data["groups"][group]["attributes"]:
                if attr["key"] == key:
                    attr["values"] += [v for v in new_values if v not in attr["values"]]
        digest = hashlib.sha256(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:8]
        data["version"] = f"{self.version}+{digest}"
        return Taxonomy.model_validate(data)


def parse_taxonomy(data: dict[str, Any]) -> Taxonomy:
    """Validate a taxonomy given as a mapping (raises :class:`InvalidInput`)."""
    try:
        return Taxonomy.model_validate(data)
    except ValueError as exc:
        raise InvalidInput(f"invalid taxonomy: {exc}") from exc


@lru_cache(maxsize=8)
def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """The packaged taxonomy, or one from ``path``."""
    text = Path(path or TAXONOMY_FILE).read_text(encoding="utf-8")
    return parse_taxonomy(yaml.safe_load(text))
