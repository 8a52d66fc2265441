"""The attribute taxonomy, loaded from the packaged ``taxonomy.yaml`` and validated.

A *category* is one ``(group, key)`` pair (the paper's question categories), named ``"<group>.<key>"``.
Every attribute's options end with the taxonomy's ``na_value`` ("not visible / not applicable")
unless the attribute sets ``na: false`` (the yes/no presence questions).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
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
