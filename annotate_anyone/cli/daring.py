"""``annotate-anyone train|train-eval|generate``: the bundled Daring trainer (thin over annotate_anyone.daring)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    """Add the trainer's commands to the main app."""
    app.command("train")(train)
    app.command("train-eval")(train_eval)
    app.command("generate")(generate)


def train(
    config: Annotated[Path, typer.Argument(help="Training config (YAML or TOML); see daring/config.py")],
    plain: Annotated[bool, typer.Option(help="Noise loss only (no HOLA), for ablations")] = False,
) -> None:
    """Fine-tune a diffusion UNet on a release with the HOLA loss.

    Data-parallel under a launcher: ``accelerate launch --multi_gpu --num_processes N $(which annotate-anyone)
    train CONFIG`` (see the README for nodes and CPU).
    """
    from annotate_anyone.daring.train import train as run

    console.print(f"last checkpoint: {run(config, plain=plain)}")


def train_eval(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint folder (…/checkpoints/step-N)")],
    release: Annotated[Path, typer.Argument(help="A release's index.parquet, or a materialized release folder")],
    samples: Annotated[int, typer.Option(help="Samples to score")] = 16,
    threshold: Annotated[float, typer.Option(help="Attention threshold for IoU")] = 0.5,
) -> None:
    """Attention alignment: share of each group's attention inside its mask, and IoU, per group and overall."""
    from annotate_anyone.daring.evaluate import train_eval as run

    data_root = release if release.is_dir() else release.parent
    index = release / "index.parquet" if release.is_dir() else release
    result = run(checkpoint, index, data_root=data_root, samples=samples, threshold=threshold)
    console.print_json(json.dumps(result, default=str))


def generate(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint folder")],
    prompt: Annotated[str, typer.Argument(help="Text prompt")],
    out: Annotated[Path, typer.Argument(help="Output PNG")],
    steps: Annotated[int, typer.Option()] = 30,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Generate an image from a prompt with a trained checkpoint."""
    from annotate_anyone.daring.generate import generate as run

    console.print(f"wrote {run(checkpoint, prompt, out, steps=steps, seed=seed)}")
