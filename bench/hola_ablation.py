"""HOLA ablation: the same tiny model trained N steps with and without HOLA; attention alignment of both.

For each seed: a tiny SD1.5-shaped pipeline and a synthetic demo release (training set plus a
held-out evaluation set) are built, the same config is trained twice (``hola_weight`` 1 and 0),
and each final UNet is scored with ``train_eval`` on the held-out set: the share of each group's
attention mass inside its mask, IoU at 0.5 of the peak, and the chance level (mask area share).
The last line is ``ratio <HOLA share / plain share>`` (mean over seeds).

    python bench/hola_ablation.py                      # 256 px, 64 images, 1500 steps, seeds 0 1 2
    python bench/hola_ablation.py --steps 200 --size 128 --seeds 0   # a quick look
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

CONFIG = """
model: {{kind: {kind}, path: {model}}}
data:
  index: {index}
  buckets: {{min_side: {size}, max_side: {size}, step: 64, max_area: {area}, max_ratio: 2}}
output_dir: {out}
seed: {seed}
batch_size: {batch}
grad_accum: 1
max_steps: {steps}
checkpoint_every: {steps}
validate_every: null
ema_decay: null
noise_offset: 0.05
hola_weight: {weight}
optim: {{lr: {lr}}}
resume: null
"""


def prepare(args: argparse.Namespace, seed: int, root: Path) -> None:
    """The seed's tiny pipeline, training release and held-out release under ``root``."""
    from annotate_anyone.daring.synthetic_release import build_demo_release
    from annotate_anyone.daring.tiny_pipelines import build_tiny_pipeline

    build_tiny_pipeline(root / "model", args.kind, seed=seed)
    build_demo_release(root / "train", count=args.samples, sizes=((args.size, args.size),), seed=seed)
    build_demo_release(root / "eval", count=args.eval_samples, sizes=((args.size, args.size),), seed=seed + 1000)


def train_and_score(args: argparse.Namespace, seed: int, root: Path, name: str) -> dict:
    """Train one arm (``plain``: HOLA weight 0, ``hola``: 1) and score its final UNet on the held-out release."""
    import torch

    from annotate_anyone.daring.evaluate import train_eval
    from annotate_anyone.daring.train import train

    torch.set_num_threads(args.threads)
    weight = 1.0 if name == "hola" else 0.0
    cfg = root / f"{name}.yaml"
    cfg.write_text(
        CONFIG.format(
            kind=args.kind,
            model=root / "model",
            index=root / "train" / "index.parquet",
            size=args.size,
            area=args.size**2,
            out=root / name,
            seed=seed,
            batch=args.batch,
            steps=args.steps,
            weight=weight,
            lr=args.lr,
        )  # fmt: skip
    )
    started = time.perf_counter()
    checkpoint = train(cfg, plain=weight == 0)
    seconds = time.perf_counter() - started
    report = train_eval(checkpoint, root / "eval" / "index.parquet", samples=args.eval_samples, seed=0, use_ema=False)
    return report | {"train_seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", default="sd15", choices=["sd15", "sdxl"])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=64, help="training images")
    p.add_argument("--eval-samples", type=int, default=8, help="held-out images scored")
    p.add_argument("--size", type=int, default=256, help="image side (attention maps are size/16)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per arm")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="arms trained at once")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        roots = {seed: Path(tmp) / f"seed{seed}" for seed in args.seeds}
        for seed, root in roots.items():
            prepare(args, seed, root)
        arms = [(seed, name) for seed in args.seeds for name in ("plain", "hola")]
        # each arm in its own process (spawned: no torch state shared), --jobs at a time
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {arm: pool.submit(train_and_score, args, arm[0], roots[arm[0]], arm[1]) for arm in arms}
            reports = {arm: future.result() for arm, future in futures.items()}
    results = [(seed, {name: reports[(seed, name)] for name in ("plain", "hola")}) for seed in args.seeds]

    print(f"model=tiny-{args.kind} steps={args.steps} batch={args.batch} lr={args.lr} image={args.size}px "
          f"train={args.samples} eval={args.eval_samples} (held out) seeds={args.seeds}")  # fmt: skip
    print(f"{'seed':<6}{'mode':<7}{'share':>8}{'IoU':>8}{'chance':>8}{'pairs':>7}{'train s':>9}")
    for seed, reports in results:
        for mode in ("plain", "hola"):
            o = reports[mode]["overall"]
            print(f"{seed:<6}{mode:<7}{o['share']:>8.3f}{o['iou']:>8.3f}{o['chance']:>8.3f}{o['pairs']:>7}"
                  f"{reports[mode]['train_seconds']:>9.1f}")  # fmt: skip
    groups = sorted(results[0][1]["hola"]["groups"])
    print(f"\nper group, mean over seeds\n{'group':<13}{'plain share':>12}{'HOLA share':>12}{'plain IoU':>11}"
          f"{'HOLA IoU':>10}{'chance':>8}")  # fmt: skip
    for g in groups:

        def mean(mode: str, key: str, g: str = g) -> float:
            return statistics.mean(r[mode]["groups"][g][key] for _, r in results if g in r[mode]["groups"])

        print(f"{g:<13}{mean('plain', 'share'):>12.3f}{mean('hola', 'share'):>12.3f}{mean('plain', 'iou'):>11.3f}"
              f"{mean('hola', 'iou'):>10.3f}{mean('hola', 'chance'):>8.3f}")  # fmt: skip
    plain = statistics.mean(r["plain"]["overall"]["share"] for _, r in results)
    hola = statistics.mean(r["hola"]["overall"]["share"] for _, r in results)
    chance = statistics.mean(r["hola"]["overall"]["chance"] for _, r in results)
    print(f"\nmean share: plain {plain:.3f}, HOLA {hola:.3f}, chance {chance:.3f} over {len(results)} seeds")
    print(f"ratio {hola / plain:.3f}")


if __name__ == "__main__":
    main()
