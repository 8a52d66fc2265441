"""Start-up recovery: reclaim jobs whose heartbeat stopped, and delete temporary files they left.

Run when a server, a worker or a CLI command that runs jobs starts (and periodically by the API and the
Celery beat). A killed export leaves a ``.tmp-*`` shard in ``releases/`` of a local store, or an
``aa-release-*`` staging folder in the system temp dir when the store is S3; both are deleted once they
are older than ``job_stale_s`` and no job of this home is alive (a live export may own them).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from annotate_anyone.db.base import session_scope
from annotate_anyone.jobs import rows, runtime
from annotate_anyone.jobs.models import Job, JobStatus
from annotate_anyone.settings import Settings

STAGING_PREFIX = "aa-release-"  # release/writers.py stages S3 releases in such temp folders
TMP_PREFIX = ".tmp-"  # storage/local.py and release/writers.py write local files through such names
STAGING_MIN_AGE_S = 3600.0  # staging folders are shared by every home of the machine: be patient


def recover(settings: Settings, requeue: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Reclaim stale jobs (``requeue``: service mode, see :func:`runtime.reclaim_stale`), then sweep
    stale temporary files; returns what was done."""
    report: dict[str, Any] = runtime.reclaim_stale(settings, requeue)
    report["removed"] = [] if _any_job_alive(settings) else sweep_temporary(settings)
    for job_id in report["interrupted"]:
        logging.getLogger(__name__).warning("job %s had no heartbeat: marked interrupted", job_id)
    return report


def _any_job_alive(settings: Settings) -> bool:
    with session_scope(settings.db_url) as session:
        alive = session.scalar(
            select(func.count(Job.id)).where(
                Job.status == JobStatus.running, Job.heartbeat_at >= rows.stale_before(settings)
            )
        )
    return bool(alive)


def sweep_temporary(settings: Settings, now: float | None = None) -> list[str]:
    """Delete temporary release files older than ``job_stale_s``; returns their paths."""
    now = now or time.time()
    removed: list[str] = []
    if not settings.store_url.startswith("s3://"):
        releases = Path(settings.store_url.removeprefix("file://")) / "releases"
        for dirpath, _dirs, files in os.walk(releases):
            for name in files:
                path = Path(dirpath) / name
                if name.startswith(TMP_PREFIX) and _older(path, now - settings.job_stale_s):
                    path.unlink(missing_ok=True)
                    removed.append(str(path))
    for staging in Path(tempfile.gettempdir()).glob(f"{STAGING_PREFIX}*"):
        cutoff = now - max(settings.job_stale_s, STAGING_MIN_AGE_S)
        if staging.is_dir() and all(_older(p, cutoff) for p in [staging, *staging.iterdir()]):  # no file written
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(str(staging))
    return removed


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.lstat().st_mtime < cutoff
    except OSError:
        return False
