"""The CLI scripts well: project errors are one line on stderr with exit status 2, `--version`, `--json` objects,
`status --job N --follow` with the job's outcome as exit status, and native model-library noise filtered."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from annotate_anyone.catalog.models import Source
from annotate_anyone.cli import app
from annotate_anyone.db.base import session_scope
from annotate_anyone.jobs import create_job
from annotate_anyone.jobs.models import Job, JobStatus
from annotate_anyone.settings import get_settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AA_DATABASE_URL", raising=False)
    monkeypatch.delenv("AA_PROFILE", raising=False)
    get_settings.cache_clear()
    return tmp_path / "home"


def _one_line_error(result: object, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "╭" not in result.output
    return lines[0]


def test_project_errors_are_one_line_on_stderr_with_exit_status_2(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    before_init = _one_line_error(runner.invoke(app, ["status"]))
    assert "annotate-anyone init" in before_init and str(home) in before_init
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert "no job 999" in _one_line_error(runner.invoke(app, ["status", "--job", "999"]))
    missing = _one_line_error(runner.invoke(app, ["ingest", str(home / "nowhere")]))
    assert "not a folder" in missing
    assert "no such URL list" in _one_line_error(runner.invoke(app, ["ingest", str(home / "urls.csv")]))
    with session_scope(get_settings().db_url) as session:  # refused before anything was registered or queued
        assert session.scalar(select(func.count(Source.id))) == 0
        assert session.scalar(select(func.count(Job.id))) == 0
    monkeypatch.setenv("AA_PROFILE", "bogus")
    get_settings.cache_clear()
    assert "AA_PROFILE" in _one_line_error(runner.invoke(app, ["status"]))
    monkeypatch.setenv("AA_PROFILE", "embedded")
    get_settings.cache_clear()
    verbose = runner.invoke(app, ["--verbose", "status", "--job", "999"])
    assert verbose.exit_code == 2 and "Traceback" in verbose.stderr and verbose.stderr.strip().endswith("no job 999")
    usage = runner.invoke(app, ["status", "--follow"])  # usage errors stay typer's
    assert usage.exit_code == 2 and "--follow needs --job" in usage.output


def test_unexpected_errors_say_so_and_show_the_traceback_only_with_verbose(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from annotate_anyone.catalog import stats

    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0

    def broken(session: object) -> dict:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(stats, "overview", broken)
    quiet = runner.invoke(app, ["status"])
    assert quiet.exit_code == 1 and "Traceback" not in quiet.output
    assert quiet.stderr.strip() == "internal error: RuntimeError: disk on fire (run with --verbose for the traceback)"
    loud = runner.invoke(app, ["-v", "status"])
    assert loud.exit_code == 1 and "Traceback" in loud.stderr and "disk on fire" in loud.stderr


def test_version_comes_from_the_package_metadata(home: Path) -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"annotate-anyone {version('annotate-anyone')}"


def test_json_output_is_objects_with_keys(home: Path, make_jpeg: Callable[..., bytes]) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    photos = home.parent / "photos"
    photos.mkdir()
    for i in range(2):
        (photos / f"{i}.jpg").write_bytes(make_jpeg(i, size=(64, 64)))
    ingested = runner.invoke(app, ["ingest", str(photos), "--json"])
    assert ingested.exit_code == 0, ingested.output
    job = json.loads(ingested.stdout)  # the progress bar went to stderr: stdout is the JSON alone
    assert job["kind"] == "ingest" and job["status"] == "succeeded" and job["total"] == 2
    assert job["counters"]["dropped_by_reason"], job  # 64 px noise is dropped, each with a reason
    overview = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert set(overview) == {"overview", "jobs", "total"} and overview["total"] == 1
    assert overview["jobs"][0] == {"id": job["id"], "kind": "ingest", "status": "succeeded", "done": 2, "total": 2}
    one = json.loads(runner.invoke(app, ["status", "--job", str(job["id"]), "--json"]).stdout)
    assert one["id"] == job["id"] and one["status"] == "succeeded"
    keys = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)
    assert keys["total"] == len(keys["keys"]) == 1 and keys["keys"][0]["role"] == "admin"
    assert "key" not in keys["keys"][0] and keys["keys"][0]["revoked_at"] is None
    users = json.loads(runner.invoke(app, ["users", "list", "--json"]).stdout)
    assert users["total"] == 1 and users["users"][0]["username"] == "admin"


def _drive(job_id: int, final: JobStatus, db_url: str) -> threading.Thread:
    """Another process's worker, as the database sees it: the job runs, progresses, then ends."""

    def work() -> None:
        for done in range(4):
            time.sleep(0.3)
            with session_scope(db_url) as session:
                row = session.get(Job, job_id)
                row.status, row.total, row.done = JobStatus.running, 3, min(done, 3)
        with session_scope(db_url) as session:
            session.get(Job, job_id).status = final

    thread = threading.Thread(target=work)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("final", "exit_code"), [(JobStatus.succeeded, 0), (JobStatus.failed, 1), (JobStatus.cancelled, 3)]
)
def test_follow_waits_for_the_job_and_exits_with_its_outcome(home: Path, final: JobStatus, exit_code: int) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    db_url = get_settings().db_url
    with session_scope(db_url) as session:
        job_id = create_job(session, kind="export", params={}, created_by="test").id
    worker = _drive(job_id, final, db_url)
    result = runner.invoke(app, ["status", "--job", str(job_id), "--follow", "--json"])
    worker.join()
    assert result.exit_code == exit_code, result.output
    assert json.loads(result.stdout)["status"] == final.value
    progress = result.stderr.strip().splitlines()  # no terminal: plain lines, the last one the outcome
    assert progress[-1] == f"job {job_id} export: {final.value} 3/3"
    assert progress[0].startswith(f"job {job_id} export: queued") or "running" in progress[0]


NOISY = r"""
import os, sys
from annotate_anyone.cli.scripting import filter_native_stderr
native = filter_native_stderr()
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
os.write(2, b"I0000 00:00:1796250921.577107   11444 task_runner.cc:85] GPU suport is not available\n")
os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
os.write(2, b"W0000 00:00:1796250921.672375   11577 inference_feedback_manager.cc:114] Feedback manager\n")
os.write(2, b"E0000 00:00:1796250921.672375   11577 graph.cc:1] a real error\n")
os.write(2, b"plain native line\n")
print("python line", file=sys.stderr)
native.close()
os.write(2, b"after close\n")
"""


def test_native_log_noise_is_filtered_and_everything_else_kept() -> None:
    done = subprocess.run([sys.executable, "-c", NOISY], capture_output=True, timeout=60, check=True)
    lines = done.stderr.decode().splitlines()
    assert sorted(lines) == sorted(
        ["E0000 00:00:1796250921.672375   11577 graph.cc:1] a real error", "plain native line", "python line",
         "after close"]
    )  # fmt: skip
