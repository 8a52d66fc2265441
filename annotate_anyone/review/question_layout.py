"""What an attribute task asks, in what order, and what is shown when: the presence-first layout.

A person's routed questions are laid out in the paper's grouping:

* **about the person** (groups 0-3 and 14: demographics, body, background, hair, style): always shown;
* **one checklist of parts** ("Which of these can you see the person wearing or carrying?"): one
  option per part group (4-13, 15-19) that has a routed question;
* **the part's own questions**, shown only once its part is ticked (Label Studio ``visibleWhen``);
* **no question whose answer follows from another** (``RULES``): boots height is asked only once the shoes
  are boots; a question another answer implies (a tank top is sleeveless, a hoodie is hooded, jeans are
  denim, shorts are short, leggings slim, cropped hair short, bald has no hair colour or length) is hidden
  while that answer is chosen, and settled to the implied value.

Answering the checklist answers the presence of every listed part: a ticked part is there (``present``
= ``yes``), an unticked one is absent or not visible, so its routed questions are settled as the
taxonomy's n/a value ("not visible / not applicable") and its ``present`` as ``no``. A part whose end
the frame cuts off (trousers of a waist-up shot) is ticked as "<part> (partly out of frame)": it is
there, and the questions about where it ends (``EXTENT``: lengths, the bottoms' shape) are settled as
"not visible" instead of being asked. A question still hidden or left blank is *unanswered*, and goes
back to the queue.

The same rules drive the labeling config (configs.py), the task data (builders.py), how an answer is
read back (sync.py) and the questions-per-person measurement (bench/review_questions.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from annotate_anyone.annotation.taxonomy import AttributeSpec, GroupSpec, Taxonomy, category_id

PRESENT = "present"  # the yes/no presence key of a part group
PARTS = "parts"  # the Choices name of the checklist
NONE_OF_THESE = "none of these"
PERSON_GROUPS = (0, 1, 2, 3, 14)
# How each part is named to the annotator; the part's questions name it the same way (tested).
PART_LABELS = {
    4: "one-piece outfit", 5: "dress", 6: "top", 7: "coat or jacket", 8: "bottoms", 9: "shoes",
    10: "headwear", 11: "bag", 12: "belt", 13: "scarf", 15: "headband", 16: "headscarf", 17: "veil",
    18: "socks", 19: "tie",
}  # fmt: skip

# Questions about where a part ends, which a part cut off by the frame cannot answer (settled "not visible").
EXTENT: dict[int, tuple[str, ...]] = {5: ("length",), 6: ("top_length",), 7: ("coat_length",),
                                      8: ("length", "bottom_shape")}  # fmt: skip
CUT_SUFFIX = " (partly out of frame)"


@dataclass(frozen=True)
class Rule:
    """How one question depends on another question (``parent``) of the same group.

    ``only``: the question is shown only once the parent is answered with one of these values; any other
    answer settles it as n/a. ``implies``: parent answers that settle the question (``None``: n/a); it is
    shown otherwise (also before the parent is answered), and hidden while an implying answer is chosen.
    """

    parent: str
    only: tuple[str, ...] = ()
    implies: Mapping[str, str | None] = field(default_factory=dict)


# Only strict implications: an answer another answer forces (never a likely one, such as "gown" -> "maxi").
RULES: dict[tuple[int, str], Rule] = {
    (3, "hair_color"): Rule("hair_style", implies={"bald": None}),
    (3, "hair_length"): Rule("hair_style", implies={"bald": None, "cropped": "short"}),
    (5, "collar_shape"): Rule("type", implies={"shirt dress": "collared"}),
    (6, "sleeve_length"): Rule("type", implies={"tank top": "sleeveless"}),
    (6, "collar_shape"): Rule("type", implies={"hoodie": "hooded", "polo shirt": "collared"}),
    (7, "material"): Rule("type", implies={"denim jacket": "denim", "leather jacket": "leather"}),
    (7, "collar_shape"): Rule("type", implies={"blazer": "lapel"}),
    (8, "material"): Rule("type", implies={"jeans": "denim"}),
    (8, "length"): Rule("type", implies={"shorts": "short"}),
    (8, "bottom_shape"): Rule("type", implies={"leggings": "slim"}),
    (9, "boots_length"): Rule("type", only=("boots",)),
}


@dataclass(frozen=True)
class Part:
    """One part in the checklist: its group, label, and the questions shown once it is ticked."""

    group: int
    label: str
    presence_key: str  # "type" or "present"
    questions: tuple[str, ...]  # keys shown when ticked, taxonomy order (never "present")

    @property
    def extent(self) -> tuple[str, ...]:
        """The asked questions about where the part ends (see ``EXTENT``)."""
        return tuple(k for k in self.questions if k in EXTENT.get(self.group, ()))

    @property
    def cut_label(self) -> str | None:
        """The checklist's "partly out of frame" option, offered when the task asks about the part's end."""
        return f"{self.label}{CUT_SUFFIX}" if self.extent else None

    def state(self, ticked: Iterable[str]) -> tuple[bool, bool]:
        """(the part is there, its end is cut off by the frame) from the checklist's ticks."""
        labels = set(ticked)
        cut = self.cut_label is not None and self.cut_label in labels
        return self.label in labels or cut, cut


@dataclass(frozen=True)
class Layout:
    """The questions of one task: always-shown ones, and the checklist's parts with theirs."""

    person: tuple[tuple[int, str], ...]
    parts: tuple[Part, ...] = ()
    routed: frozenset[str] = field(default_factory=frozenset)  # category ids routed to humans

    @property
    def part_by_label(self) -> dict[str, Part]:
        """Each checklist option (a part, or its "partly out of frame" variant) -> its part."""
        out = {p.label: p for p in self.parts}
        out.update({p.cut_label: p for p in self.parts if p.cut_label})
        return out

    def categories(self) -> list[str]:
        """Every category a complete answer settles (person questions, presence, part questions)."""
        out = [category_id(g, k) for g, k in self.person]
        for p in self.parts:
            if p.presence_key == PRESENT:
                out.append(category_id(p.group, PRESENT))
            out += [category_id(p.group, k) for k in p.questions]
        return out

    def to_meta(self) -> dict[str, Any]:
        """JSON kept in the task's payload: what the task showed, to read its answers back the same way."""
        return {
            "person": [category_id(g, k) for g, k in self.person],
            "parts": [[p.group, p.presence_key, list(p.questions)] for p in self.parts],
            "routed": sorted(self.routed),
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Layout:
        person = tuple((int(c.split(".", 1)[0]), c.split(".", 1)[1]) for c in meta.get("person", []))
        parts = tuple(Part(int(g), PART_LABELS[int(g)], str(pk), tuple(qs)) for g, pk, qs in meta.get("parts", []))
        return cls(person, parts, frozenset(meta.get("routed", [])))


def part_order(group: GroupSpec) -> list[AttributeSpec]:
    """A group's questions as asked: what kind of item it is first, then the questions others depend on
    (hair style before hair colour), then the rest in taxonomy order."""
    parents = {r.parent for (g, _), r in RULES.items() if g == group.index}
    return sorted(group.attributes, key=lambda a: (a.key != group.presence_key, a.key not in parents))


def plan(taxonomy: Taxonomy, routed: Iterable[tuple[int, str]]) -> Layout:
    """The layout of a task asking ``routed`` (``(group, key)`` pairs), in the paper's group order.

    A part with any routed question is listed in the checklist; a question's condition (boots height
    needs the shoe type) is asked with it.
    """
    wanted = {(int(g), str(k)) for g, k in routed}
    for (g, k), rule in RULES.items():
        if (g, k) in wanted and rule.only:
            wanted.add((g, rule.parent))
    person: list[tuple[int, str]] = []
    parts: list[Part] = []
    for spec in taxonomy.groups:
        is_part = spec.index in PART_LABELS and spec.presence_key is not None
        keys = [a.key for a in part_order(spec) if (spec.index, a.key) in wanted]
        if not keys:
            continue
        if is_part:
            questions = tuple(k for k in keys if k != PRESENT)
            parts.append(Part(spec.index, PART_LABELS[spec.index], spec.presence_key, questions))
        else:
            person += [(spec.index, k) for k in keys]
    person.sort(key=lambda gk: PERSON_GROUPS.index(gk[0]) if gk[0] in PERSON_GROUPS else len(PERSON_GROUPS))
    return Layout(tuple(person), tuple(parts), frozenset(category_id(g, k) for g, k in routed))


def implied(group: int, key: str, choices: Mapping[str, str], na: str) -> tuple[bool | None, str | None]:
    """Whether question ``group.key`` is on screen given the answers so far, and the value another answer
    settles it to: ``(True, None)`` shown; ``(False, value)`` settled by its parent's answer; ``(None, None)``
    hidden until its parent is answered."""
    rule = RULES.get((group, key))
    if rule is None:
        return True, None
    given = choices.get(category_id(group, rule.parent))
    if rule.only:
        if given is None:
            return None, None
        return (True, None) if given in rule.only else (False, na)
    if given is not None and given in rule.implies:
        return False, rule.implies[given] or na
    return True, None


def visible(layout: Layout, ticked: Iterable[str] | None, choices: Mapping[str, str]) -> list[str]:
    """The questions on screen given the checklist's ticks and the answers so far.

    The checklist (``parts``, one multi-select) counts as one question; a question hidden because another
    answer settles it (``RULES``) or because its parent is not answered yet does not count.
    """
    shown = [category_id(g, k) for g, k in layout.person if implied(g, k, choices, "")[0] is True]
    if layout.parts:
        shown.append(PARTS)
    for part in layout.parts:
        there, cut = part.state(ticked or ())
        if not there:
            continue
        shown += [
            category_id(part.group, k)
            for k in part.questions
            if implied(part.group, k, choices, "")[0] is True and not (cut and k in part.extent)
        ]
    return shown


def settle(
    layout: Layout, taxonomy: Taxonomy, ticked: Iterable[str] | None, choices: Mapping[str, str]
) -> dict[str, str]:
    """One annotation's answers: what was visible and answered, plus what the checklist and ``RULES`` imply.

    ``ticked``: the checklist's selected labels, ``None`` when the checklist was not answered (then no
    part question counts: none could be seen). An answer given to a question while it was hidden is
    dropped; a question another answer implies gets the implied value. Returns category id -> value.
    """
    na = taxonomy.na_value
    out: dict[str, str] = {}
    for group, key in layout.person:
        cat = category_id(group, key)
        shown, value = implied(group, key, choices, na)
        if shown is True and cat in choices:
            out[cat] = choices[cat]
        elif shown is False and value is not None:
            out[cat] = value
    if ticked is None:
        return out
    for part in layout.parts:
        there, cut = part.state(ticked)
        if there:
            if part.presence_key == PRESENT:
                out[category_id(part.group, PRESENT)] = "yes"
            for key in part.questions:
                cat = category_id(part.group, key)
                shown, value = implied(part.group, key, choices, na)
                if shown is False and value is not None:
                    out[cat] = value  # another answer settles it (shorts are short, cut off or not)
                elif cut and key in part.extent:
                    out[cat] = na  # the frame cuts it off: where it ends cannot be seen
                elif shown is True and cat in choices:
                    out[cat] = choices[cat]
        else:
            if part.presence_key == PRESENT:
                out[category_id(part.group, PRESENT)] = "no"
            for key in part.questions:
                out[category_id(part.group, key)] = na
    return out


def unanswered(layout: Layout, answers: Iterable[Mapping[str, str]]) -> list[str]:
    """Routed categories no answer settled (they go back to the queue)."""
    settled = {c for a in answers for c in a}
    return [c for c in sorted(layout.routed) if c not in settled]


def category_title(taxonomy: Taxonomy, group: int, key: str) -> str:
    """A category as people read it: ``"6.color"`` -> ``"Top · color"``, ``"3.hair_length"`` -> ``"Hair · length"``."""
    spec = taxonomy.group(group)
    part = PART_LABELS.get(group, spec.name)
    words = key.removeprefix(f"{spec.name}_").replace("_", " ")
    words = {"type": "kind", PRESENT: "worn"}.get(words, words)
    return f"{part[:1].upper()}{part[1:]} · {words}"


def presence_probability(taxonomy: Taxonomy, key: str, distribution: Mapping[str, float]) -> float | None:
    """The model's probability that a part is there, from its presence question's distribution."""
    if not distribution:
        return None
    if key == PRESENT:
        return float(distribution.get("yes", 0.0))
    return max(0.0, 1.0 - float(distribution.get(taxonomy.na_value, 0.0)))
