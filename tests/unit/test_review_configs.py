"""Labeling configs generated from the taxonomy: well-formed, one control per attribute, hotkeys that never collide."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.review import configs

TAXONOMY = load_taxonomy()
LS_SINGLE_KEYS = set("uhoemkwprvb")  # Label Studio's own single-key shortcuts


def test_attribute_config_has_one_dynamic_choices_per_attribute() -> None:
    root = ET.fromstring(configs.attribute_config(TAXONOMY))
    choices = root.findall(".//Choices")
    names = [c.get("name") for c in choices]
    assert len(names) == len(set(names)) == len(TAXONOMY.categories())
    for c in TAXONOMY.categories():
        tag = root.find(f".//Choices[@name='{configs.control_name(c.group, c.key)}']")
        assert tag.get("value") == f"${configs.options_field(c.group, c.key)}"
        assert tag.get("toName") == configs.IMAGE and tag.get("choice") == "single-radio"
    assert root.find(".//RectangleLabels/Label").get("value") == "person"


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


def test_assign_hotkeys_is_distinct_across_a_task_and_stops_at_the_pool() -> None:
    lists = [[f"v{i}" for i in range(15)] for _ in range(3)]  # 45 options, 25 keys
    keys = [k for row in configs.assign_hotkeys(lists) for k in row]
    given = [k for k in keys if k]
    assert len(given) == len(set(given)) == len(configs.HOTKEY_POOL)
    assert not set(given) & LS_SINGLE_KEYS
    assert keys[len(given) :] == [None] * (len(keys) - len(given))


def test_na_value_is_shown_in_words_and_stored_as_the_taxonomy_value() -> None:
    shown = configs.display_value(TAXONOMY.na_value, TAXONOMY)
    assert shown == configs.NA_LABEL
    assert configs.stored_value(shown, TAXONOMY) == TAXONOMY.na_value
    assert configs.stored_value("red", TAXONOMY) == "red"


def test_project_spec_per_kind_and_version() -> None:
    specs = {k: configs.project_spec(k, TAXONOMY) for k in configs.KINDS}
    assert len({s.config_hash for s in specs.values()}) == 3
    assert all(TAXONOMY.version in s.title and s.instructions for s in specs.values())
