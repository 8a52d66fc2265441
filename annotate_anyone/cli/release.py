"""``annotate-anyone release list|show|verify|materialize|takedown``: thin commands over the release services."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from annotate_anyone.settings import get_settings

release_app = typer.Typer(help="Versioned dataset releases.", no_args_is_help=True)
console = Console()


def _store():  # noqa: ANN202
    from annotate_anyone.storage import open_store

    return open_store(settings=get_settings())


@release_app.command("list")
def list_() -> None:
    """Published versions, oldest first, with their sample counts."""
    from annotate_anyone.release.service import get_manifest, list_published

    store = _store()
    table = Table(title="releases")
    for col in ("version", "parent", "samples", "created"):
        table.add_column(col)
    for version in list_published(store):
        m = get_manifest(store, version)
        table.add_row(version, str(m.get("parent")), str(m["counts"].get("samples")), str(m.get("created_at")))
    console.print(table)


@release_app.command("show")
def show(version: str, changes: Annotated[bool, typer.Option(help="Print CHANGES.md too")] = True) -> None:
    """A release's manifest summary and its changes against the parent."""
    from annotate_anyone.release.service import get_manifest, open_file

    store = _store()
    manifest = get_manifest(store, version)
    summary = {k: manifest.get(k) for k in ("version", "parent", "created_at", "digest", "counts", "expected_error")}
    console.print_json(json.dumps(summary, default=str))
    if changes:
        with open_file(store, version, "CHANGES.md") as f:
            console.print(f.read().decode())


@release_app.command("verify")
def verify(version: str) -> None:
    """Check every file's sha256 and size and the release digest; exits 1 on any mismatch."""
    from annotate_anyone.release.service import verify as verify_release

    report = verify_release(_store(), version)
    console.print(
        f"{version}: {'[green]ok[/]' if report.ok else '[red]FAILED[/]'} "
        f"({report.files_checked} files, {report.bytes_checked} bytes, {report.samples} samples)"
    )
    for error in report.errors:
        console.print(f"  [red]{error}[/]")
    raise typer.Exit(0 if report.ok else 1)


@release_app.command("materialize")
def materialize(version: str, dest: Path) -> None:
    """Lay out images and parsing maps under DEST so the parquet's path/segm_path resolve there."""
    from annotate_anyone.release.materialize import materialize as lay_out

    console.print(f"materialized {version} into {lay_out(_store(), version, dest)}")


@release_app.command("takedown")
def takedown(
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail and the tombstone list)")],
    sha256: Annotated[str | None, typer.Option(help="An image's sha256")] = None,
    url: Annotated[str | None, typer.Option(help="A source URL")] = None,
    source: Annotated[str | None, typer.Option(help="A source id or name")] = None,
) -> None:
    """Take an image, URL or source down: it leaves every later release and is listed in the next tombstones."""
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.release.takedown import take_down

    src: int | str | None = int(source) if source and source.isdigit() else source
    with session_scope(get_settings().db_url) as session:
        row = take_down(session, sha256=sha256, url=url, source=src, reason=reason, requested_by="cli")
        console.print(f"takedown {row.id} recorded")
