"""``annotate-anyone review push|sync|status``: thin commands over :mod:`annotate_anyone.review.service`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

review_app = typer.Typer(
    help="Human review in Label Studio: push tasks, sync answers, show status.", no_args_is_help=True
)
console = Console()


@review_app.command("push")
def push(
    kind: Annotated[str, typer.Option(help="attributes, parsing or box")] = "attributes",
    limit: Annotated[int | None, typer.Option(min=1, help="push at most this many tasks")] = None,
) -> None:
    """Push queued review tasks (batched, most uncertain first, gold mixed in)."""
    from dataclasses import asdict

    from annotate_anyone.review.service import push_tasks
    from annotate_anyone.settings import get_settings

    console.print_json(json.dumps(asdict(push_tasks(get_settings(), kind=kind, limit=limit))))


@review_app.command("sync")
def sync(
    full: Annotated[bool, typer.Option("--full", help="also find tasks deleted in Label Studio")] = False,
) -> None:
    """Apply webhook events, reconcile answers from Label Studio and flag annotators below the gold bar."""
    from annotate_anyone.review.service import sync_review
    from annotate_anyone.settings import get_settings

    console.print_json(json.dumps(sync_review(get_settings(), full=full), default=str))


@review_app.command("status")
def status(
    annotators: Annotated[bool, typer.Option("--annotators", help="per-annotator stats too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One compact JSON object (default: pretty-printed)")] = False,
) -> None:
    """Review queue, projects and sync cursors (and annotator stats)."""
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.review import service
    from annotate_anyone.settings import get_settings

    settings = get_settings()
    with session_scope(settings.db_url) as session:
        out = service.review_status(session)
        if annotators:
            out["annotators"] = service.annotator_stats(session, settings.review)
            out["agreement"] = service.agreement(session)
    text = json.dumps(out, default=str)
    typer.echo(text) if as_json else console.print_json(text)
