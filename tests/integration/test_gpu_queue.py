"""Model work on its own Celery queue, with real workers on Redis and PostgreSQL.

A worker on the default queue never takes an annotation round (its planning fine-tunes and retrains
models) nor its units: they wait on the ``gpu`` queue until ``annotate-anyone worker --queues gpu`` (here
on CPU, with a tiny random CLIP) starts, which plans the round and labels every person with the model,
loading it once for all units.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from annotate_anyone import jobs
from annotate_anyone.annotation.models import ModelPrediction
from annotate_anyone.annotation.synthetic import make_person
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.catalog.models import Image, ImageStatus
from annotate_anyone.db import migrate
from annotate_anyone.db.base import session_scope
from annotate_anyone.executors.celery import CeleryExecutor
from annotate_anyone.jobs.models import JobStatus, JobUnit
from annotate_anyone.settings import Settings
from annotate_anyone.storage import open_store
from tests.integration.test_annotation_service import add_person
from tests.servers import ManagedProcess

pytest.importorskip("transformers")
REPO = Path(__file__).resolve().parents[2]
GPU_QUEUE = "gpu"
REDIS_DB = 14  # its own db: the queues of other Celery tests never mix with these


@pytest.fixture
def env(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    import redis

    from annotate_anyone.annotation.tiny_clip_checkpoints import build_tiny_clip

    broker = redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    redis.Redis.from_url(broker).flushdb()
    migrate.upgrade(pg_url)
    env = {
        "AA_PROFILE": "service",
        "AA_DATABASE_URL": pg_url,
        "AA_BROKER_URL": broker,
        "AA_STORAGE_URL": f"file://{tmp_path / 'objects'}",
        "AA_SECRET_KEY": "integration-test-secret-key",
        "AA_WEBHOOK_SECRET": "integration-test-webhook-secret",
        "AA_HOME": str(tmp_path / "home"),
        "AA_MODELS__GPU_QUEUE": GPU_QUEUE,
        "AA_MODELS__DEVICE": "cpu",
        "AA_MODELS__BATCH_SIZE": "4",
        "AA_MODELS__CLIP_CHECKPOINT": str(build_tiny_clip(tmp_path / "clip")),
    }
    yield env
    redis.Redis.from_url(broker).flushdb()
    with session_scope(pg_url) as session:
        session.execute(text("TRUNCATE job_units, model_predictions, attributes, review_tasks, person_features, "
                             "calibrations, flywheel_rounds, label_models, persons, images, jobs CASCADE"))  # fmt: skip


@pytest.fixture
def start_worker(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[list[str]], Path]]:
    """Start a worker in its own process group (tests/servers.ManagedProcess); returns its log file."""
    procs: list[ManagedProcess] = []

    def start(argv: list[str]) -> Path:
        proc = ManagedProcess(f"worker-{len(procs)}", argv, {**os.environ, **env},
                              tmp_path / f"worker-{len(procs)}.log", REPO)  # fmt: skip
        proc.start()
        procs.append(proc)
        return proc.log_path

    yield start
    for proc in procs:
        proc.stop(timeout=30)


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def test_a_gpu_worker_labels_the_round_and_a_default_worker_leaves_its_units(env, start_worker, monkeypatch):
    import redis

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    store = open_store(settings=settings)
    with session_scope(settings.db_url) as session:
        pids = []
        for i in range(6):
            sp = make_person(100 + i)
            pids.append(add_person(session, store, sp.image, sp.box, sp.keypoints, sp.mask, [sp.face_box],
                                   name=f"gpu-{i}"))  # fmt: skip
        for image in session.scalars(select(Image)):
            image.status = ImageStatus.kept
        job_id = jobs.create_job(session, kind="annotate", params={"person_ids": pids, "batch_size": 3}).id
    # A worker on the default queue only: it must leave the round (planning and units) to the gpu queue.
    celery = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--loglevel=INFO",
              "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    default_log = start_worker([*celery, "--queues", "annotate-anyone", "--concurrency=1", "--pool=prefork"])
    _wait_for(lambda: "ready." in default_log.read_text(errors="replace"), 120, "the default worker", default_log)
    CeleryExecutor(settings).submit(job_id)
    queue = redis.Redis.from_url(settings.broker_url)
    _wait_for(lambda: queue.llen(GPU_QUEUE) == 1, 30, "the round's planning on the gpu queue", default_log)
    time.sleep(3)  # the default worker is idle and could take it: it must not
    assert queue.llen(GPU_QUEUE) == 1
    with session_scope(settings.db_url) as session:
        assert jobs.get_job(session, job_id).status == JobStatus.queued
        assert session.scalar(select(func.count(ModelPrediction.id))) == 0
    # The GPU worker (the CLI's worker command, bound to the gpu queue; on CPU here) labels the round.
    cli = str(Path(sys.executable).with_name("annotate-anyone"))
    gpu_log = start_worker([cli, "worker", "--queues", GPU_QUEUE, "--without-gossip", "--without-mingle",
                               "--without-heartbeat"])  # fmt: skip

    def finished() -> bool:
        with session_scope(settings.db_url) as session:
            return jobs.get_job(session, job_id).status in (JobStatus.succeeded, JobStatus.failed)

    _wait_for(finished, 300, "the gpu worker to label the round", gpu_log)
    with session_scope(settings.db_url) as session:
        job = jobs.get_job(session, job_id)
        assert job.status == JobStatus.succeeded, job.error
        assert session.scalar(select(func.count(JobUnit.id)).where(JobUnit.job_id == job_id)) == 2
        clip_rows = session.scalars(select(ModelPrediction).where(ModelPrediction.model_version.like("clip:%"))).all()
        n_cats = len(load_taxonomy().categories())
        assert len(clip_rows) == len(pids) * n_cats and {r.person_id for r in clip_rows} == set(pids)
    assert queue.llen(GPU_QUEUE) == 0
    gpu_text, default_text = gpu_log.read_text(errors="replace"), default_log.read_text(errors="replace")
    assert "(thread)" in gpu_text  # the CLI's default for a GPU worker: one process, threads
    received = re.compile(r"Task aa\.run_unit\[[0-9a-f-]+\] received")
    assert len(received.findall(gpu_text)) == 2 and not received.findall(default_text)
    planned_by = re.compile(r"Task aa\.start_job\[[0-9a-f-]+\] received")
    assert planned_by.search(gpu_text) and not planned_by.search(default_text)
    assert "model loaded" not in default_text
    assert gpu_text.count("model loaded: clip") == 1  # one load (at start) for planning and both units
