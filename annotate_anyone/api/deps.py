"""FastAPI dependencies as annotated aliases, in one place."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from annotate_anyone.db.base import session_scope
from annotate_anyone.executors.base import Executor, get_executor
from annotate_anyone.settings import Settings
from annotate_anyone.storage import ObjectStore, open_store


async def get_app_settings(request: Request) -> Settings:
    """The app's settings (``async``: trivial dependencies run on the event loop, not in a worker thread)."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    """A session per request: committed after the route returns, rolled back on error."""
    with session_scope(settings.db_url) as session:
        yield session


# scope="function": the commit happens before the response is sent (FastAPI's default runs it afterwards,
# so a client could act on a 201 or a login redirect before the row existed, or get a 2xx for a failed commit)
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_store(request: Request) -> ObjectStore:
    store = getattr(request.app.state, "store", None)
    if store is None:
        store = request.app.state.store = open_store(settings=request.app.state.settings)
    return store


StoreDep = Annotated[ObjectStore, Depends(get_store)]


def get_app_executor(request: Request) -> Executor:
    executor = getattr(request.app.state, "executor", None)
    if executor is None:
        executor = request.app.state.executor = get_executor(request.app.state.settings)
    return executor


ExecutorDep = Annotated[Executor, Depends(get_app_executor)]
