"""BRISQUE: the ``brisque`` package's own scorer against our vectorised one, on real photos.

    python bench/brisque_speed.py [--photos DIR] [--repeat 3]

Photos: ``--photos`` (default: the repository's COCO fixtures) plus the package photos (see
``bench/photos.py``). Both scorers read the same 512 px copy of each photo (Pillow's bicubic, as the
quality stage does), one thread each (OpenCV set to one thread). The table gives both scores per
photo; the summary gives CPU ms/image of each (best of ``--repeat`` passes), Spearman's rank correlation
of the scores and their largest absolute difference. Last line: ``ratio <old ms / new ms>``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class PackageBrisque:
    """``brisque.BRISQUE`` as shipped, with one numpy-2 fix: its features are 1-element arrays where
    it means scalars, which numpy 2 refuses to turn into floats; they are flattened before scaling."""

    def __init__(self) -> None:
        from brisque import BRISQUE

        class _Brisque(BRISQUE):
            def calculate_brisque_features(self, image: Any, kernel_size: int = 7, sigma: float = 7 / 6) -> Any:
                features = super().calculate_brisque_features(image, kernel_size=kernel_size, sigma=sigma)
                return np.array([float(np.asarray(f, dtype=np.float64).reshape(-1)[0]) for f in features])

        self._model = _Brisque(url=False)

    def score(self, rgb: Any) -> float:
        with np.errstate(all="ignore"):
            return float(self._model.score(np.asarray(rgb)))


def _best_ms(score: Any, images: list, repeat: int) -> tuple[float, list[float]]:
    best, scores = float("inf"), []
    for _ in range(repeat):
        start = time.process_time()  # CPU time of the process: the machine may be shared
        scores = [score(im) for im in images]
        best = min(best, 1000 * (time.process_time() - start) / len(images))
    return best, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=None, help="folder of photos (default: tests/data/people-coco)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import cv2
    from photos import photo_files
    from PIL import Image
    from scipy.stats import spearmanr

    from annotate_anyone.pipeline.brisque import BRISQUE_SIDE, BrisqueScorer
    from annotate_anyone.pipeline.decode import downscale

    cv2.setNumThreads(1)
    files = photo_files(args.photos)
    images = [downscale(Image.open(io.BytesIO(data)).convert("RGB"), BRISQUE_SIDE) for data in files.values()]
    old, new = PackageBrisque(), BrisqueScorer()
    new.score(images[0])  # warm up (lookup tables, first OpenCV calls)
    old_ms, old_scores = _best_ms(old.score, images, args.repeat)
    new_ms, new_scores = _best_ms(new.score, images, args.repeat)
    diff = np.abs(np.array(old_scores) - np.array(new_scores))
    print(f"\n| {'photo':32} | {'size':>9} | {'package':>8} | {'ours':>8} | {'diff':>6} |")
    print(f"|{'-' * 34}|{'-' * 11}|{'-' * 10}|{'-' * 10}|{'-' * 8}|")
    for (name, _), image, a, b, d in zip(files.items(), images, old_scores, new_scores, diff, strict=True):
        size = f"{image.width}x{image.height}"
        print(f"| {name:32} | {size:>9} | {a:8.2f} | {b:8.2f} | {d:6.3f} |")
    rho = spearmanr(old_scores, new_scores).statistic
    print(f"\n{len(images)} photos at {BRISQUE_SIDE} px, one thread, best of {args.repeat} passes")
    print(f"| {'scorer':34} | {'CPU ms/image':>12} |")
    print(f"|{'-' * 36}|{'-' * 14}|")
    print(f"| {'brisque package (scipy)':34} | {old_ms:12.2f} |")
    print(f"| {'ours (OpenCV blurs, lookup table)':34} | {new_ms:12.2f} |")
    print(f"\nSpearman rank correlation {rho:.4f}; largest absolute difference {diff.max():.4f}")
    print(f"ratio {old_ms / new_ms:.2f}")


if __name__ == "__main__":
    main()
