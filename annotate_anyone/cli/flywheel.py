"""``annotate-anyone annotate`` (one flywheel round) and ``annotate-anyone flywheel report``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from annotate_anyone.settings import get_settings

flywheel_app = typer.Typer(help="The flywheel: rounds, reports, learned heads.", no_args_is_help=True)
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
        out = json.dumps(flywheel_report(session, round_, settings=settings), default=str)
    typer.echo(out) if as_json else console.print_json(out)


@flywheel_app.command("retrain")
def retrain() -> None:
    """Recalibrate on human-verified labels and retrain the learned heads (a new model version)."""
    from annotate_anyone.annotation.service import recalibrate, retrain_heads
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.storage import open_store

    settings = get_settings()
    with session_scope(settings.db_url) as session:
        recalibrate(session, settings=settings)
        console.print_json(
            json.dumps(retrain_heads(session, open_store(settings=settings), settings=settings), default=str)
        )
