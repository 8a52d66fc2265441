"""The presence-first layout: what a task shows when, and how an answer is read back (checklist, hidden
questions, conditions, what is left unanswered)."""

from __future__ import annotations

import pytest

from annotate_anyone.annotation.models import ReviewTask
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.review import configs, question_layout
from annotate_anyone.review.settings import ReviewConfig
from annotate_anyone.review.sync import Applier
from annotate_anyone.storage import LocalStore

TAXONOMY = load_taxonomy()
ROUTED = [(14, "overall_style"), (0, "age"), (5, "pattern"), (5, "type"), (12, "present"), (12, "material"),
          (9, "boots_length")]  # fmt: skip


def test_plan_puts_person_questions_first_and_parts_in_group_order_with_conditions_pulled_in() -> None:
    plan = question_layout.plan(TAXONOMY, ROUTED)
    assert plan.person == ((0, "age"), (14, "overall_style"))
    assert [(p.label, p.presence_key, p.questions) for p in plan.parts] == [
        ("dress", "type", ("type", "pattern")),
        ("shoes", "type", ("type", "boots_length")),  # the shoe type is asked because boots height needs it
        ("belt", "present", ("material",)),
    ]
    assert "9.type" not in plan.routed and "9.boots_length" in plan.routed
    assert question_layout.Layout.from_meta(plan.to_meta()) == plan


def test_part_questions_show_only_once_the_part_is_ticked_and_conditions_once_met() -> None:
    plan = question_layout.plan(TAXONOMY, ROUTED)
    assert question_layout.visible(plan, None, {}) == ["0.age", "14.overall_style", question_layout.PARTS]
    assert question_layout.visible(plan, ["dress"], {}) == [
        "0.age",
        "14.overall_style",
        question_layout.PARTS,
        "5.type",
        "5.pattern",
    ]
    assert question_layout.visible(plan, ["shoes"], {"9.type": "sneakers"})[-1] == "9.type"
    assert question_layout.visible(plan, ["shoes"], {"9.type": "boots"})[-2:] == ["9.type", "9.boots_length"]


def test_the_checklist_settles_presence_and_hidden_questions_count_for_nothing() -> None:
    plan = question_layout.plan(TAXONOMY, ROUTED)
    answers = {"0.age": "adult", "5.pattern": "floral", "12.material": "leather", "9.type": "sneakers"}
    assert question_layout.settle(plan, TAXONOMY, None, answers) == {"0.age": "adult"}  # no checklist: no part answer
    got = question_layout.settle(plan, TAXONOMY, ["shoes", question_layout.NONE_OF_THESE], answers)
    assert got == {
        "0.age": "adult",
        "5.type": "n/a",  # dress left out: absent or not visible
        "5.pattern": "n/a",  # answered while hidden: dropped, settled by the checklist instead
        "9.type": "sneakers",
        "9.boots_length": "n/a",  # not boots
        "12.present": "no",
        "12.material": "n/a",
    }
    ticked = question_layout.settle(plan, TAXONOMY, ["dress", "belt"], answers)
    assert ticked["12.present"] == "yes" and ticked["12.material"] == "leather" and ticked["5.pattern"] == "floral"
    assert "5.type" not in ticked  # ticked but its kind not chosen: still open
    assert question_layout.unanswered(plan, [ticked]) == ["14.overall_style", "5.type"]


def test_presence_probability_of_both_kinds_of_part() -> None:
    assert question_layout.presence_probability(TAXONOMY, "type", {"n/a": 0.8, "gown": 0.2}) == pytest.approx(0.2)
    assert question_layout.presence_probability(TAXONOMY, "present", {"yes": 0.3, "no": 0.7}) == 0.3
    assert question_layout.presence_probability(TAXONOMY, "present", {}) is None


def test_an_annotation_is_read_through_the_layout_its_task_was_pushed_with(tmp_path) -> None:
    applier = Applier(TAXONOMY, LocalStore(str(tmp_path)), ReviewConfig())
    plan = question_layout.plan(TAXONOMY, ROUTED)
    task = ReviewTask(id=1, kind="attributes", payload={"review": {"layout": plan.to_meta()}})

    def choice(name: str, *values: str) -> dict:
        return {"from_name": name, "to_name": configs.IMAGE, "type": "choices", "value": {"choices": list(values)}}

    result = [choice("g0_age", "not visible / not applicable"), choice(question_layout.PARTS, "belt"),
              choice("g12_material", "leather"), choice("g5_pattern", "floral")]  # fmt: skip
    choices, extra = applier.parse(task, result)
    assert choices == {"0.age": "n/a", "5.type": "n/a", "5.pattern": "n/a", "9.type": "n/a",
                       "9.boots_length": "n/a", "12.present": "yes", "12.material": "leather"}  # fmt: skip
    assert extra["parts"] == ["belt"]
    legacy = ReviewTask(id=2, kind="attributes", payload={})  # pushed before layouts: read as it is
    assert applier.parse(legacy, result)[0] == {"0.age": "n/a", "12.material": "leather", "5.pattern": "floral"}


def test_a_question_another_answer_implies_is_hidden_and_settled_to_the_implied_value() -> None:
    plan = question_layout.plan(TAXONOMY, [(3, "hair_color"), (3, "hair_style"), (6, "type"), (6, "sleeve_length"),
                                  (6, "collar_shape"), (6, "color"), (8, "type"), (8, "material")])  # fmt: skip
    assert plan.person == ((3, "hair_style"), (3, "hair_color"))  # the question others depend on first
    assert "3.hair_color" in question_layout.visible(plan, None, {})  # shown before the style is given
    assert "3.hair_color" not in question_layout.visible(plan, None, {"3.hair_style": "bald"})
    tank = {"6.type": "tank top", "6.sleeve_length": "long sleeve", "6.color": "red", "3.hair_style": "bald",
            "3.hair_color": "black"}  # fmt: skip
    shown = question_layout.visible(plan, ["top"], tank)
    assert shown == ["3.hair_style", question_layout.PARTS, "6.type", "6.collar_shape", "6.color"]
    got = question_layout.settle(plan, TAXONOMY, ["top", "bottoms"], {**tank, "8.type": "jeans"})
    assert got["6.sleeve_length"] == "sleeveless"  # a tank top has no sleeves, whatever was clicked while hidden
    assert got["3.hair_color"] == "n/a" and got["3.hair_style"] == "bald" and got["8.material"] == "denim"
    assert "6.collar_shape" not in got  # shown and left blank: unanswered
    assert question_layout.unanswered(plan, [got]) == ["6.collar_shape"]
    hoodie = question_layout.settle(plan, TAXONOMY, ["top"], {"6.type": "hoodie", "6.collar_shape": "v-neck"})
    assert hoodie["6.collar_shape"] == "hooded" and "6.sleeve_length" not in hoodie


def test_a_part_cut_off_by_the_frame_is_there_but_where_it_ends_is_not_asked() -> None:
    plan = question_layout.plan(TAXONOMY, [(8, "type"), (8, "length"), (8, "bottom_shape"), (8, "color"), (9, "type")])
    bottoms, shoes = plan.parts
    assert bottoms.cut_label == "bottoms (partly out of frame)" and shoes.cut_label is None  # shoes: no length asked
    assert plan.part_by_label[bottoms.cut_label] is bottoms
    whole = question_layout.visible(plan, ["bottoms"], {})
    cut = question_layout.visible(plan, [bottoms.cut_label], {})
    assert whole == [question_layout.PARTS, "8.type", "8.length", "8.bottom_shape", "8.color"]
    assert cut == [question_layout.PARTS, "8.type", "8.color"]
    answers = {"8.type": "pants", "8.length": "long", "8.color": "black"}
    got = question_layout.settle(plan, TAXONOMY, [bottoms.cut_label], answers)
    assert got == {"8.type": "pants", "8.length": "n/a", "8.bottom_shape": "n/a", "8.color": "black", "9.type": "n/a"}
    shorts = question_layout.settle(plan, TAXONOMY, [bottoms.cut_label], {"8.type": "shorts"})
    assert shorts["8.length"] == "short"  # implied by the kind, cut off or not
    assert question_layout.settle(plan, TAXONOMY, ["bottoms"], answers)["8.length"] == "long"
