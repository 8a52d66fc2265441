"""Prometheus metrics (``GET /metrics``, text exposition format).

Two kinds:

* **From the database, computed at scrape time** by :class:`DatabaseCollector`, so every server process
  answers the same numbers whichever wrote the rows: jobs by kind and state, items by outcome and reason,
  Label Studio sync lag and webhook backlog (read by the ``read_tables`` function the API passes,
  ``api.table_metrics``: this module names no table), and (service mode) the broker's queue depth.
* **Per process**, observed where they happen: HTTP latency by route template and status, pipeline stage
  durations, rate-limiter errors. Several server or worker processes add up through prometheus-client's
  multiprocess mode: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder writable by every process
  *before* they start (``annotate-anyone serve --workers N`` sets one up itself when it is unset) and clear
  it when they all stop. Without it each process reports only its own observations.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

if TYPE_CHECKING:
    from annotate_anyone.settings import Settings

log = logging.getLogger(__name__)
TableReader = Callable[["Settings"], list[Metric]]  # the scrape-time families read from the tables

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what Prometheus 2 and 3 both read
QUEUES = ("annotate-anyone",)  # the Celery queues (executors/celery.py: task_default_queue)

HTTP_LATENCY = Histogram(
    "aa_http_request_duration_seconds",
    "HTTP request latency by method, route template and status code",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
STAGE_SECONDS = Histogram(
    "aa_stage_duration_seconds",
    "Time one pipeline stage spent on one batch of records",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
STAGE_RECORDS = Counter(
    "aa_stage_records_total", "Records a pipeline stage saw, by result (passed or dropped)", ["stage", "result"]
)
RATE_LIMIT_ERRORS = Counter(
    "aa_ratelimit_errors_total",
    "Rate-limiter backend errors; each let its request through (the limiter fails open)",
    ["backend"],
)


def observe_stage(stage: str, seconds: float, passed: int, dropped: int) -> None:
    """Record one batch of a pipeline stage."""
    STAGE_SECONDS.labels(stage).observe(seconds)
    if passed:
        STAGE_RECORDS.labels(stage, "passed").inc(passed)
    if dropped:
        STAGE_RECORDS.labels(stage, "dropped").inc(dropped)


class DatabaseCollector(Collector):
    """Metrics read from the database (and the broker) on each scrape.

    ``aa_metrics_source_up{source}`` says whether each source answered; a source that did not leaves its
    families out of that scrape rather than reporting zeros.
    """

    def __init__(self, settings: Settings, read_tables: TableReader) -> None:
        self.settings = settings
        self.read_tables = read_tables

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("aa_metrics_source_up", "Whether a source answered this scrape", labels=["source"])
        try:
            families = self.read_tables(self.settings)
        except Exception as exc:
            log.warning("metrics: database query failed: %s", exc)
            families = []
        up.add_metric(["database"], 1.0 if families else 0.0)
        yield from families
        if self.settings.executor_name == "celery":
            depth = GaugeMetricFamily("aa_queue_depth", "Messages waiting in a broker queue", labels=["queue"])
            try:
                for queue, size in queue_depths(self.settings.broker_url, celery_queues(self.settings)).items():
                    depth.add_metric([queue], float(size))
                up.add_metric(["broker"], 1.0)
                yield depth
            except Exception as exc:
                log.warning("metrics: broker query failed: %s", exc)
                up.add_metric(["broker"], 0.0)
        yield up


def queue_depths(broker_url: str, queues: tuple[str, ...] = QUEUES, timeout: float = 2.0) -> dict[str, int]:
    """Messages waiting in each Celery queue (Redis list lengths over every priority, or AMQP's
    ``message_count``); a queue the broker does not know yet counts 0."""
    from kombu import Connection
    from kombu.exceptions import ChannelError

    depths: dict[str, int] = {}
    with Connection(broker_url, connect_timeout=timeout, transport_options={"socket_timeout": timeout}) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        channel = conn.channel()
        try:
            for queue in queues:
                try:
                    depths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
                except ChannelError:  # not declared yet (AMQP 404) or no key yet (Redis): nothing waiting
                    depths[queue] = 0
                    channel = conn.channel()  # AMQP closes the channel after a 404
        finally:
            channel.close()
    return depths


def celery_queues(settings: Settings) -> tuple[str, ...]:
    """The default queue, and the GPU queue of model-backed units when ``AA_MODELS__GPU_QUEUE`` names one."""
    gpu = settings.models.gpu_queue
    return (*QUEUES, gpu) if gpu and gpu not in QUEUES else QUEUES


def _process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def render(settings: Settings, read_tables: TableReader) -> tuple[bytes, str]:
    """The exposition body and its content type: per-process metrics, then the database's (``read_tables``)."""
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector(settings, read_tables))
    start = time.perf_counter()
    body = generate_latest(_process_registry()) + generate_latest(database)
    log.debug("metrics rendered in %.1f ms", 1000 * (time.perf_counter() - start))
    return body, CONTENT_TYPE


@contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """``PROMETHEUS_MULTIPROC_DIR`` for server processes started inside the block: the one already set, or a
    fresh temporary folder (removed afterwards). Only processes that start after this (spawned server
    workers) use it; set the variable yourself before starting anything to include the first process."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        yield configured
        return
    path = tempfile.mkdtemp(prefix="aa-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def serve_process_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Serve the per-process metrics (all processes sharing ``PROMETHEUS_MULTIPROC_DIR``, or this one) on
    ``http://host:port/metrics`` from a daemon thread: for Celery workers, whose stage durations no API
    process sees when they run on other machines."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=_process_registry())
    log.info("metrics on http://%s:%d/metrics", host, port)
