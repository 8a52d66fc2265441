"""How many questions an annotator sees per person, before (every routed question on one page) and now
(presence first: the parts checklist, each part's questions once it is ticked, less what other answers settle).

    python bench/review_questions.py [PHOTO_DIR ...]     # default: tests/data/people-coco

Runs the demo's flywheel (ingest, one annotation round, export) on the package photos (``make demo``'s)
and each folder's, in a temporary embedded home, and lays out every routed attribute task the way review
push does (``annotate_anyone.review.question_layout``). Per person it counts the questions on screen, one per
question control: a single-choice question counts one, and **the parts checklist, one multi-select
("Which of these can you see the person wearing or carrying?"), counts as one question**, however many
parts it lists:

* ``before``: every routed question (the old single page);
* ``opening``: what the task shows when opened (questions about the person, the checklist, and the
  questions of parts the model is sure enough of to pre-tick; a question that waits for another answer,
  boots height, is not on screen yet);
* ``answered``: after the checklist is answered. Which parts a person has is taken from the model where it
  answered the part's presence, else from the parsing map (top: upper-clothes, bottoms: skirt or pants,
  dress, shoes, headwear: hat, bag, belt, scarf; other parts are taken as absent). A part whose end the
  person's shot type leaves out of frame (``CUT_BY_SHOT``: the bottoms, dress and coat of a waist-up shot)
  is ticked "partly out of frame", so its length questions are not asked. Questions another answer settles
  (``question_layout.RULES``: boots height unless boots, a tank top's sleeves, ...) count by the model's answer.

Routing is not changed here: in round 1 (no gold yet) every uncalibrated category is routed, so a person
wearing a top and trousers is asked the paper's full set for both parts (8 and 7 questions) plus the 9
questions about the person and the checklist.

Prints one row per person, the medians, and last ``ratio <median answered / 20>`` (the issue's target is
at most 20 questions per person, so at most 1).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET = 20
EVIDENCE = {6: (4,), 8: (5, 6), 5: (7,), 9: (9, 10), 10: (1,), 11: (16,), 12: (8,), 13: (17,)}  # group -> ATR ids
MIN_FRACTION = 0.004  # share of the person's parsed pixels that counts as "the parsing shows it" (as routing)
# The parts whose end a shot type's frame leaves out (an annotator ticks them "partly out of frame").
CUT_BY_SHOT = {"upper_body": {5, 7, 8}, "portrait": {5, 6, 7, 8}, "headshot": {5, 6, 7, 8}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "folders", nargs="*", type=Path, default=[REPO / "tests" / "data" / "people-coco"],
        help="folders of photos (default: the COCO people fixtures in the repository)",
    )  # fmt: skip
    args = parser.parse_args()
    for folder in args.folders:
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder")
    with tempfile.TemporaryDirectory(prefix="aa-bench-questions-") as tmp:
        rows = measure(Path(tmp), args.folders)
    print(f"{'person':<44}{'shot':<18}{'before':>7}{'opening':>9}{'answered':>10}")
    for name, shot, before, opening, answered in rows:
        print(f"{name:<44}{shot:<18}{before:>7}{opening:>9}{answered:>10}")
    medians = [statistics.median(r[i] for r in rows) for i in (2, 3, 4)]
    print(f"{'median of ' + str(len(rows)) + ' persons':<62}{medians[0]:>7g}{medians[1]:>9g}{medians[2]:>10g}")
    print(f"ratio {medians[2] / TARGET:.2f}")


def measure(root: Path, folders: list[Path]) -> list[tuple[str, str, int, int, int]]:
    from sqlalchemy import select

    from annotate_anyone.annotation.models import ReviewTask
    from annotate_anyone.annotation.parsing import decode_map
    from annotate_anyone.annotation.taxonomy import category_id, load_taxonomy
    from annotate_anyone.catalog.models import Image, Person
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.home.demo import demo_settings, run_flywheel, write_demo_images
    from annotate_anyone.review import engine, question_layout
    from annotate_anyone.review.settings import ReviewConfig
    from annotate_anyone.settings import Settings
    from annotate_anyone.storage import open_store

    settings = demo_settings(Settings(home=root / "home", workers=1))
    photos = root / "photos"  # the package photos and every folder's, side by side (one source, one round)
    write_demo_images(photos)
    for i, folder in enumerate(folders):
        for path in sorted(folder.iterdir()):
            if path.is_file():
                shutil.copy(path, photos / f"{i}-{path.name}")
    run_flywheel(settings, photos, name="photos")

    taxonomy = load_taxonomy()
    store = open_store(settings=settings)
    threshold = ReviewConfig().preselect_confidence
    rows = []
    with session_scope(settings.db_url) as session:
        tasks = session.scalars(
            select(ReviewTask).where(ReviewTask.kind == "attributes", ReviewTask.is_gold.is_(False))
        ).all()
        for task in tasks:
            person = session.get(Person, task.person_id)
            image = session.get(Image, person.image_id)
            routed = engine.routed_attributes(session, task)
            plan = question_layout.plan(taxonomy, [(r.group, r.key) for r in routed])
            by_cat = {r.category: r for r in routed}
            shares = _parsing_shares(decode_map(store.get_bytes(person.parsing_key))) if person.parsing_key else {}
            sure, guessed = [], []
            for part in plan.parts:
                r = by_cat.get(category_id(part.group, part.presence_key))
                p = question_layout.presence_probability(taxonomy, part.presence_key, r.distribution) if r else None
                if p is not None and p >= threshold:
                    sure.append(part.label)
                seen = sum(shares.get(i, 0.0) for i in EVIDENCE.get(part.group, ()))
                if (p >= 0.5) if p is not None else seen >= MIN_FRACTION:
                    cut = part.cut_label and part.group in CUT_BY_SHOT.get(person.shot_type or "", ())
                    guessed.append(part.cut_label if cut else part.label)
            model = {r.category: r.value for r in routed if r.value is not None}
            opening = len(question_layout.visible(plan, sure, {}))
            answered = len(question_layout.visible(plan, guessed, model))
            name = Path(image.source_uri).name
            rows.append((name[:43], person.shot_type or "-", len(routed), opening, answered))
    return sorted(rows)


def _parsing_shares(label_map) -> dict[int, float]:  # noqa: ANN001
    import numpy as np

    counts = np.bincount(label_map.ravel(), minlength=18).astype(float)
    foreground = max(counts[1:].sum(), 1.0)
    return {i: counts[i] / foreground for i in range(1, len(counts))}


if __name__ == "__main__":
    main()
