"""Published dataset releases: list, manifest, changes against the parent, file downloads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import select
from starlette.convertors import Convertor, register_url_convertor

from annotate_anyone.api.auth import ReleaseReader
from annotate_anyone.api.deps import SessionDep, StoreDep
from annotate_anyone.api.paging import AfterId, page
from annotate_anyone.api.params import Limit, Offset
from annotate_anyone.api.schemas import Page, ReleaseOut
from annotate_anyone.release import service, views
from annotate_anyone.release.models import Release


class AnyPath(Convertor[str]):
    """Like Starlette's ``path`` but matching every character (its ``.*`` stops at a newline, so a name with
    ``%0A`` matched no route: a 404 before authentication instead of a 401)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", AnyPath())
router = APIRouter(prefix="/releases", tags=["releases"])
Version = Path(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$", examples=["2026.11.24.1"])


@router.get("", response_model=Page[ReleaseOut], summary="List releases, newest first")
def list_releases(
    session: SessionDep, principal: ReleaseReader, limit: Limit = 50, offset: Offset = 0, after_id: AfterId = None
) -> Any:
    return page(session, select(Release), Release.id, limit=limit, offset=offset, after_id=after_id)


@router.get("/{version}", response_model=ReleaseOut, summary="One release")
def get_release(session: SessionDep, principal: ReleaseReader, version: str = Version) -> Release:
    return service.get_release(session, version)


@router.get("/{version}/manifest", summary="The release's manifest.json")
def get_manifest(session: SessionDep, store: StoreDep, principal: ReleaseReader, version: str = Version) -> Any:
    service.get_release(session, version)
    return views.manifest(store, version)


@router.get("/{version}/changes", summary="What changed against the parent release (changes.json)")
def get_changes(session: SessionDep, store: StoreDep, principal: ReleaseReader, version: str = Version) -> Any:
    service.get_release(session, version)
    return views.changes(store, version)


@router.get("/{version}/files/{name:anypath}", summary="Download one file the manifest lists", response_model=None)
def download(
    session: SessionDep, store: StoreDep, principal: ReleaseReader, name: str, version: str = Version
) -> Response:
    service.get_release(session, version)
    key = service.file_key(store, version, name)
    if url := store.url_for(key):
        return RedirectResponse(url, status_code=307)
    return StreamingResponse(
        store.open(key),
        media_type=views.media_type(name),
        headers={"Content-Disposition": f'attachment; filename="{name.rsplit("/", 1)[-1]}"'},
    )
