"""The packaged taxonomy: 20 groups in order, categories, n/a handling, extension, validation."""

import pytest

from annotate_anyone.annotation.taxonomy import ATR_LABELS, load_taxonomy, parse_taxonomy, split_category
from annotate_anyone.errors import InvalidInput


def test_packaged_taxonomy_has_the_cosmicman_shape():
    t = load_taxonomy()
    assert t.version == "cm-1.0"
    assert [g.index for g in t.groups] == list(range(20))
    assert tuple(t.atr_labels) == ATR_LABELS and len(ATR_LABELS) == 18
    assert t.shot_types == ["full_body", "nearly_full_body", "upper_body", "portrait", "headshot"]
    assert [a.key for a in t.group(0).attributes] == ["country", "age", "gender"]
    assert {"pattern", "material", "sleeve_length", "top_length", "collar_shape", "color", "graphic"} <= {
        a.key for a in t.group(6).attributes
    }
    cats = t.categories()
    assert 60 <= len(cats) <= 75  # the paper counts about 70 question categories
    assert len({c.id for c in cats}) == len(cats)
    assert t.group(1).parsing_ids == list(range(1, 18))  # foreground
    assert t.group(3).parsing_ids == [2]  # hair


def test_na_value_is_appended_except_for_presence_questions():
    t = load_taxonomy()
    assert t.options(6, "color")[-1] == "n/a"
    assert t.options(12, "present") == ("yes", "no")
    assert t.is_absent(12, "present", "no") and t.is_absent(6, "color", "n/a") and not t.is_absent(6, "color", "red")
    assert t.group(12).presence_key == "present" and t.group(6).presence_key == "type"


def test_extension_adds_values_and_changes_the_version():
    t = load_taxonomy()
    t2 = t.extended({"6.color": ["teal"]})
    assert "teal" in t2.options(6, "color") and "teal" not in t.options(6, "color")
    assert t2.version.startswith("cm-1.0+") and t2.version != t.version


def test_invalid_taxonomies_are_refused():
    data = load_taxonomy().model_dump()
    data["groups"] = data["groups"][:19]
    with pytest.raises(InvalidInput):
        parse_taxonomy(data)
    data = load_taxonomy().model_dump()
    data["groups"][6]["attributes"][0]["values"].append("n/a")
    with pytest.raises(InvalidInput):
        parse_taxonomy(data)
    with pytest.raises(InvalidInput):
        split_category("color")
