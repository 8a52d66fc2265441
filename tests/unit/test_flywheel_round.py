"""One round path: the annotate job and ``run_round`` run the same plan, unit and finish steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from annotate_anyone import jobs
from annotate_anyone.annotation.flywheel import merge_unit_stats, round_units, run_round
from annotate_anyone.annotation.models import FlywheelRound
from annotate_anyone.annotation.synthetic import make_person
from annotate_anyone.catalog.models import Image, ImageStatus
from annotate_anyone.db.base import session_scope
from annotate_anyone.executors.inline import InlineExecutor
from annotate_anyone.home.setup import init_home
from annotate_anyone.jobs.models import JobStatus
from annotate_anyone.settings import Settings
from annotate_anyone.storage import open_store
from tests.integration.test_annotation_service import add_person

TIMES = ("started_at", "finished_at")


def _home(path: Path, n: int) -> tuple[Settings, list[int]]:
    settings = Settings(home=path, workers=1)
    init_home(settings)
    store = open_store(settings=settings)
    with session_scope(settings.db_url) as session:
        pids = []
        for i in range(n):
            sp = make_person(300 + i)
            pids.append(
                add_person(session, store, sp.image, sp.box, sp.keypoints, sp.mask, [sp.face_box], name=f"r{i}")
            )
        for image in session.scalars(select(Image)):
            image.status = ImageStatus.kept
    return settings, pids


def _without_times(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in TIMES}


def test_the_annotate_job_reports_what_run_round_reports(tmp_path: Path) -> None:
    by_job, pids = _home(tmp_path / "job", 5)
    by_call, same = _home(tmp_path / "call", 5)
    assert pids == same
    with session_scope(by_job.db_url) as session:
        job_id = jobs.create_job(session, kind="annotate", params={"person_ids": pids, "batch_size": 2}).id
    InlineExecutor(by_job).run(job_id)
    with session_scope(by_job.db_url) as session:
        job = jobs.get_job(session, job_id)
        assert job.status == JobStatus.succeeded, job.error
        from_job, counters = job.result["report"], job.counters
        stored = session.scalar(select(FlywheelRound).where(FlywheelRound.number == 1)).stats
    with session_scope(by_call.db_url) as session:
        from_call = run_round(session, open_store(settings=by_call), settings=by_call, person_ids=pids, batch_size=2)
    assert from_job["round"] == from_call["round"] == 1 and stored == from_job
    assert from_job["finished_at"] and from_call["finished_at"]
    assert from_job["models"]["labelers"] and from_job["models"]["labelers"] == counters["models"]
    assert from_job["this_round"]["persons"] == 5 and counters["persons"] == 5
    assert _without_times(from_job) == _without_times(from_call)


def test_units_and_their_counters() -> None:
    assert round_units([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert round_units([1, 2, 3], None) == [[1, 2, 3]]
    assert round_units([], 16) == []
    merged = merge_unit_stats([{"persons": 2, "auto": 1, "models": ["b", "a"]}, {"persons": 1, "models": ["a", "c"]}])
    assert merged == {"persons": 3, "auto": 1, "models": ["a", "b", "c"]}
