"""``annotate-anyone serve --workers 2``: several server processes on one port, each with the same settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from annotate_anyone.access.auth import create_api_key
from annotate_anyone.db.base import dispose_engines, session_scope
from annotate_anyone.home.setup import init_home
from annotate_anyone.settings import Settings
from tests.servers import app_in_thread, free_port


def test_serve_with_two_workers(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    init_home(settings)
    with session_scope(settings.db_url) as session:
        _key, raw = create_api_key(session, name="serve", role="engineer")
    dispose_engines()
    port = free_port()
    env = {**os.environ, "AA_HOME": str(settings.home), "AA_PROFILE": "embedded"}
    cli = [str(Path(sys.executable).with_name("annotate-anyone")), "serve", "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(cli, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "server did not answer within 60 s"
            time.sleep(0.2)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {raw}"}) as client:
            for _ in range(20):  # keep-alive requests land on either worker; each sees the same database
                page = client.get("/images").json()
                assert page["items"] == [] and page["has_more"] is False
            assert client.get("/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def test_a_write_is_committed_before_its_response_is_sent(tmp_path: Path) -> None:
    """The request's session commits before the response leaves (a client that reads right after a 201, or a
    browser following the login redirect, sees the row). Commits are slowed down by 0.3 s to make a late
    commit visible."""
    import threading

    from sqlalchemy import event, select
    from sqlalchemy.orm import Session

    from annotate_anyone.api.app import create_app
    from annotate_anyone.catalog.models import Source

    settings = Settings(home=tmp_path / "home")
    init_home(settings)
    with session_scope(settings.db_url) as session:
        _key, raw = create_api_key(session, name="writer", role="engineer")

    def slow_commit(session: Session) -> None:
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.3)

    event.listen(Session, "before_commit", slow_commit)
    try:
        with app_in_thread(create_app(settings)) as base:
            headers = {"Authorization": f"Bearer {raw}"}
            for n in range(3):
                body = {"name": f"late-{n}", "kind": "s3_prefix", "uri": f"s3://bucket/late-{n}/"}
                created = httpx.post(f"{base}/sources", json=body, headers=headers, timeout=10)
                assert created.status_code == 201, created.text
                with session_scope(settings.db_url) as session:  # the main thread: commits are not slowed
                    name = session.scalar(select(Source.name).where(Source.id == created.json()["id"]))
                    assert name == f"late-{n}"
    finally:
        event.remove(Session, "before_commit", slow_commit)
