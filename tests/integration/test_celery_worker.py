"""Service mode on real servers: a Celery worker subprocess on Redis, PostgreSQL and SeaweedFS (S3).

The second test kills the worker's whole process tree mid-job and starts a new one: the job must
complete with every item processed exactly once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from annotate_anyone import jobs
from annotate_anyone.catalog.models import Image, Item, ItemStatus
from annotate_anyone.catalog.sources import create_source
from annotate_anyone.db import migrate
from annotate_anyone.db.base import session_scope
from annotate_anyone.executors.base import get_executor
from annotate_anyone.executors.celery import CeleryExecutor
from annotate_anyone.jobs.models import JobStatus
from annotate_anyone.settings import Settings
from annotate_anyone.storage import open_store
from tests.servers import ManagedProcess

REPO = Path(__file__).resolve().parents[2]
STAGES = ["read", "decode", "seen", "store"]


@pytest.fixture
def service_env(pg_url: str, redis_url: str, s3_server, tmp_path: Path) -> dict[str, str]:  # noqa: ANN001
    bucket = s3_server.new_bucket()
    migrate.upgrade(pg_url)
    env = {
        "AA_PROFILE": "service",
        "AA_DATABASE_URL": pg_url,
        "AA_BROKER_URL": redis_url,
        "AA_SECRET_KEY": "integration-test-secret-key",
        "AA_WEBHOOK_SECRET": "integration-test-webhook-secret",
        "AA_VISIBILITY_TIMEOUT": "4",
        "AA_HOME": str(tmp_path / "home"),
        **s3_server.env(bucket, "pool"),
    }
    yield env
    with session_scope(pg_url) as session:  # leave the shared test database empty for the next test
        for table in ("items", "persons", "images", "jobs", "sources"):
            session.execute(__import__("sqlalchemy").text(f"DELETE FROM {table}"))


def _settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.fixture
def start_worker(service_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], ManagedProcess]]:
    procs: list[ManagedProcess] = []

    def start() -> ManagedProcess:
        argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--loglevel=INFO",
                "--concurrency=1", "--pool=prefork", "--without-gossip", "--without-mingle",
                "--without-heartbeat"]  # fmt: skip
        name = f"worker-{len(procs)}"
        proc = ManagedProcess(name, argv, {**os.environ, **service_env}, tmp_path / f"{name}.log", REPO)
        proc.start()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _job(settings: Settings, job_id: int) -> tuple[JobStatus, int, int]:
    with session_scope(settings.db_url) as session:
        job = jobs.get_job(session, job_id)
        done = session.scalar(
            select(func.count(Item.id)).where(Item.job_id == job_id, Item.status != ItemStatus.pending)
        )
        return job.status, done or 0, job.total


def _queue_ingest(settings: Settings, folder: Path, batch_size: int) -> int:
    with session_scope(settings.db_url) as session:
        source_id = create_source(session, name=f"s-{folder.name}", kind="folder", uri=str(folder)).id
        job_id = jobs.create_job(
            session, kind="ingest", params={"source_ids": [source_id], "stages": STAGES, "batch_size": batch_size}
        ).id
    executor = get_executor(settings)
    assert isinstance(executor, CeleryExecutor)
    executor.submit(job_id)  # after the commit above
    return job_id


def test_worker_runs_a_pipeline_into_postgres_and_s3(
    service_env: dict[str, str],
    start_worker: Callable[[], ManagedProcess],
    tmp_path: Path,
    make_jpeg: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(service_env, monkeypatch)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.jpg").write_bytes(make_jpeg(i, size=(200, 150)))
    (folder / "dup.jpg").write_bytes(make_jpeg(0, size=(200, 150)))
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    start_worker()
    job_id = _queue_ingest(settings, folder, batch_size=3)
    _wait_for(lambda: _job(settings, job_id)[0] in (JobStatus.succeeded, JobStatus.failed), 120, "the job")
    status, done, total = _job(settings, job_id)
    assert (status, done, total) == (JobStatus.succeeded, 7, 7)
    store = open_store(settings=settings)
    assert store.url.startswith("s3://")
    with session_scope(settings.db_url) as session:
        kept = session.scalars(select(Image).where(Image.status == "kept")).all()
        assert len(kept) == 5
        for image in kept:
            assert store.sha256(image.storage_key) == image.sha256
        outcomes = {Path(i.uri).name: (i.status, i.reason) for i in session.scalars(select(Item))}
    assert outcomes["bad.jpg"][1].startswith("decode:")
    assert sorted(s for s, _ in outcomes.values()).count(ItemStatus.duplicate) == 1


def test_killing_the_worker_mid_job_loses_nothing_and_repeats_nothing(
    service_env: dict[str, str],
    start_worker: Callable[[], ManagedProcess],
    tmp_path: Path,
    make_jpeg: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(service_env, monkeypatch)
    folder = tmp_path / "many"
    folder.mkdir()
    n = 120
    for i in range(n):
        (folder / f"{i:03d}.jpg").write_bytes(make_jpeg(1000 + i, size=(320, 240)))
    first = start_worker()
    job_id = _queue_ingest(settings, folder, batch_size=2)
    _wait_for(lambda: _job(settings, job_id)[1] >= 10, 120, "the first units")
    assert first.proc is not None
    os.killpg(first.proc.pid, signal.SIGKILL)  # the whole process tree: main process and pool child
    first.proc.wait(10)
    status, done_at_kill, total = _job(settings, job_id)
    assert status == JobStatus.running and done_at_kill < total == n, "the kill must land mid-job"
    start_worker()
    _wait_for(lambda: _job(settings, job_id)[0] == JobStatus.succeeded, 240, "the job after the restart")
    with session_scope(settings.db_url) as session:
        items = session.scalars(select(Item).where(Item.job_id == job_id)).all()
        assert len(items) == n
        assert {i.status for i in items} == {ItemStatus.kept}
        assert [i.attempts for i in items] == [1] * n  # no item processed twice
        assert session.scalar(select(func.count(Image.id))) == n
        assert session.scalar(select(func.count(func.distinct(Image.sha256)))) == n
