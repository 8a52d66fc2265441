"""The offline human parser against a published parser's maps: per-region IoU, mIoU and ms/image.

The dev set is a folder with ``images/<name>.jpg`` and ``atr/<name>.png`` (ATR ids, 255 = no ATR
equivalent, ignored). It is read from the path given on the command line and never copied.

Per photo: the project's default person backend finds the people (the most prominent one is parsed),
a ``PersonView`` is built the way the annotate job builds it (stored row: box, keypoints, faces, mask
in 0..1), and the parser paints its ATR map. Intersections and unions are summed over the whole set
before dividing (so big photos weigh more than small ones), for the 18 ATR labels and for five coarse
regions:

* background: background;
* head: hat, hair, sunglasses, face (SCHP on ATR paints neck skin as face; the LIP-based VITON
  references leave it background);
* upper body: upper-clothes, dress, scarf, left-arm, right-arm. A dress starts at the shoulders
  and the references paint it as one region from the neckline to the hem, with no waist line to
  split it at; it counts as upper body (the garment worn on the torso) so that a dress and a top
  are the same coarse region, while the bare legs below its hem stay lower body;
* lower body: skirt, pants, belt, left-leg, right-leg;
* feet: left-shoe, right-shoe.

A bag is carried, not a part of the body: reference bag pixels are left out of the coarse scores
(like 255), and a bag predicted elsewhere counts as wrong. The 18-label table scores bags as such.

The 18-label mIoU averages the labels present in the references. A second column scores a sketch
that uses only the pose and the mask (head above the shoulders, torso and arms to the hips, legs to
the ankles, feet below), the floor any parser should beat.

Prints a table and, last, ``ratio <coarse mIoU / 0.75>``.

    python bench/parsing.py --dev-set PATH [--limit N] [--overlays DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

TARGET = 0.75
ACCESSORY = 5  # coarse index of what is no body region (a bag)
COARSE = {
    "background": ("background",),
    "head": ("hat", "hair", "sunglasses", "face"),
    "upper body": ("upper-clothes", "dress", "scarf", "left-arm", "right-arm"),
    "lower body": ("skirt", "pants", "belt", "left-leg", "right-leg"),
    "feet": ("left-shoe", "right-shoe"),
}
IGNORE = 255


def coarse_lut() -> np.ndarray:
    """ATR id -> coarse region index (0..4, bag -> ACCESSORY); 255 stays 255."""
    from annotate_anyone.annotation.taxonomy import ATR

    lut = np.full(256, IGNORE, np.uint8)
    lut[ATR["bag"]] = ACCESSORY
    for region, names in enumerate(COARSE.values()):
        for name in names:
            lut[ATR[name]] = region
    return lut


def sketch_parse(shape: tuple[int, int], view) -> np.ndarray:
    """The pose-plus-mask sketch: split the mask by the shoulder, hip and ankle lines, nothing else."""
    from annotate_anyone.annotation.parsing import base as kp
    from annotate_anyone.annotation.taxonomy import ATR

    out = np.zeros(shape, np.uint8)
    if view.mask is None:
        return out
    fg = np.asarray(view.mask) > 0.5
    if view.keypoints is None:
        out[fg] = ATR["upper-clothes"]
        return out
    k = view.keypoints
    shoulder_y = (k[kp.L_SHOULDER, 1] + k[kp.R_SHOULDER, 1]) / 2
    nose_y = k[kp.NOSE, 1]
    neck_y = nose_y + 0.6 * (shoulder_y - nose_y)
    hip_y = (k[kp.L_HIP, 1] + k[kp.R_HIP, 1]) / 2
    ankle_y = (k[kp.L_ANKLE, 1] + k[kp.R_ANKLE, 1]) / 2
    heel_y = (k[kp.L_HEEL, 1] + k[kp.R_HEEL, 1]) / 2
    feet_y = ankle_y - 0.3 * max(heel_y - ankle_y, 0.0) - 0.02 * (ankle_y - hip_y)
    ys = np.arange(shape[0])[:, None]
    out[fg & (ys < neck_y)] = ATR["face"]
    out[fg & (ys >= neck_y) & (ys < hip_y)] = ATR["upper-clothes"]
    out[fg & (ys >= hip_y) & (ys < feet_y)] = ATR["pants"]
    out[fg & (ys >= feet_y)] = ATR["left-shoe"]
    return out


class Scores:
    """A confusion matrix over the 18 ATR ids, summed over images (reference 255 ignored)."""

    def __init__(self) -> None:
        self.conf = np.zeros((18, 18), np.int64)

    def add(self, pred: np.ndarray, ref: np.ndarray) -> None:
        keep = ref != IGNORE
        self.conf += np.bincount(ref[keep].astype(np.int64) * 18 + pred[keep], minlength=324).reshape(18, 18)

    @staticmethod
    def _iou(conf: np.ndarray) -> np.ndarray:
        inter = np.diag(conf).astype(np.float64)
        union = conf.sum(0) + conf.sum(1) - inter
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)

    def label_iou(self) -> np.ndarray:
        return self._iou(self.conf)

    def coarse_iou(self, lut: np.ndarray) -> np.ndarray:
        groups = lut[:18].astype(np.int64)
        coarse = np.zeros((ACCESSORY + 1, ACCESSORY + 1), np.int64)
        np.add.at(coarse, (groups[:, None].repeat(18, 1), groups[None, :].repeat(18, 0)), self.conf)
        kept = coarse[:ACCESSORY]  # reference bags dropped; a predicted bag is wrong wherever it is
        inter = np.diag(kept[:, :ACCESSORY]).astype(np.float64)
        union = kept.sum(1) + kept[:, :ACCESSORY].sum(0) - inter
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)

    def present(self) -> np.ndarray:
        return self.conf.sum(1) > 0


def person_view(scene, size: tuple[int, int]):
    """The most prominent person as the annotate job sees it (stored row -> PersonView)."""
    from annotate_anyone.annotation.parsing import PersonView

    if not scene.persons:
        return None
    p = scene.persons[0]
    keypoints = None if p.keypoints is None else [[float(x), float(y), float(v)] for x, y, v in p.keypoints]
    mask = None if p.mask is None else (np.asarray(p.mask) > 127).astype(np.float32)
    return PersonView.from_row(list(p.box), keypoints, [list(b) for b in p.face_boxes], mask, size)


def overlay(rgb: np.ndarray, pred: np.ndarray, ref: np.ndarray, path: Path) -> None:
    """Photo | prediction | reference, side by side (for looking at failures; written outside the repo)."""
    from PIL import Image

    palette = np.random.RandomState(3).randint(40, 255, (256, 3)).astype(np.uint8)
    palette[0] = 0
    palette[IGNORE] = 255
    Image.fromarray(np.hstack([rgb, palette[pred], palette[ref]])).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dev-set", required=True, type=Path, help="folder with images/ and atr/")
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos (0 = all)")
    ap.add_argument("--parser", default="geometric", help="parser name for make_parser")
    ap.add_argument("--overlays", type=Path, default=None, help="write photo|ours|reference PNGs here")
    args = ap.parse_args()

    from PIL import Image

    from annotate_anyone.annotation.parsing import make_parser
    from annotate_anyone.annotation.taxonomy import ATR_LABELS
    from annotate_anyone.perception import person_backend
    from annotate_anyone.settings import get_settings

    images = sorted((args.dev_set / "images").glob("*.jpg"))
    if not images:
        raise SystemExit(f"no images/*.jpg under {args.dev_set}")
    if args.limit:
        images = images[: args.limit]
    backend = person_backend(cache_dir=get_settings().model_cache_dir)
    parser = make_parser(args.parser)
    lut = coarse_lut()
    ours, sketch = Scores(), Scores()
    subsets: dict[str, Scores] = {}  # by name prefix: the references come from different parsers
    ms_detect: list[float] = []
    ms_parse: list[float] = []
    missed: list[str] = []
    per_image: list[tuple[float, str]] = []
    if args.overlays:
        args.overlays.mkdir(parents=True, exist_ok=True)
    for path in images:
        ref_path = args.dev_set / "atr" / f"{path.stem}.png"
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        ref = np.asarray(Image.open(ref_path))
        if ref.shape != rgb.shape[:2]:
            raise SystemExit(f"{ref_path.name}: map {ref.shape} does not match photo {rgb.shape[:2]}")
        t0 = time.perf_counter()
        scene = backend.detect(Image.fromarray(rgb))
        ms_detect.append((time.perf_counter() - t0) * 1000)
        view = person_view(scene, (rgb.shape[1], rgb.shape[0]))
        if view is None:
            missed.append(path.stem)
            pred = np.zeros(ref.shape, np.uint8)
            sketch.add(pred, ref)
        else:
            t1 = time.perf_counter()
            pred = parser.parse(rgb, view)
            ms_parse.append((time.perf_counter() - t1) * 1000)
            sketch.add(sketch_parse(ref.shape, view), ref)
        ours.add(pred, ref)
        subsets.setdefault(path.stem.split("_")[0], Scores()).add(pred, ref)
        one = Scores()
        one.add(pred, ref)
        per_image.append((float(np.nanmean(one.coarse_iou(lut))), path.stem))
        if args.overlays:
            overlay(rgb, pred, ref, args.overlays / f"{path.stem}.png")

    print(f"dev set: {len(images)} photos, person backend {backend.name}, parser {parser.model_version}")
    if missed:
        print(f"no person found (scored as all background): {', '.join(missed)}")
    print()
    print(f"{'coarse region':<16}{'ours':>8}{'sketch':>8}")
    c_ours, c_sketch = ours.coarse_iou(lut), sketch.coarse_iou(lut)
    for i, region in enumerate(COARSE):
        print(f"{region:<16}{c_ours[i]:>8.3f}{c_sketch[i]:>8.3f}")
    coarse_miou = float(np.nanmean(c_ours))
    print(f"{'coarse mIoU':<16}{coarse_miou:>8.3f}{float(np.nanmean(c_sketch)):>8.3f}")
    print()
    print(f"{'ATR label':<16}{'ours':>8}{'sketch':>8}{'ref px':>10}")
    l_ours, l_sketch, present = ours.label_iou(), sketch.label_iou(), ours.present()
    for i, name in enumerate(ATR_LABELS):
        if present[i]:
            print(f"{name:<16}{l_ours[i]:>8.3f}{l_sketch[i]:>8.3f}{int(ours.conf[i].sum()):>10}")
    m_ours, m_sketch = float(np.nanmean(l_ours[present])), float(np.nanmean(l_sketch[present]))
    print(f"{'18-label mIoU':<16}{m_ours:>8.3f}{m_sketch:>8.3f}")
    print()
    for name, scores in sorted(subsets.items()):
        regions = " ".join(f"{r} {v:.2f}" for r, v in zip(COARSE, scores.coarse_iou(lut), strict=True))
        print(f"subset {name}: coarse mIoU {float(np.nanmean(scores.coarse_iou(lut))):.3f} ({regions})")
    worst = ", ".join(f"{name} {score:.2f}" for score, name in sorted(per_image)[:5])
    print(f"worst photos (coarse mIoU): {worst}")
    print(f"ms/image: person detection {np.mean(ms_detect):.1f}, parsing {np.mean(ms_parse or [0.0]):.1f}")
    print(f"ratio {coarse_miou / TARGET:.3f}")


if __name__ == "__main__":
    main()
