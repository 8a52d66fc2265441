"""``annotate-anyone release ...`` commands (thin; mount with ``app.add_typer(release_app, name="release")``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from annotate_anyone.storage.base import ObjectStore

release_app = typer.Typer(
    help="Published dataset releases: list, verify, materialize, take down.", no_args_is_help=True
)


def _store() -> ObjectStore:
    from annotate_anyone.settings import get_settings
    from annotate_anyone.storage import open_store

    return open_store(settings=get_settings())


def _db_url() -> str:
    from annotate_anyone.settings import get_settings

    return get_settings().db_url


@release_app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help='Print {"releases": [...], "total": N}')] = False,
) -> None:
    """Published versions, oldest first."""
    from annotate_anyone.release.service import list_published

    versions = list(list_published(_store()))
    if as_json:
        typer.echo(json.dumps({"releases": versions, "total": len(versions)}))
        return
    for version in versions:
        typer.echo(version)


@release_app.command()
def verify(version: Annotated[str, typer.Argument(help="Release version")]) -> None:
    """Check every checksum of a release (and its digest against the database); exit 1 on failure."""
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.release.service import verify as verify_service

    with session_scope(_db_url()) as session:
        report = verify_service(_store(), version, session)
    typer.echo(json.dumps(report.as_dict(), indent=1))
    raise typer.Exit(0 if report.ok else 1)


@release_app.command()
def materialize(
    version: Annotated[str, typer.Argument(help="Release version, or 'latest'")],
    dest: Annotated[Path, typer.Argument(help="Folder to lay the files out in")],
    with_json: Annotated[bool, typer.Option(help="Also write each sample's label JSON")] = False,
    layout: Annotated[
        str, typer.Option(help="annotate-anyone: DEST/index.parquet; cosmicman: what CosmicMan's trainer reads")
    ] = "annotate-anyone",
) -> None:
    """Lay a release out under DEST so the index's path and segm_path resolve there."""
    from annotate_anyone.release.materialize import materialize as run
    from annotate_anyone.release.materialize import materialize_cosmicman

    store = _store()
    if version == "latest":
        from annotate_anyone.errors import NotFound
        from annotate_anyone.release.service import list_published

        published = list_published(store)
        if not published:
            raise NotFound("no published release")
        version = published[-1]
    if layout != "cosmicman":
        typer.echo(str(run(store, version, dest, with_json=with_json, layout_name=layout)))
        return
    done = materialize_cosmicman(store, version, dest, with_json=with_json)
    typer.echo(json.dumps({"version": version, "dataset": str(done.dataset), "train_data_root": str(done.data_root),
                           "rows": done.rows, "left_out": done.left_out}, indent=1))  # fmt: skip
    typer.echo(f"train with CosmicMan's train_sdxl.py: {done.train_args()}")


@release_app.command()
def takedown(
    reason: Annotated[str, typer.Option(help="Why (published in the tombstones)")],
    sha256: Annotated[str | None, typer.Option(help="Image hash")] = None,
    url: Annotated[str | None, typer.Option(help="Source URL")] = None,
    source: Annotated[str | None, typer.Option(help="Source id or name")] = None,
    requested_by: Annotated[str | None, typer.Option(help="Who asked")] = None,
) -> None:
    """Take down an image, URL or source: excluded from every later release, listed in its tombstones."""
    from annotate_anyone.catalog.takedown import take_down
    from annotate_anyone.db.base import session_scope

    with session_scope(_db_url()) as session:
        row = take_down(session, sha256=sha256, url=url, source=source, reason=reason, requested_by=requested_by)
        typer.echo(f"takedown {row.id} ({row.kind.value}) recorded")
