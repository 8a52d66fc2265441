"""`--wait` in service mode: the CLI queues the job on the broker, a real Celery worker runs it, and the CLI follows
the job row to its end (plain progress lines on stderr without a terminal, the job as JSON on stdout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_celery_worker import STAGES, service_env, start_worker  # noqa: F401 (fixtures)
from tests.servers import ManagedProcess

pytestmark = pytest.mark.services


def test_ingest_wait_follows_the_queued_job_to_its_end(
    service_env: dict[str, str],  # noqa: F811
    start_worker: Callable[[], ManagedProcess],  # noqa: F811
    tmp_path: Path,
    make_jpeg: Callable[..., bytes],
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i}.jpg").write_bytes(make_jpeg(i, size=(200, 150)))
    env = {**os.environ, **service_env, "AA_INGEST_STAGES": json.dumps(STAGES)}
    cli = [sys.executable, "-m", "annotate_anyone.cli"]
    start_worker()
    done = subprocess.run(
        [*cli, "ingest", str(folder), "--wait", "--json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    job = json.loads(done.stdout)
    assert (job["status"], job["done"], job["total"]) == ("succeeded", 4, 4)
    lines = done.stderr.strip().splitlines()
    assert (
        lines[0].startswith(f"queued job {job['id']} (ingest)")
        and lines[-1] == f"job {job['id']} ingest: succeeded 4/4"
    )
    again = subprocess.run(
        [*cli, "status", "--job", str(job["id"]), "--follow"], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0 and "succeeded 4/4" in again.stdout, again.stdout + again.stderr
