"""``annotate-anyone flywheel report|retrain|finetune|versions``: reports, learned heads, VLM fine-tuning."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from annotate_anyone.settings import get_settings

flywheel_app = typer.Typer(help="The flywheel: rounds, reports, learned heads, VLM fine-tuning.", no_args_is_help=True)
console = Console()


@flywheel_app.command("report")
def report(
    round_: Annotated[int | None, typer.Option("--round", help="Round number (default: latest)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One compact JSON object (default: pretty-printed)")] = False,
) -> None:
    """Labels auto-accepted vs routed, human answers, per-category accuracy, expected error, hours saved."""
    from annotate_anyone.annotation.flywheel import flywheel_report
    from annotate_anyone.db.base import session_scope

    settings = get_settings()
    with session_scope(settings.db_url) as session:
        out = json.dumps(flywheel_report(session, round_, config=settings.annotation), default=str)
    typer.echo(out) if as_json else console.print_json(out)


@flywheel_app.command("retrain")
def retrain() -> None:
    """Recalibrate on human-verified labels and retrain the learned heads (a new model version)."""
    from annotate_anyone.annotation.service import recalibrate, retrain_heads
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.storage import open_store

    settings = get_settings()
    with session_scope(settings.db_url) as session:
        recalibrate(session, config=settings.annotation)
        console.print_json(
            json.dumps(retrain_heads(session, open_store(settings=settings), settings=settings), default=str)
        )


@flywheel_app.command("finetune")
def finetune(
    steps: Annotated[int, typer.Option(help="Optimiser steps")] = 40,
    lr: Annotated[float, typer.Option(help="Learning rate (AdamW)")] = 5e-3,
    rank: Annotated[int, typer.Option(help="LoRA rank")] = 8,
    batch_size: Annotated[int, typer.Option(help="Human answers per step")] = 8,
    targets: Annotated[
        str | None, typer.Option(help="Comma-separated layer names in the language model (default: per family)")
    ] = None,
    projector: Annotated[bool, typer.Option(help="Also adapt the vision-to-text projector")] = True,
    min_labels: Annotated[int, typer.Option(help="Human answers needed before training")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    force: Annotated[bool, typer.Option(help="Train even when the answers are those of the newest version")] = False,
) -> None:
    """Fine-tune the configured VLM (AA_ANNOTATION__VLM_CHECKPOINT) on the human answers: a new version (LoRA)."""
    from annotate_anyone.annotation.finetune import FinetuneOptions, finetune_vlm
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.storage import open_store

    settings = get_settings()
    layers = tuple(t.strip() for t in targets.split(",") if t.strip()) if targets else None
    opts = FinetuneOptions(rank=rank, alpha=2 * rank, lr=lr, steps=steps, batch_size=batch_size, seed=seed,
                           projector=projector, min_labels=min_labels, targets=layers)  # fmt: skip
    with session_scope(settings.db_url) as session:
        result = finetune_vlm(session, open_store(settings=settings), settings=settings, options=opts, force=force)
    console.print_json(json.dumps(result, default=str))
    if result["version"] is None:
        raise typer.Exit(1)


@flywheel_app.command("versions")
def versions() -> None:
    """The fine-tuned VLM versions (pick one with AA_ANNOTATION__VLM_VERSION=<version>, or base)."""
    from annotate_anyone.annotation.flywheel import vlm_versions
    from annotate_anyone.db.base import session_scope

    settings = get_settings()
    with session_scope(settings.db_url) as session:
        console.print_json(json.dumps(vlm_versions(session), default=str))
