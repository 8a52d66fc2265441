"""What an attribute task asks, in what order, and what is shown when: the presence-first layout.

A person's routed questions are laid out in the paper's grouping:

* **about the person** (groups 0-3 and 14: demographics, body, background, hair, style): always shown;
* **one checklist of parts** ("Which of these can you see the person wearing or carrying?"): one
  option per part group (4-13, 15-19) that has a routed question;
* **the part's own questions**, shown only once its part is ticked (Label Studio ``visibleWhen``), and
  a question that depends on another answer (boots height) only once that answer is given.

Answering the checklist answers the presence of every listed part: a ticked part is there (``present``
= ``yes``), an unticked one is absent or not visible, so its routed questions are settled as the
taxonomy's n/a value ("not visible / not applicable") and its ``present`` as ``no``. A question still
hidden or left blank is *unanswered*, and goes back to the queue.

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
# A question shown only when another question of the same part has one of these values.
CONDITIONS: dict[tuple[int, str], tuple[str, tuple[str, ...]]] = {(9, "boots_length"): ("type", ("boots",))}


@dataclass(frozen=True)
class Part:
    """One part in the checklist: its group, label, and the questions shown once it is ticked."""

    group: int
    label: str
    presence_key: str  # "type" or "present"
    questions: tuple[str, ...]  # keys shown when ticked, taxonomy order (never "present")


@dataclass(frozen=True)
class Layout:
    """The questions of one task: always-shown ones, and the checklist's parts with theirs."""

    person: tuple[tuple[int, str], ...]
    parts: tuple[Part, ...] = ()
    routed: frozenset[str] = field(default_factory=frozenset)  # category ids routed to humans

    @property
    def part_by_label(self) -> dict[str, Part]:
        return {p.label: p for p in self.parts}

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
    """A part's questions as asked: what kind of item it is first (other answers may depend on it)."""
    return sorted(group.attributes, key=lambda a: a.key != group.presence_key)


def plan(taxonomy: Taxonomy, routed: Iterable[tuple[int, str]]) -> Layout:
    """The layout of a task asking ``routed`` (``(group, key)`` pairs), in the paper's group order.

    A part with any routed question is listed in the checklist; a question's condition (boots height
    needs the shoe type) is asked with it.
    """
    wanted = {(int(g), str(k)) for g, k in routed}
    for (g, k), (parent, _) in CONDITIONS.items():
        if (g, k) in wanted:
            wanted.add((g, parent))
    person: list[tuple[int, str]] = []
    parts: list[Part] = []
    for spec in taxonomy.groups:
        is_part = spec.index in PART_LABELS and spec.presence_key is not None
        keys = [a.key for a in (part_order(spec) if is_part else spec.attributes) if (spec.index, a.key) in wanted]
        if not keys:
            continue
        if is_part:
            questions = tuple(k for k in keys if k != PRESENT)
            parts.append(Part(spec.index, PART_LABELS[spec.index], spec.presence_key, questions))
        else:
            person += [(spec.index, k) for k in keys]
    person.sort(key=lambda gk: PERSON_GROUPS.index(gk[0]) if gk[0] in PERSON_GROUPS else len(PERSON_GROUPS))
    return Layout(tuple(person), tuple(parts), frozenset(category_id(g, k) for g, k in routed))


def _condition_met(part: Part, key: str, choices: Mapping[str, str]) -> bool | None:
    """Whether a conditional question is shown: True, False (answered otherwise), None (not yet answered)."""
    rule = CONDITIONS.get((part.group, key))
    if rule is None:
        return True
    parent, values = rule
    given = choices.get(category_id(part.group, parent))
    if given is None:
        return None
    return given in values


def visible(layout: Layout, ticked: Iterable[str] | None, choices: Mapping[str, str]) -> list[str]:
    """The questions on screen given the checklist's ticks and the answers so far (``parts`` counts as one)."""
    shown = [category_id(g, k) for g, k in layout.person]
    if layout.parts:
        shown.append(PARTS)
    labels = set(ticked or ())
    for part in layout.parts:
        if part.label not in labels:
            continue
        shown += [category_id(part.group, k) for k in part.questions if _condition_met(part, k, choices) is True]
    return shown


def settle(
    layout: Layout, taxonomy: Taxonomy, ticked: Iterable[str] | None, choices: Mapping[str, str]
) -> dict[str, str]:
    """One annotation's answers: what was visible and answered, plus what the checklist implies.

    ``ticked``: the checklist's selected labels, ``None`` when the checklist was not answered (then no
    part question counts: none could be seen). Returns category id -> taxonomy value.
    """
    out = {c: v for c, v in choices.items() if c in {category_id(g, k) for g, k in layout.person}}
    if ticked is None:
        return out
    labels = set(ticked)
    na = taxonomy.na_value
    for part in layout.parts:
        if part.label in labels:
            if part.presence_key == PRESENT:
                out[category_id(part.group, PRESENT)] = "yes"
            for key in part.questions:
                cat = category_id(part.group, key)
                met = _condition_met(part, key, choices)
                if met is True and cat in choices:
                    out[cat] = choices[cat]
                elif met is False:
                    out[cat] = na
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
