"""Jobs: the runtime every long action runs on, and the table of job kinds.

- :mod:`.kinds`: the one table of kinds (steps, permission, parameters);
- :mod:`.units`: :class:`Unit` and the ``job_units`` rows that make every unit idempotent;
- :mod:`.rows`: job rows, heartbeats, :class:`AlreadyRunning`;
- :mod:`.runtime`: plan, run a unit, finish, fail; reclaim jobs whose heartbeat stopped;
- :mod:`.policy`: retry or fail a unit that raised; :mod:`.recovery`: start-up recovery.

Executors (``annotate_anyone.executors``) drive the runtime; the kinds' own code lives in their domain
packages and imports only :mod:`.rows` and :mod:`.units` from here.
"""

from annotate_anyone.jobs.kinds import KINDS, STARTABLE
from annotate_anyone.jobs.rows import (
    LIVE,
    AlreadyRunning,
    cancel_job,
    create_job,
    get_job,
    heartbeat,
    list_jobs,
    stale_before,
)
from annotate_anyone.jobs.runtime import (
    fail_job,
    finish_if_complete,
    plan_job,
    reclaim_stale,
    refuse_already_running,
    run_unit,
)
from annotate_anyone.jobs.units import Unit

__all__ = [
    "KINDS",
    "LIVE",
    "STARTABLE",
    "AlreadyRunning",
    "Unit",
    "cancel_job",
    "create_job",
    "fail_job",
    "finish_if_complete",
    "get_job",
    "heartbeat",
    "list_jobs",
    "plan_job",
    "reclaim_stale",
    "refuse_already_running",
    "run_unit",
    "stale_before",
]
