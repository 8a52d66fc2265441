"""The offline labelers against the hand-labelled dev set: accuracy, coverage, ECE, overconfidence.

The labels are ``tests/data/labels/dev_set.json`` (made by looking at each photo; see its ``about``).
Photos come from three places: the COCO people fixtures (``--people-coco``, default the eight in
``tests/data/people-coco``), the research-only parsing-dev folder (``--dev-set``, the folder holding
``images/``; read, never copied) and the photos that ship in scikit-image and matplotlib.

Per photo, what the ingest and annotate jobs run for a person: the default person backend finds the
people (the most prominent one is labelled), the shot type is computed as ingest stores it, a
``PersonView`` is built as the annotate job rebuilds it from the stored row, the engine's parser paints
the ATR map, every labeler of the default engine answers, and per category the prediction routing picks
at round 0 (no human answer yet) is kept.

Per scored category: n (labelled persons), accuracy (a missing answer or "n/a" where the photo shows a
value counts as wrong), coverage (share answered with a value other than n/a), ECE of the confidences
(always 10 equal-width bins, weighted by their share of items), and how many answers at confidence
>= 0.9 are wrong. Bottoms are scored coarsely (pants, jeans and leggings are all trousers; shorts;
skirt; n/a) and finely. Three tables: the labelers' raw confidences; confidences calibrated in sample
(the calibration ``--fit-calibration`` ships, fitted on every item and measured on the same items:
optimistic); confidences calibrated out of fold (5-fold cross-validation: each item calibrated by a fit
that never saw it). The method is :func:`annotation.calibration.fit_binned`, made for a few dozen answers
per category (bins of at least a quarter of the items, shrunk toward the category's accuracy, 0.9 only
where the 95% lower credible bound of a bin's accuracy is 0.9). Then the fitted calibrations with the
ECE in sample, out of fold on the first split and over ten random splits (the figure moves with the
split), and the ECE a perfectly calibrated labeler would show on as few items (its noise floor). The
shot type is a rule without a probability (no ECE). Then the coverage table of every category of the
taxonomy: answered offline with a dev-set calibration, or needs a model or a person.

``--reference-parsing`` reads the published parser's maps (``atr/`` of the parsing-dev folder) instead of
running ours, on the parsing-dev photos only: what the labelers reach with a better parse.

Prints the tables and, last, ``ratio <worst accuracy among sleeve, hair length, bottoms, shot type,
gender / 0.85>``.

    python bench/labels.py --dev-set PARSING_DEV_DIR --people-coco COCO_DIR [--details]
        [--fit-calibration annotate_anyone/annotation/calibration_offline.json] [--reference-parsing]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parsing import person_view  # noqa: E402  (bench/parsing.py: the stored row -> PersonView)

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.85
HEADLINE = ("sleeve", "hair length", "bottoms", "shot type", "gender")
TROUSERS = {"pants": "trousers", "jeans": "trousers", "leggings": "trousers"}


@dataclass
class Person:
    """One labelled photo: the hand labels and, per category, the chosen prediction's distribution."""

    source: str
    name: str
    labels: dict[str, str]
    found: bool = False
    preds: dict[str, dict[str, float]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # category -> model version of the chosen answer
    shot_type: str | None = None


def load_photo(row: dict, coco_dir: Path, dev_dir: Path) -> np.ndarray | None:
    from PIL import Image

    if row["source"] == "package":
        if row["name"] == "astronaut":
            from skimage.data import astronaut

            return astronaut()
        if row["name"] == "camera":
            from skimage.data import camera

            return np.repeat(camera()[:, :, None], 3, axis=2)
        from matplotlib.cbook import get_sample_data

        with Image.open(get_sample_data(f"{row['name']}.jpg", asfileobj=False)) as im:
            return np.asarray(im.convert("RGB"))
    path = (coco_dir if row["source"] == "people-coco" else dev_dir / "images") / row["name"]
    if not path.exists():
        return None
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def collect(
    rows: list[dict], coco_dir: Path, dev_dir: Path, reference: bool = False
) -> tuple[list[Person], list[str], dict[str, float], str]:
    """Run detection, parsing and every labeler on each labelled photo (raw, uncalibrated answers)."""
    from PIL import Image

    from annotate_anyone.annotation.dev_calibration import dev_calibrations
    from annotate_anyone.annotation.labelers.base import PersonContext
    from annotate_anyone.annotation.service import Engine, _choose
    from annotate_anyone.annotation.settings import AnnotationConfig
    from annotate_anyone.perception import person_backend
    from annotate_anyone.perception.shot_type import shot_type
    from annotate_anyone.settings import get_settings

    engine = Engine.build(AnnotationConfig())
    cats = engine.taxonomy.categories()
    backend = person_backend(cache_dir=get_settings().model_cache_dir)
    shipped = dev_calibrations()
    persons, missing = [], []
    ms: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        rgb = load_photo(row, coco_dir, dev_dir)
        if rgb is None:
            missing.append(f"{row['source']}/{row['name']}")
            continue
        person = Person(row["source"], row["name"], dict(row["labels"]))
        persons.append(person)
        t0 = time.perf_counter()
        scene = backend.detect(Image.fromarray(rgb))
        ms["detect"].append(time.perf_counter() - t0)
        size = (rgb.shape[1], rgb.shape[0])
        view = person_view(scene, size)
        if view is None:
            continue
        person.found = True
        det = scene.persons[0]
        person.shot_type = shot_type(det.keypoints, scene.width, scene.height, det.face_boxes)
        t0 = time.perf_counter()
        if reference:
            with Image.open(dev_dir / "atr" / f"{Path(row['name']).stem}.png") as im:
                label_map = np.asarray(im).copy()
            label_map[label_map == 255] = 0  # no ATR equivalent: background for the labelers
        else:
            label_map = engine.parser.parse(rgb, view)
        ms["parse"].append(time.perf_counter() - t0)
        ctx = PersonContext(rgb, view, label_map, engine.parser.labels_supported, person.shot_type)
        t0 = time.perf_counter()
        preds = [p for labeler in engine.labelers for p in labeler.label(ctx, cats)]
        ms["label"].append(time.perf_counter() - t0)
        by_cat = defaultdict(list)
        for p in preds:
            by_cat[p.category].append(p)
        for cat, ps in by_cat.items():  # the model routing picks with no gold set and no human answer yet
            chosen = _choose(cat, ps, {}, shipped, engine.config.min_gold)
            person.preds[cat], person.versions[cat] = dict(chosen.distribution), chosen.model_version
    ms_avg = {k: 1000 * float(np.mean(v)) for k, v in ms.items()}
    return persons, missing, ms_avg, engine.parser.model_version


# -- scoring -------------------------------------------------------------------------------------------
def _sleeve_cat(labels: dict[str, str]) -> str | None:
    return (
        "6.sleeve_length" if "6.sleeve_length" in labels else "5.sleeve_length" if "5.sleeve_length" in labels else None
    )


def _coarse(value: str) -> str:
    return TROUSERS.get(value, value)


def _coarse_dist(dist: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for k, v in dist.items():
        out[_coarse(k)] += v
    return dict(out)


# row name -> (category the truth and prediction come from, value mapping of truth, of prediction)
Reader = Callable[[Person], tuple[str | None, dict[str, float] | None]]


def _reader(cat_of: Callable[[dict[str, str]], str | None], coarse: bool = False) -> Reader:
    def read(p: Person) -> tuple[str | None, dict[str, float] | None]:
        cat = cat_of(p.labels)
        if cat is None or cat not in p.labels:
            return None, None
        truth, dist = p.labels[cat], p.preds.get(cat)
        if coarse:
            truth, dist = _coarse(truth), (None if dist is None else _coarse_dist(dist))
        return truth, dist

    return read


def _shot(p: Person) -> tuple[str | None, dict[str, float] | None]:
    truth = p.labels.get("shot_type")
    if truth is None:
        return None, None
    return truth, p.preds.get("shot_type") or ({p.shot_type: 1.0} if p.shot_type else None)


ROWS: dict[str, Reader] = {
    "sleeve": _reader(_sleeve_cat),
    "hair length": _reader(lambda _: "3.hair_length"),
    "bottoms": _reader(lambda _: "8.type", coarse=True),
    "shot type": _shot,
    "gender": _reader(lambda _: "0.gender"),
    "bottoms (fine)": _reader(lambda _: "8.type"),
    "top colour": _reader(lambda _: "6.color"),
    "top type": _reader(lambda _: "6.type"),
    "dress type": _reader(lambda _: "5.type"),
    "headwear": _reader(lambda _: "10.type"),
}


@dataclass
class Score:
    n: int
    accuracy: float
    coverage: float
    ece: float | None
    confident: int
    confident_wrong: int


def score(persons: list[Person], read: Reader) -> Score | None:
    from annotate_anyone.annotation.calibration import expected_calibration_error

    n = correct = covered = 0
    confs, oks = [], []
    for p in persons:
        truth, dist = read(p)
        if truth is None:
            continue
        n += 1
        if not dist:
            continue
        value = max(dist, key=dist.__getitem__)
        ok = value == truth
        correct += ok
        covered += value != "n/a"
        confs.append(dist[value])
        oks.append(ok)
    if n == 0:
        return None
    c, o = np.asarray(confs), np.asarray(oks, bool)
    # A deterministic answer (the shot type without a probability) has no confidence to calibrate.
    ece = None if c.size == 0 or np.all(c == 1.0) and len(set(confs)) == 1 else expected_calibration_error(c, o)
    return Score(n, correct / n, covered / n, ece, int((c >= 0.9).sum()), int(((c >= 0.9) & ~o).sum()))


def print_scores(persons: list[Person], title: str) -> dict[str, Score]:
    print(title)
    print(f"{'category':<16}{'n':>4}{'accuracy':>10}{'coverage':>10}{'ECE':>7}{'>=0.9 wrong':>13}")
    out = {}
    for name, read in ROWS.items():
        s = score(persons, read)
        if s is None:
            continue
        out[name] = s
        ece = "-" if s.ece is None else f"{s.ece:.3f}"
        wrong = f"{s.confident_wrong}/{s.confident}"
        print(f"{name:<16}{s.n:>4}{s.accuracy:>10.3f}{s.coverage:>10.3f}{ece:>7}{wrong:>13}")
    return out


def confusions(persons: list[Person]) -> None:
    """Truth -> answer counts of the headline categories, for looking at failures."""
    for name in HEADLINE:
        pairs: Counter[tuple[str, str]] = Counter()
        wrong = []
        for p in persons:
            truth, dist = ROWS[name](p)
            if truth is None:
                continue
            value = max(dist, key=dist.__getitem__) if dist else "(none)"
            pairs[(truth, value)] += 1
            if value != truth:
                wrong.append(f"{p.name.removesuffix('.jpg')}={value}")
        cells = ", ".join(f"{t}->{v} {c}" for (t, v), c in sorted(pairs.items()))
        print(f"  {name}: {cells}")
        if wrong:
            print(f"    wrong: {' '.join(wrong)}")


# -- calibration ---------------------------------------------------------------------------------------
# Calibrated categories and the categories pooled into one fit (a dress's sleeves are judged like a top's).
CALIBRATED = {  # category -> the categories pooled into its fit
    "0.gender": ("0.gender",),
    "3.hair_length": ("3.hair_length",),
    "6.sleeve_length": ("6.sleeve_length", "5.sleeve_length"),
    "6.color": ("6.color",),
    "8.type": ("8.type",),
}


# Options that are kinds of one thing: the labeler first decides the kind of garment (trousers from the
# legs, shorts from the hem, skirt from the gap), then which trousers by colour; each step is calibrated.
FAMILIES = {"8.type": TROUSERS}
METHOD = "binned"  # the calibration shipped for round 0 (few bins with a minimum mass; see calibration.fit_binned)
REPEATS = 10  # random 5-fold splits the out-of-fold ECE is measured on


def calibrate(persons: list[Person], fitted_with: dict[str, str]) -> tuple[list[Person], list[Person], list]:
    """Cross-validated calibration per category: persons with out-of-fold calibrated answers, persons
    with in-sample calibrated answers (the calibration fitted on every item applied to the same items),
    and the calibrations fitted on every labelled answer (one entry per model version and category)."""
    import copy

    from annotate_anyone.annotation.calibration import cross_validated_calibration
    from annotate_anyone.annotation.dev_calibration import DevCalibration

    out = copy.deepcopy(persons)
    in_sample = copy.deepcopy(persons)
    entries = []
    for pooled in CALIBRATED.values():
        by_version: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for i, p in enumerate(persons):
            for cat in pooled:
                if cat in p.labels and cat in p.preds:
                    by_version[p.versions[cat]].append((i, cat))
        for version, items in by_version.items():
            if len(items) < 10:
                continue
            cv = cross_validated_calibration(
                [persons[i].preds[c] for i, c in items],
                [persons[i].labels[c] for i, c in items],
                methods=(METHOD,),
                repeats=REPEATS,
                families=FAMILIES.get(pooled[0]),
            )
            for (i, cat), dist in zip(items, cv.oof, strict=True):
                out[i].preds[cat] = dist
                in_sample[i].preds[cat] = cv.calibrator.calibrate(persons[i].preds[cat])
            entries += [
                DevCalibration(
                    model_version=version,
                    category=cat,
                    method=cv.calibrator.method,
                    params=cv.calibrator.params(),
                    n=cv.n,
                    accuracy=round(cv.accuracy, 4),
                    ece_before=round(cv.ece_before, 4),
                    ece=round(cv.ece, 4),
                    threshold=round(cv.threshold, 4),
                    confident=cv.confident,
                    confident_wrong=cv.confident_wrong,
                    fitted_with=fitted_with,
                    ece_in_sample=round(cv.ece_in_sample, 4),
                    ece_splits=[round(e, 4) for e in cv.ece_repeats],
                    confident_in_sample=cv.confident_in_sample,
                    confident_wrong_in_sample=cv.confident_wrong_in_sample,
                    ece_chance=round(cv.ece_chance, 4),
                    confident_pooled=cv.confident_pooled,
                    confident_wrong_pooled=cv.confident_wrong_pooled,
                )  # fmt: skip
                for cat in pooled
            ]
    return out, in_sample, entries


def print_calibrations(entries: list) -> None:
    print("fitted calibrations (ECE: 10 equal-width bins; in: fitted and measured on the same items; cv: 5-fold out")
    print(f"of fold, first split, then mean and range over {REPEATS} splits; chance: the mean ECE a perfectly")
    print("calibrated labeler would show with these out-of-fold confidences and this n; >=0.9 wrong: out of fold on")
    print(f"the first split, out of fold summed over the {REPEATS} splits, in sample)")
    print(
        f"{'calibration':<17}{'model':<21}{'method':<8}{'n':>4}{'acc':>7}{'ECE raw':>8}{'in':>7}{'cv':>7}"
        f"{'cv mean [range]':>22}{'chance':>7}{'>=0.9 wrong':>20}  bins (lower edge on the raw confidence: value)"
    )
    for e in entries:
        wrong = (f"{e.confident_wrong}/{e.confident} {e.confident_wrong_pooled}/{e.confident_pooled} "
                 f"{e.confident_wrong_in_sample}/{e.confident_in_sample}")  # fmt: skip
        splits = e.ece_splits or [e.ece]
        spread = f"{e.ece:.3f} [{min(splits):.3f}-{max(splits):.3f}]"
        bins = ""
        if e.method == "binned":
            bins = " ".join(
                f">={x:.3f}: {y:.3f}" for x, y in zip(e.params["knots_x"], e.params["knots_y"], strict=True)
            )
            if e.params.get("member_x"):
                inner = zip(e.params["member_x"], e.params["member_y"], strict=True)
                bins += "; within the family " + " ".join(f">={x:.3f}: {y:.3f}" for x, y in inner)
        eces = f"{e.ece_before:>8.3f}{e.ece_in_sample:>7.3f}{splits[0]:>7.3f}{spread:>22}{e.ece_chance:>7.3f}"
        head = f"{e.category:<17}{e.model_version[:20]:<21}{e.method:<8}{e.n:>4}{e.accuracy:>7.3f}"
        print(f"{head}{eces}{wrong:>20}  {bins}")


def coverage_table(persons: list[Person], calibrations: dict) -> None:
    from annotate_anyone.annotation.dev_calibration import NEEDS_PERSON, coverage
    from annotate_anyone.annotation.taxonomy import load_taxonomy

    answered: Counter[str] = Counter()
    versions: dict[str, str] = {}
    for p in persons:
        for cat, dist in p.preds.items():
            answered[cat] += max(dist, key=dist.__getitem__) != "n/a"
            versions.setdefault(cat, p.versions[cat])
    taxonomy = load_taxonomy()
    covered = coverage(taxonomy, versions, calibrations)
    print("coverage of the taxonomy (answered: dev-set persons given a value other than n/a)")
    print(f"{'category':<22}{'offline answer':<44}{'answered':>9}")
    for cat, cal in covered.items():
        if cal is not None:
            how = f"calibrated ({cal.method}, n={cal.n}, ECE {cal.ece:.3f})"
        elif cat in versions:
            how = f"{NEEDS_PERSON} (uncalibrated)"
        else:
            how = NEEDS_PERSON
        print(f"{cat:<22}{how:<44}{answered[cat]:>9}")
    n_cal = sum(c is not None for c in covered.values())
    uncalibrated = sum(c in versions for c in covered) - n_cal
    print(f"{n_cal} of {len(covered)} categories answered offline with a calibration; {len(covered) - n_cal} "
          f"need a model or a person ({uncalibrated} of them answered, uncalibrated)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dev-set", required=True, type=Path, help="the parsing-dev folder (holding images/)")
    ap.add_argument("--people-coco", type=Path, default=ROOT / "tests" / "data" / "people-coco")
    ap.add_argument("--labels", type=Path, default=ROOT / "tests" / "data" / "labels" / "dev_set.json")
    ap.add_argument("--source", action="append", help="only these sources (people-coco, parsing-dev, package)")
    ap.add_argument("--details", action="store_true", help="print confusions and the wrong photos")
    ap.add_argument("--fit-calibration", type=Path, help="write the fitted calibrations here (JSON)")
    ap.add_argument("--reference-parsing", action="store_true", help="parsing-dev only, with the reference maps")
    args = ap.parse_args()

    from annotate_anyone.annotation.dev_calibration import dev_calibrations, write_calibrations

    rows = json.loads(args.labels.read_text())["photos"]
    if args.reference_parsing:
        args.source = ["parsing-dev"]
    if args.source:
        rows = [r for r in rows if r["source"] in args.source]
    persons, missing, ms, parser = collect(rows, args.people_coco, args.dev_set, args.reference_parsing)
    by_source = Counter(p.source for p in persons)
    print(f"dev set: {len(persons)} photos ({', '.join(f'{k} {v}' for k, v in sorted(by_source.items()))}), "
          f"parser {'reference maps' if args.reference_parsing else parser}")  # fmt: skip
    if missing:
        print(f"not found ({len(missing)}, skipped): {' '.join(missing)}")
    lost = [p.name for p in persons if not p.found]
    if lost:
        print(f"no person detected ({len(lost)}, every category scored wrong): {' '.join(lost)}")
    print("ms/photo: " + ", ".join(f"{k} {v:.0f}" for k, v in ms.items()))
    shipped = dev_calibrations()
    stale = {e.fitted_with.get("parser") for e in shipped.values()} - {parser}
    if shipped and stale:
        print(f"note: the shipped calibration was fitted with parser {', '.join(sorted(map(str, stale)))}")
    print()
    print_scores(persons, "raw confidence (the labelers' own)")
    print()
    calibrated, in_sample, entries = calibrate(persons, {"parser": parser, "dev_set": "tests/data/labels/dev_set.json"})
    print_scores(in_sample, f"calibrated in sample ({METHOD}, fitted on every item and measured on the same items)")
    print()
    scores = print_scores(calibrated, f"calibrated out of fold ({METHOD}, 5-fold cross-validation, first split)")
    if args.details:
        confusions(calibrated)
    print()
    print_calibrations(entries)
    if args.fit_calibration:
        about = {
            "about": "Round-0 calibration of the packaged labelers on the labelled dev set (written by "
            "bench/labels.py --fit-calibration). ECE: 10 equal-width bins. ece: out of fold (5-fold), the mean "
            "over ten random splits, ece_splits: each split's; confident, confident_wrong: out of fold, first "
            "split; *_pooled: out of fold summed over the ten splits; ece_in_sample, "
            "*_in_sample: fitted and measured on the same items; ece_chance: the mean ECE of a perfectly "
            "calibrated labeler with the same out-of-fold confidences and n.",
        }
        write_calibrations(args.fit_calibration, entries, about)
        print(f"wrote {len(entries)} calibrations to {args.fit_calibration}")
    print()
    coverage_table(persons, {(e.model_version, e.category): e for e in entries})
    print()
    worst = min(HEADLINE, key=lambda k: scores[k].accuracy if k in scores else 0.0)
    acc = scores[worst].accuracy if worst in scores else 0.0
    print(f"worst of {', '.join(HEADLINE)}: {worst} {acc:.3f}")
    print(f"ratio {acc / TARGET:.3f}")


if __name__ == "__main__":
    main()
