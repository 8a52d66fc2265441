"""Labeling configs generated from the taxonomy: well-formed, one control per attribute, part questions behind their
part, consistent wording, hotkeys for all options or none."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.review import configs, question_layout

TAXONOMY = load_taxonomy()
LS_SINGLE_KEYS = set("uhoemkwprvb")  # Label Studio's own single-key shortcuts


def test_attribute_config_has_one_dynamic_choices_per_attribute_and_the_parts_checklist() -> None:
    root = ET.fromstring(configs.attribute_config(TAXONOMY))
    names = [c.get("name") for c in root.findall(".//Choices")]
    assert len(names) == len(set(names)) == len(TAXONOMY.categories()) + 2  # + the checklist and the key sink
    assert set(configs.LS_AUTO_KEYS) >= set(configs.HOTKEY_POOL)
    for c in TAXONOMY.categories():
        tag = root.find(f".//Choices[@name='{configs.control_name(c.group, c.key)}']")
        assert tag.get("value") == f"${configs.options_field(c.group, c.key)}"
        assert tag.get("toName") == configs.IMAGE and tag.get("choice") == "single-radio"
    checklist = root.find(f".//Choices[@name='{question_layout.PARTS}']")
    assert checklist.get("choice") == "multiple" and checklist.get("value") == f"${configs.PARTS_OPTIONS}"
    assert root.find(".//RectangleLabels/Label").get("value") == "person"
    assert root.find(f".//Collapse/Panel/Image[@name='{configs.OVERLAY}']") is not None  # the optional layer


def _parents(root: ET.Element) -> dict[ET.Element, ET.Element]:
    return {child: parent for parent in root.iter() for child in parent}


def test_part_questions_sit_behind_their_part_and_person_questions_behind_nothing() -> None:
    root = ET.fromstring(configs.attribute_config(TAXONOMY))
    parents = _parents(root)

    def gates(name: str, when: str = "choice-selected") -> list[tuple[str, str]]:
        node, out = root.find(f".//Choices[@name='{name}']"), []
        while node in parents:
            node = parents[node]
            if node.get("visibleWhen") == when:
                out.append((node.get("whenTagName"), node.get("whenChoiceValue")))
        return out

    for c in TAXONOMY.categories():
        found = gates(configs.control_name(c.group, c.key))
        if c.group in question_layout.PART_LABELS:
            label = question_layout.PART_LABELS[c.group]
            ticked = f"{label},{label}{question_layout.CUT_SUFFIX}" if c.group in question_layout.EXTENT else label
            assert (question_layout.PARTS, ticked) in found, c.id
        else:
            assert found == [], c.id
    # where a part ends is not asked when the frame cuts it off
    assert gates("g8_length", "choice-unselected") == [
        ("g8_type", "shorts"),
        (question_layout.PARTS, "bottoms (partly out of frame)"),
    ]
    assert gates("g8_color", "choice-unselected") == []
    assert gates("g9_boots_length") == [("g9_type", "boots"), (question_layout.PARTS, "shoes")]  # shoes: no cut option
    assert gates(question_layout.PARTS) == [] and gates(question_layout.PARTS, "choice-unselected") == []
    # an implied question hides while the implying answer is chosen, and shows before it is given
    assert gates("g3_hair_color", "choice-unselected") == [("g3_hair_style", "bald")]
    assert gates("g6_collar_shape", "choice-unselected") == [("g6_type", "hoodie,polo shirt")]
    assert gates("g6_collar_shape") == [(question_layout.PARTS, "top,top (partly out of frame)")]


def test_implied_answers_are_options_of_their_question_and_parents_come_first() -> None:
    for (group, key), rule in question_layout.RULES.items():
        options = TAXONOMY.options(group, key)
        parent = TAXONOMY.options(group, rule.parent)
        assert set(rule.only) <= set(parent) and set(rule.implies) <= set(parent), (group, key)
        assert all(v is None or v in options for v in rule.implies.values()), (group, key)
        order = [a.key for a in question_layout.part_order(TAXONOMY.group(group))]
        assert order.index(rule.parent) < order.index(key), (group, key)


def test_part_questions_name_their_part_consistently() -> None:
    for index, label in question_layout.PART_LABELS.items():
        noun = label.split(" or ")[0]  # "coat or jacket": questions say "coat"
        for attr in TAXONOMY.group(index).attributes:
            wanted = "boots" if attr.key == "boots_length" else noun
            assert wanted in attr.question.lower(), (index, attr.key, attr.question)


def test_parsing_config_lists_the_atr_labels_with_distinct_safe_hotkeys() -> None:
    labels = ET.fromstring(configs.parsing_config(TAXONOMY)).findall(".//BrushLabels/Label")
    assert [lbl.get("value") for lbl in labels] == TAXONOMY.atr_labels[1:]
    keys = [lbl.get("hotkey") for lbl in labels]
    assert len(keys) == len(set(keys)) and not set(keys) & LS_SINGLE_KEYS


def test_box_config_and_hotkeys() -> None:
    root = ET.fromstring(configs.box_config())
    keys = [c.get("hotkey") for c in root.findall(".//Choice")] + [root.find(".//Label").get("hotkey")]
    assert len(keys) == len(set(keys))
    assert [c.get("value") for c in root.findall(".//Choice")] == list(configs.BOX_CHOICES)


def test_hotkeys_cover_every_option_of_a_task_or_none() -> None:
    fits = [[f"v{i}" for i in range(8)] for _ in range(3)]  # 24 options, 25 keys
    keys = [k for row in configs.assign_hotkeys(fits) for k in row]
    assert None not in keys and len(keys) == len(set(keys)) and not set(keys) & LS_SINGLE_KEYS
    too_many = [[f"v{i}" for i in range(15)] for _ in range(3)]  # 45 options
    assert {k for row in configs.assign_hotkeys(too_many) for k in row} == {None}


def test_na_value_is_shown_in_words_and_stored_as_the_taxonomy_value() -> None:
    shown = configs.display_value(TAXONOMY.na_value, TAXONOMY)
    assert shown == configs.NA_LABEL
    assert configs.stored_value(shown, TAXONOMY) == TAXONOMY.na_value
    assert configs.stored_value("red", TAXONOMY) == "red"


def test_project_spec_per_kind_and_version() -> None:
    specs = {k: configs.project_spec(k, TAXONOMY) for k in configs.KINDS}
    assert len({s.config_hash for s in specs.values()}) == 3
    assert all(TAXONOMY.version in s.title and s.instructions for s in specs.values())
