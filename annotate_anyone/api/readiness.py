"""Readiness: whether each service the platform depends on answers now (``GET /ready``).

Checks run concurrently, each bounded by ``timeout`` seconds: the database (``SELECT 1``), the broker
(service mode: a Celery executor; a connection to ``AA_BROKER_URL``), the object store (S3: ``HeadBucket``
on the store's bucket; local: the folder is a writable directory) and Label Studio when
``AA_LABEL_STUDIO_URL`` is set (its ``/health``). A check that does not apply is ``skipped``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from annotate_anyone.settings import Settings

CHECKS = ("database", "broker", "object_store", "label_studio")


def check_database(settings: Settings, timeout: float) -> str:
    from sqlalchemy import text

    from annotate_anyone.db.base import session_scope

    with session_scope(settings.db_url) as session:
        session.execute(text("SELECT 1"))
    return "SELECT 1"


def check_broker(settings: Settings, timeout: float) -> str | None:
    if settings.executor_name != "celery":
        return None
    from kombu import Connection

    with Connection(settings.broker_url, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
    return urlsplit(settings.broker_url).scheme


def check_object_store(settings: Settings, timeout: float) -> str:
    url = settings.store_url
    if url.startswith("s3://"):
        from annotate_anyone.pipeline.fetch import make_s3_client

        client = make_s3_client(settings, attempts=1, timeout=timeout)
        bucket = urlsplit(url).netloc
        client.head_bucket(Bucket=bucket)
        return f"s3://{bucket}"
    root = Path(url.removeprefix("file://")).expanduser()
    if not root.is_dir():
        raise OSError(f"{root} is not a directory")
    if not os.access(root, os.W_OK | os.X_OK):
        raise OSError(f"{root} is not writable")
    return "local"


def check_label_studio(settings: Settings, timeout: float) -> str | None:
    if not settings.label_studio_url:
        return None
    import httpx

    url = settings.label_studio_url.rstrip("/") + "/health"
    response = httpx.get(url, timeout=timeout)  # proxies from the environment, like the review client
    if response.status_code != 200:
        raise OSError(f"{url} answered {response.status_code}")
    return "health"


_FUNCS: dict[str, Callable[[Settings, float], str | None]] = {
    "database": check_database,
    "broker": check_broker,
    "object_store": check_object_store,
    "label_studio": check_label_studio,
}


def _run(name: str, settings: Settings, timeout: float) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        what = _FUNCS[name](settings, timeout)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return {"status": "down", "error": detail, "ms": round(1000 * (time.perf_counter() - start), 1)}
    if what is None:
        return {"status": "skipped"}
    return {"status": "up", "check": what, "ms": round(1000 * (time.perf_counter() - start), 1)}


def readiness(settings: Settings, timeout: float = 2.0) -> tuple[bool, dict[str, Any]]:
    """``(ready, body)``: ready when no check is ``down``; body ``{"status", "checks": {name: {...}}}``."""
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="ready")
    try:
        futures = {name: pool.submit(_run, name, settings, timeout) for name in CHECKS}
        deadline = time.monotonic() + timeout + 1.0
        checks: dict[str, Any] = {}
        for name, future in futures.items():
            try:
                checks[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                checks[name] = {"status": "down", "error": f"no answer within {timeout + 1.0:.0f} s"}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    ready = all(c["status"] != "down" for c in checks.values())
    return ready, {"status": "ready" if ready else "not_ready", "checks": checks}
