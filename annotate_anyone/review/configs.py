"""Labeling configs generated from the taxonomy: one project per (taxonomy version, task kind).

* ``attributes``: the image with the person box drawn (a pre-filled rectangle) and one ``Choices`` per
  attribute of the taxonomy. Options come from the task (dynamic choices), so a task shows only the
  attributes routed for that person; every other attribute's option list is empty and renders nothing.
* ``parsing``: ``BrushLabels`` with the ATR labels, pre-filled with our parsing map.
* ``box``: the pre-filled person box to confirm, adjust or reject.

Hotkeys never collide: Label Studio's own single-key shortcuts are left out of the pool, and each task's
options draw distinct keys from it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from annotate_anyone.annotation.taxonomy import Taxonomy

KINDS = ("attributes", "parsing", "box")
IMAGE = "image"
PERSON = "person"
PARSING = "parsing"
BOX_CHECK = "box_check"
NA_LABEL = "not visible / not applicable"
BOX_CHOICES = ("box ok", "box adjusted", "not a person")
PERSON_HOTKEY = "alt+p"
# Single keys Label Studio does not use itself (it takes u h o e m k w p r v b and the modified keys).
HOTKEY_POOL = tuple("1234567890") + tuple("acdfgijlnqstxyz")
ATR_COLORS = (
    "#000000", "#e6194b", "#f58231", "#ffe119", "#3cb44b", "#42d4f4", "#4363d8", "#911eb4", "#f032e6",
    "#a9a9a9", "#808000", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#000075",
)  # fmt: skip


@dataclass(frozen=True)
class ProjectSpec:
    """What a backend project is made from: its kind, title, labeling config and instructions."""

    kind: str
    taxonomy_version: str
    title: str
    label_config: str
    instructions: str

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(self.label_config.encode()).hexdigest()


def control_name(group: int, key: str) -> str:
    """The ``Choices`` name of an attribute (a safe tag name for category ``"<group>.<key>"``)."""
    return f"g{group}_{key}"


def question_field(group: int, key: str) -> str:
    return f"{control_name(group, key)}_q"


def options_field(group: int, key: str) -> str:
    return f"{control_name(group, key)}_opts"


def display_value(value: str, taxonomy: Taxonomy) -> str:
    """How an option is shown (the n/a value reads "not visible / not applicable")."""
    return NA_LABEL if value == taxonomy.na_value else value


def stored_value(shown: str, taxonomy: Taxonomy) -> str:
    """The taxonomy value behind an option as shown."""
    return taxonomy.na_value if shown == NA_LABEL else shown


def assign_hotkeys(option_lists: list[list[str]], pool: tuple[str, ...] = HOTKEY_POOL) -> list[list[str | None]]:
    """Distinct hotkeys across all options of one task, in order; options past the pool get none."""
    keys = iter(pool)
    return [[next(keys, None) for _ in options] for options in option_lists]


def attribute_config(taxonomy: Taxonomy) -> str:
    """The attribute-review config: image, person box, one dynamic ``Choices`` per taxonomy attribute."""
    blocks = [
        "<View>",
        f'  <Image name="{IMAGE}" value="$image" zoom="true" zoomControl="true"/>',
        f'  <RectangleLabels name="{PERSON}" toName="{IMAGE}" strokeWidth="3" opacity="0.1">',
        f'    <Label value="person" background="#ff0000" hotkey="{PERSON_HOTKEY}"/>',
        "  </RectangleLabels>",
    ]
    for group in taxonomy.groups:
        for attr in group.attributes:
            name = control_name(group.index, attr.key)
            blocks += [
                "  <View>",
                f'    <Header value="${question_field(group.index, attr.key)}" size="6"/>',
                f'    <Choices name="{name}" toName="{IMAGE}" value="${options_field(group.index, attr.key)}"'
                ' choice="single-radio" showInline="true"/>',
                "  </View>",
            ]
    blocks.append("</View>")
    return "\n".join(blocks)


def parsing_config(taxonomy: Taxonomy) -> str:
    """The parsing-correction config: ``BrushLabels`` with the ATR labels (background is what is left)."""
    labels = taxonomy.atr_labels[1:]
    keys = assign_hotkeys([labels])[0]
    lines = [
        "<View>",
        f'  <Image name="{IMAGE}" value="$image" zoom="true" zoomControl="true"/>',
        f'  <BrushLabels name="{PARSING}" toName="{IMAGE}">',
    ]
    for i, (label, key) in enumerate(zip(labels, keys, strict=True), start=1):
        hotkey = f" hotkey={quoteattr(key)}" if key else ""
        lines.append(f"    <Label value={quoteattr(label)} background={quoteattr(ATR_COLORS[i])}{hotkey}/>")
    lines += ["  </BrushLabels>", "</View>"]
    return "\n".join(lines)


def box_config() -> str:
    """The person-box check: the pre-filled box to confirm, adjust, or reject as not a person."""
    choices = "\n".join(
        f"    <Choice value={quoteattr(c)} hotkey={quoteattr(k)}/>"
        for c, k in zip(BOX_CHOICES, HOTKEY_POOL[: len(BOX_CHOICES)], strict=True)
    )
    return "\n".join(
        [
            "<View>",
            f'  <Image name="{IMAGE}" value="$image" zoom="true" zoomControl="true"/>',
            f'  <RectangleLabels name="{PERSON}" toName="{IMAGE}" strokeWidth="3">',
            f'    <Label value="person" background="#ff0000" hotkey="{PERSON_HOTKEY}"/>',
            "  </RectangleLabels>",
            f'  <Choices name="{BOX_CHECK}" toName="{IMAGE}" choice="single-radio" showInline="true" required="true">',
            choices,
            "  </Choices>",
            "</View>",
        ]
    )


INSTRUCTIONS = {
    "attributes": (
        "<p>Look only at the person inside the red box. Each question is pre-filled with the model's answer: "
        "keep it if it is right, pick the right value if not. Choose <b>{na}</b> when the item cannot be seen "
        "or does not apply. Number and letter keys select options; Ctrl+Enter submits.</p>"
    ),
    "parsing": (
        "<p>The brush layers are the model's body-part parsing of the person. Paint over wrong areas with the "
        "right label, erase stray paint (E), and submit. Keys 1-9, 0 and letters pick labels; B brush.</p>"
    ),
    "box": (
        "<p>Check the red box: <b>box ok</b> if it tightly contains one whole visible person, <b>box adjusted"
        "</b> after dragging its corners to fit, <b>not a person</b> if there is no real person.</p>"
    ),
}


def project_spec(kind: str, taxonomy: Taxonomy) -> ProjectSpec:
    """The project for ``kind`` under ``taxonomy``."""
    if kind == "attributes":
        config = attribute_config(taxonomy)
    elif kind == "parsing":
        config = parsing_config(taxonomy)
    elif kind == "box":
        config = box_config()
    else:
        from annotate_anyone.errors import InvalidInput

        raise InvalidInput(f"unknown review kind {kind!r}; known: {', '.join(KINDS)}")
    return ProjectSpec(
        kind=kind,
        taxonomy_version=taxonomy.version,
        title=f"Annotate Anyone {kind} {taxonomy.version}",
        label_config=config,
        instructions=INSTRUCTIONS[kind].format(na=NA_LABEL),
    )
