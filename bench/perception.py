"""Milliseconds per image of each perception/annotation step at about 1024 px, on one core and on two.

Images: skimage's astronaut, matplotlib's Grace Hopper and the COCO people fixtures in tests/data,
resized so the long side is ``--side`` px. Steps, per image (first person only):

* pose+mask: the MediaPipe backend (pose with segmentation, two face models);
* parsing: the geometric parser (mask + pose + face), and a tiny random Segformer (batched crops);
* labelers: the offline labelers (all categories), handmade features, the tiny random BLIP-2
  scoring every option of every question in one batched pass.

"One core": one worker process, one torch thread. "Two cores": two worker processes, one thread each,
splitting the images. Throughput is reported as wall milliseconds per image.

Prints a table and, last, ``ratio <two-core throughput / one-core throughput>`` of the whole chain.

    python bench/perception.py --repeat 3
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np

STEPS = ("pose+mask", "parsing (geometric)", "parsing (tiny segformer)", "offline labelers", "features",
         "vlm scoring (tiny blip-2)")  # fmt: skip
_STATE: dict = {}


def load_images(side: int) -> list[np.ndarray]:
    from matplotlib.cbook import get_sample_data
    from PIL import Image
    from skimage.data import astronaut

    images = [Image.fromarray(astronaut()), Image.open(get_sample_data("grace_hopper.jpg", asfileobj=False))]
    folder = Path(__file__).resolve().parents[1] / "tests" / "data" / "people-coco"
    images += [Image.open(p) for p in sorted(folder.glob("*.jpg"))]
    out = []
    for im in images:
        im = im.convert("RGB")
        scale = side / max(im.size)
        out.append(np.asarray(im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC)))
    return out


def _init(ckpts: dict[str, str]) -> None:
    import torch

    torch.set_num_threads(1)
    from annotate_anyone.annotation.labelers.offline import OfflineLabeler
    from annotate_anyone.annotation.labelers.vlm import VLMLabeler
    from annotate_anyone.annotation.parsing import make_parser
    from annotate_anyone.annotation.taxonomy import load_taxonomy
    from annotate_anyone.perception.mediapipe import MediaPipeBackend

    _STATE.update(
        backend=MediaPipeBackend(peel=False),
        geometric=make_parser("geometric"),
        segformer=make_parser("segformer", checkpoint=ckpts["segformer"]),
        offline=OfflineLabeler(),
        vlm=VLMLabeler.from_checkpoint(ckpts["blip2"]),
        cats=load_taxonomy().categories(),
    )


def _work(rgb: np.ndarray) -> dict[str, float]:
    from PIL import Image

    from annotate_anyone.annotation.features import handmade_features
    from annotate_anyone.annotation.labelers.base import PersonContext
    from annotate_anyone.annotation.parsing import PersonView

    st, t = _STATE, {}
    t0 = time.perf_counter()
    scene = st["backend"].detect(Image.fromarray(rgb))
    t["pose+mask"] = time.perf_counter() - t0
    if not scene.persons:
        return t
    det = scene.persons[0]
    view = PersonView(det.box, det.keypoints, None if det.mask is None else det.mask / 255.0, list(det.face_boxes))
    t0 = time.perf_counter()
    label_map = st["geometric"].parse(rgb, view)
    t["parsing (geometric)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    st["segformer"].parse_many(rgb, [view])
    t["parsing (tiny segformer)"] = time.perf_counter() - t0
    ctx = PersonContext(rgb, view, label_map, st["geometric"].labels_supported)
    t0 = time.perf_counter()
    st["offline"].label(ctx, st["cats"])
    t["offline labelers"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    handmade_features(ctx)
    t["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    st["vlm"].label(ctx, st["cats"])
    t["vlm scoring (tiny blip-2)"] = time.perf_counter() - t0
    return t


def run(images: list[np.ndarray], workers: int, ckpts: dict[str, str]) -> tuple[float, dict[str, float]]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init, initargs=(ckpts,)) as pool:
        pool.map(_work, images[:workers])  # warm up every worker
        start = time.perf_counter()
        results = pool.map(_work, images, chunksize=1)
        wall = time.perf_counter() - start
    per_step = {s: 1000 * float(np.mean([r[s] for r in results if s in r])) for s in STEPS}
    return 1000 * wall / len(images), per_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2, help="how many times the image set is processed")
    args = ap.parse_args()

    from annotate_anyone.annotation.tiny_checkpoints import build_tiny_blip2, build_tiny_segformer

    tmp = tempfile.mkdtemp(prefix="aa-perception-")
    ckpts = {"blip2": str(build_tiny_blip2(os.path.join(tmp, "blip2"))),
             "segformer": str(build_tiny_segformer(os.path.join(tmp, "segformer")))}  # fmt: skip
    images = load_images(args.side) * args.repeat
    one_wall, one = run(images, 1, ckpts)
    two_wall, two = run(images, 2, ckpts)
    print(f"{len(images)} images, long side {args.side} px, {os.cpu_count()} CPUs")
    print("| step | ms/image, 1 core | ms/image per worker, 2 cores |")
    print("|---|---|---|")
    for s in STEPS:
        print(f"| {s} | {one[s]:.1f} | {two[s]:.1f} |")
    print(f"| whole chain, wall ms per image | {one_wall:.1f} | {two_wall:.1f} |")
    print(f"ratio {one_wall / two_wall:.2f}")


if __name__ == "__main__":
    main()
