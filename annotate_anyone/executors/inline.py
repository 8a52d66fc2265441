"""In-process executor for the embedded profile: units run on a process pool that uses every core."""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import forkserver

from annotate_anyone import jobs, logs
from annotate_anyone.db.base import dispose_engines, session_scope
from annotate_anyone.executors.base import Executor, ProgressFn
from annotate_anyone.jobs import kinds
from annotate_anyone.settings import Settings

# Imported once by the fork server, so each worker starts with them loaded (about 0.6 s of CPU per
# worker otherwise, paid again by every job); they hold no threads or connections at import time.
PRELOAD = [
    "annotate_anyone.catalog.ingest",
    "annotate_anyone.jobs",
    "annotate_anyone.pipeline.fetch",
    "annotate_anyone.pipeline.decode",
    "annotate_anyone.pipeline.pool",
    "annotate_anyone.pipeline.quality",
    "annotate_anyone.pipeline.store",
]


logger = logging.getLogger(__name__)


def _start_fork_server() -> mp.context.BaseContext:
    """The forkserver context, its server started (non-blocking) with :data:`PRELOAD` imported there."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()
    return ctx


def _worker_init(log_config: tuple[str | int, str] | None = None) -> None:
    dispose_engines()
    if log_config is not None:  # the parent logs through logs.py: so do its workers (forkserver: nothing inherited)
        logs.configure_logging(*log_config)


def _run_unit(job_id: int, unit: jobs.Unit, settings: Settings) -> dict:
    return jobs.run_unit(job_id, unit, settings)


class InlineExecutor(Executor):
    """Runs a job to completion in this process (``run``) or in a background thread (``submit``).

    With more than one unit and ``settings.workers > 1`` the units go to a pool of worker processes
    (forkserver: no thread or model state is inherited); each unit commits its own short transaction,
    which SQLite in WAL mode serialises.
    """

    def submit(self, job_id: int) -> None:
        logs.event(logger, "job.queued", job_id=job_id, executor="inline")
        threading.Thread(target=self._run_logged, args=(job_id,), name=f"job-{job_id}", daemon=True).start()

    def _run_logged(self, job_id: int) -> None:
        """Background runs: a failure is already recorded on the job row (status, error); log it too."""
        try:
            self.run(job_id)
        except Exception:
            logger.exception("job %s failed", job_id)

    def run(self, job_id: int, progress: ProgressFn | None = None) -> None:
        try:
            if self.settings.workers > 1:
                _start_fork_server()  # it imports PRELOAD while this process plans the job
            units = jobs.plan_job(job_id, self.settings)
            total = self._total(job_id)
            if progress:
                progress(0, total)
            workers = min(self.settings.workers, len(units))
            if workers <= 1:
                for unit in units:
                    _run_unit(job_id, unit, self.settings)
                    self._report(job_id, progress)
            else:
                ctx = _start_fork_server()
                init = (logs.current_config(),)
                with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=init) as pool:
                    futures = [pool.submit(_run_unit, job_id, unit, self.settings) for unit in units]
                    for future in as_completed(futures):
                        future.result()
                        self._report(job_id, progress)
            follow_up = jobs.finish_if_complete(job_id, self.settings, force=True) + self._follow_up(job_id)
        except jobs.AlreadyRunning as exc:  # another live job lists the same source: report, do not fail
            jobs.refuse_already_running(job_id, self.settings, exc)
            raise
        except Exception as exc:
            jobs.fail_job(job_id, self.settings, exc)
            raise
        for next_id in dict.fromkeys(follow_up):
            self.run(next_id, progress)

    def _follow_up(self, job_id: int) -> list[int]:
        with session_scope(self.settings.db_url) as session:
            return list((jobs.get_job(session, job_id).result or {}).get("follow_up", []))

    def _total(self, job_id: int) -> int:
        with session_scope(self.settings.db_url) as session:
            return jobs.get_job(session, job_id).total

    def _report(self, job_id: int, progress: ProgressFn | None) -> None:
        if progress is None:
            return
        with session_scope(self.settings.db_url) as session:
            job = jobs.get_job(session, job_id)
            done, _failed = kinds.steps(job.kind).progress(session, job)
            progress(done, job.total)
