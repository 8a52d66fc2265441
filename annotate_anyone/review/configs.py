"""Labeling configs generated from the taxonomy: one project per (taxonomy version, task kind).

* ``attributes``: the image with the person box drawn (a pre-filled rectangle), the parsing overlay in a
  collapsed panel, the questions about the person, a checklist of parts, and each part's questions shown
  only once the part is ticked, less those another answer or a "partly out of frame" tick settles
  (question_layout.py). Options come from the task (dynamic choices), so a task shows
  only the questions routed for that person; every other option list is empty and renders nothing.
* ``parsing``: ``BrushLabels`` with the ATR labels, pre-filled with our parsing map.
* ``box``: the pre-filled person box to confirm, adjust or reject.

Hotkeys never collide: Label Studio's own single-key shortcuts are left out of the pool, and each task's
options draw distinct keys from it, all of them or none.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from annotate_anyone.annotation.taxonomy import Taxonomy
from annotate_anyone.review import question_layout

KINDS = ("attributes", "parsing", "box")
IMAGE = "image"
PERSON = "person"
PARSING = "parsing"
BOX_CHECK = "box_check"
OVERLAY = "overlay"  # the optional parsing layer: an image inside a collapsed panel
OVERLAY_TITLE = "overlay_title"
SUMMARY = "aa_summary"  # the task's labelled summary line (the model's lowest confidence, ...)
PERSON_HEAD = "aa_person_head"
PARTS_QUESTION = "parts_q"
PARTS_OPTIONS = "parts_opts"
STYLE = (
    ".aa-summary { background: #fff8e1; padding: 4px 8px; border-left: 4px solid #f0a000; }"
    " .aa-part { border-left: 3px solid #4363d8; padding-left: 8px; margin: 6px 0; }"
    " .aa-model { color: #5a5a5a; font-size: 85%; margin-left: 4px; }"
)
NA_LABEL = "not visible / not applicable"
BOX_CHOICES = ("box ok", "box adjusted", "not a person")
PERSON_HOTKEY = "alt+p"
# Single keys Label Studio does not use itself (it takes u h o e m k w p r v b and the modified keys).
HOTKEY_POOL = tuple("1234567890") + tuple("acdfgijlnqstxyz")
# Label Studio gives every option without a hotkey the next free one of these (Hotkey.makeComb) until they
# run out: "some, not all". A task whose options cannot all have keys binds them all to a hidden control
# instead (``KEY_SINK``), so no option gets one.
LS_AUTO_KEYS = tuple("1234567890qwetasdfgzxcvbyiopjklnm")
KEY_SINK = "aa_no_hotkeys"
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
    """Distinct hotkeys for every option of one task, in order, or none at all when they do not all fit.

    Keys that run out halfway would leave the later questions mouse-only while the first ones have keys,
    which reads as a bug; so a task's options either all have a key or none has.
    """
    if sum(len(options) for options in option_lists) > len(pool):
        return [[None] * len(options) for options in option_lists]
    keys = iter(pool)
    return [[next(keys) for _ in options] for options in option_lists]


def part_head_field(group: int) -> str:
    """The data field of a part's heading (empty when the task asks nothing about the part)."""
    return f"g{group}_head"


def _question(name: str, group: int, key: str) -> list[str]:
    return [
        "    <View>",
        f'      <Header value="${question_field(group, key)}" size="6"/>',
        f'      <Choices name="{name}" toName="{IMAGE}" value="${options_field(group, key)}"'
        ' choice="single-radio" showInline="true"/>',
        "    </View>",
    ]


def _ruled_question(taxonomy: Taxonomy, group: int, key: str, indent: str) -> list[str]:
    """A question, wrapped in the view that hides it when another answer settles it (``question_layout.RULES``).

    ``only`` rules show it once the parent has one of their values (``choice-selected``); ``implies``
    rules hide it while an implying answer is chosen (``choice-unselected``, so it shows before).
    """
    lines = _question(control_name(group, key), group, key)
    rule = question_layout.RULES.get((group, key))
    if rule is None:
        return [indent + line for line in lines]
    shown = [display_value(v, taxonomy) for v in rule.only] or [display_value(v, taxonomy) for v in rule.implies]
    when = "choice-selected" if rule.only else "choice-unselected"
    return [
        f'{indent}    <View visibleWhen="{when}" whenTagName="{control_name(group, rule.parent)}"'
        f" whenChoiceValue={quoteattr(','.join(shown))}>",
        *(f"{indent}  {line}" for line in lines),
        f"{indent}    </View>",
    ]


def attribute_config(taxonomy: Taxonomy) -> str:
    """The attribute-review config: presence first, then each part's questions once the part is ticked.

    Every taxonomy attribute has a dynamic ``Choices`` (its options come from the task, so only routed
    questions show); the parts checklist (``question_layout.PARTS``) gates each part's block with ``visibleWhen``.
    See :mod:`annotate_anyone.review.question_layout` for the rules.
    """
    blocks = [
        "<View>",
        f"  <Style>{STYLE}</Style>",
        '  <View className="aa-summary">',
        f'    <Header value="${SUMMARY}" size="6"/>',
        "  </View>",
        f'  <Image name="{IMAGE}" value="$image" zoom="true" zoomControl="true"/>',
        f'  <RectangleLabels name="{PERSON}" toName="{IMAGE}" strokeWidth="3" opacity="0.1">',
        f'    <Label value="person" background="#ff0000" hotkey="{PERSON_HOTKEY}"/>',
        "  </RectangleLabels>",
        '  <Collapse bordered="true">',
        f'    <Panel value="${OVERLAY_TITLE}">',
        f'      <Image name="{OVERLAY}" value="${OVERLAY}"/>',
        "    </Panel>",
        "  </Collapse>",
        f'  <Header value="${PERSON_HEAD}" size="5"/>',
    ]
    person = [g for g in question_layout.PERSON_GROUPS] + [
        g.index
        for g in taxonomy.groups
        if g.index not in question_layout.PART_LABELS and g.index not in question_layout.PERSON_GROUPS
    ]
    for index in person:
        for attr in question_layout.part_order(taxonomy.group(index)):
            blocks += _ruled_question(taxonomy, index, attr.key, "")
    blocks += [
        f'  <Header value="${PARTS_QUESTION}" size="5"/>',
        f'  <Choices name="{question_layout.PARTS}" toName="{IMAGE}" value="${PARTS_OPTIONS}" choice="multiple"'
        ' showInline="true"/>',
    ]
    for group in taxonomy.groups:
        label = question_layout.PART_LABELS.get(group.index)
        if label is None:
            continue
        cut = f"{label}{question_layout.CUT_SUFFIX}"
        ticked = f"{label},{cut}" if group.index in question_layout.EXTENT else label
        blocks += [
            f'  <View visibleWhen="choice-selected" whenTagName="{question_layout.PARTS}"'
            f' whenChoiceValue={quoteattr(ticked)} className="aa-part">',
            f'    <Header value="${part_head_field(group.index)}" size="5"/>',
        ]
        for attr in question_layout.part_order(group):
            if attr.key not in question_layout.EXTENT.get(group.index, ()):
                blocks += _ruled_question(taxonomy, group.index, attr.key, "")
                continue
            blocks += [  # where the part ends: not asked when the frame cuts it off
                f'    <View visibleWhen="choice-unselected" whenTagName="{question_layout.PARTS}"'
                f" whenChoiceValue={quoteattr(cut)}>",
                *_ruled_question(taxonomy, group.index, attr.key, "  "),
                "    </View>",
            ]
        blocks.append("  </View>")
    blocks += [
        '  <View style="display: none">',
        f'    <Choices name="{KEY_SINK}" toName="{IMAGE}" value="${KEY_SINK}" choice="multiple"/>',
        "  </View>",
        "</View>",
    ]
    return "\n".join(blocks)


def key_sink(assigned: bool) -> list[dict[str, str]]:
    """The hidden control's options: none when the task's options have keys, else one per auto key."""
    return [] if assigned else [{"value": f"key {k}", "hotkey": k} for k in LS_AUTO_KEYS]


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
        "<p>Look only at the person inside the red box. First answer the questions about the person, then tick "
        "<b>every part you can see</b> the person wearing or carrying: the questions about a part appear once it is "
        "ticked. Tick <i>partly out of frame</i> instead when the photo cuts the part off (trousers in a waist-up "
        "shot): its length is then not asked. A part left unticked counts as absent or not visible. Some questions "
        "disappear when another answer settles them (a tank top has no sleeves, jeans are denim). Choose <b>{na}"
        "</b> when an item cannot be seen or does not apply.</p><p>Small grey percentages are the model's "
        "calibrated scores for its top answers; "
        "an answer is pre-selected only when the model is at least {preselect} sure, so check it like any other. "
        "The summary line above the photo gives the model's lowest confidence among this task's questions. "
        "Questions you leave blank come back later in a new task. Open <i>Body-part overlay</i> to compare with "
        "the model's parsing. Ctrl+Enter submits.</p>"
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


def project_spec(kind: str, taxonomy: Taxonomy, *, preselect: float = 0.9) -> ProjectSpec:
    """The project for ``kind`` under ``taxonomy`` (``preselect``: the confidence that pre-selects an answer)."""
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
        instructions=INSTRUCTIONS[kind].format(na=NA_LABEL, preselect=f"{preselect:.0%}"),
    )
