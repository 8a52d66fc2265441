"""Dense captions in CosmicMan's grammar and the training columns, from a person's resolved labels.

The phrase rules live in :mod:`annotate_anyone.annotation.phrases` (``SHOT_PHRASES``, ``group_phrase``),
which groups and keys count in the taxonomy (:meth:`Taxonomy.aa_entry`); this module picks each
person's final labels and writes the groups in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotate_anyone.annotation.phrases import SHOT_PHRASES, group_phrase
from annotate_anyone.annotation.taxonomy import Taxonomy
from annotate_anyone.catalog.models import Attribute, AttributeOrigin, AttributeState

Labels = Mapping[tuple[int, str], str]


def resolved_labels(session: Session, person_ids: Iterable[int]) -> dict[int, dict[tuple[int, str], str]]:
    """Each person's final label per category: the latest human answer, else an accepted model label."""
    ids = list(person_ids)
    out: dict[int, dict[tuple[int, str], str]] = {pid: {} for pid in ids}
    if not ids:
        return out
    rows = session.scalars(
        select(Attribute)
        .where(Attribute.person_id.in_(ids))
        .where(Attribute.state.in_([AttributeState.auto_accepted, AttributeState.human_verified]))
        .order_by(Attribute.updated_at, Attribute.id)
    )
    human: dict[tuple[int, int, str], str] = {}
    for a in rows:
        if a.value is None:
            continue
        if a.origin == AttributeOrigin.human:
            human[(a.person_id, a.group, a.key)] = a.value
        else:
            out[a.person_id].setdefault((a.group, a.key), a.value)
    for (pid, group, key), value in human.items():
        out[pid][(group, key)] = value
    return out


def aa_text(labels: Labels, taxonomy: Taxonomy) -> list[dict[str, str] | None]:
    """The 20 ``aa_text`` entries, under the taxonomy's one rule (:meth:`Taxonomy.aa_entry`)."""
    return taxonomy.aa_text(labels)


def dense_caption(shot_type: str | None, groups: list[dict[str, str] | None]) -> str:
    """Shot phrase, then every group's phrase in group order, joined with ", " (no dropout, no shuffling)."""
    parts = [SHOT_PHRASES[shot_type]] if shot_type in SHOT_PHRASES else []
    parts += [
        phrase for index, attrs in enumerate(groups) if attrs is not None and (phrase := group_phrase(index, attrs))
    ]
    return ", ".join(parts)
