"""A simulated flywheel over labelled synthetic people: per round, the share of labels sent to humans
and the accuracy of the released labels (auto-accepted + human).

Setup: ``--persons`` synthetic figures with known attributes (top colour and pattern, sleeve length,
bottoms colour and type, hair colour) in a SQLite database and a local store; ``--gold`` of them form
the gold set. Each round runs the real engine (recalibrate, retrain heads, re-label, route with a
budget of ``--budget`` labels); the simulated annotator (this benchmark only) then answers every
routed label from the known truth. Targets: released-label accuracy >= 95%, human share falling.

Prints a table and, last, ``ratio <labels to do all by hand / labels humans gave over all rounds>``
(gold set included).

    python bench/flywheel.py --persons 300 --gold 40 --budget 400 --rounds 5
"""

from __future__ import annotations

import argparse
import hashlib
import io
import tempfile
import time
from pathlib import Path

from sqlalchemy import select


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=300)
    ap.add_argument("--gold", type=int, default=40)
    ap.add_argument("--budget", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from PIL import Image as PILImage

    from annotate_anyone.annotation.dense_captions import resolved_labels
    from annotate_anyone.annotation.flywheel import run_round
    from annotate_anyone.annotation.models import ReviewTask
    from annotate_anyone.annotation.service import add_gold, record_human_label
    from annotate_anyone.annotation.settings import AnnotationConfig
    from annotate_anyone.annotation.synthetic import TRUTH_CATEGORIES, make_person
    from annotate_anyone.annotation.taxonomy import load_taxonomy, split_category
    from annotate_anyone.catalog.models import Image, Person
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.db.migrate import upgrade
    from annotate_anyone.settings import Settings
    from annotate_anyone.storage.local import LocalStore

    def png(a: object) -> bytes:
        buf = io.BytesIO()
        PILImage.fromarray(a).save(buf, format="PNG")
        return buf.getvalue()

    tmp = Path(tempfile.mkdtemp(prefix="aa-flywheel-"))
    url = f"sqlite:///{tmp / 'aa.db'}"
    upgrade(url)
    store = LocalStore(tmp / "objects")
    config = AnnotationConfig(budget=args.budget, min_gold=10)
    settings = Settings(home=tmp / "home", model_cache=tmp / "models", annotation=config)
    t = load_taxonomy()
    cats = [t.category(*split_category(c)) for c in TRUTH_CATEGORIES]
    truth: dict[int, dict[str, str]] = {}
    with session_scope(url) as s:
        for i in range(args.persons):
            sp = make_person(10_000 + i)
            data = png(sp.image)
            sha = hashlib.sha256(data).hexdigest()
            _, key = store.put_content(data, ext="png")
            img = Image(sha256=sha, source_uri=f"syn-{i}", storage_key=key, width=sp.image.shape[1],
                        height=sp.image.shape[0])  # fmt: skip
            s.add(img)
            s.flush()
            store.put_bytes(f"masks/{sha}.png", png(sp.mask))
            p = Person(image_id=img.id, index=0, box=list(sp.box), keypoints=sp.keypoints.tolist(),
                       face_boxes=[list(sp.face_box)], mask_key=f"masks/{sha}.png")  # fmt: skip
            s.add(p)
            s.flush()
            truth[p.id] = sp.truth
        gold = sorted(truth)[: args.gold]
        add_gold(s, gold)
    total = len(truth) * len(cats)
    rows = []
    for r in range(1, args.rounds + 1):
        start = time.perf_counter()
        with session_scope(url) as s:
            report = run_round(s, store, settings=settings, categories=cats)
        seconds = time.perf_counter() - start
        answered = 0
        with session_scope(url) as s:  # the simulated annotator answers every routed label
            for task in s.scalars(select(ReviewTask).where(ReviewTask.status == "queued")):
                for e in task.payload["attributes"]:
                    cat = f"{e['group']}.{e['key']}"
                    record_human_label(s, task.person_id, e["group"], e["key"], truth[task.person_id][cat], "sim",
                                       config=config)  # fmt: skip
                    answered += 1
                task.status = "answered"
        with session_scope(url) as s:
            released = resolved_labels(s, [pid for pid in truth if pid not in gold])
        n_rel = sum(len(v) for v in released.values())
        correct = sum(truth[pid][f"{g}.{k}"] == v for pid, labels in released.items() for (g, k), v in labels.items())
        pool_total = (len(truth) - len(gold)) * len(cats)
        passing = report["categories_passing_gate"]
        auto, err = report["this_round"]["auto_accepted"], report["expected_error_auto_accepted"]
        rows.append(
            (
                r,
                auto,
                answered,
                answered / total,
                n_rel / pool_total,
                correct / max(n_rel, 1),
                err,
                len(passing),
                seconds,
            )
        )
    print(f"persons {args.persons}, gold {args.gold}, categories {len(cats)}, budget {args.budget} labels/round")
    print("| round | auto-accepted | sent to humans | human share | released coverage | released accuracy |"
          " expected error (auto) | categories passing gate | round s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r, auto, sent, share, cov, acc, err, npass, sec in rows:
        print(f"| {r} | {auto} | {sent} | {share:.1%} | {cov:.1%} | {acc:.1%} | {err if err is None else f'{err:.3f}'} "
              f"| {npass}/{len(cats)} | {sec:.1f} |")  # fmt: skip
    spent = sum(row[2] for row in rows)
    print(f"human labels over all rounds: {spent} of {total} ({spent / total:.1%})")
    print(f"ratio {total / max(spent, 1):.2f}")


if __name__ == "__main__":
    main()
