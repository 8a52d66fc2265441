"""An executor runs a job's units; the work itself lives in annotate_anyone.jobs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from annotate_anyone.settings import Settings

ProgressFn = Callable[[int, int], None]  # (done, total)


class Executor(ABC):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def submit(self, job_id: int) -> None:
        """Start the job (call after the transaction that created it has committed)."""


def get_executor(settings: Settings) -> Executor:
    """The executor chosen by ``AA_EXECUTOR`` (default: inline in embedded mode, Celery in service mode)."""
    if settings.executor_name == "celery":
        from annotate_anyone.executors.celery import CeleryExecutor

        return CeleryExecutor(settings)
    from annotate_anyone.executors.inline import InlineExecutor

    return InlineExecutor(settings)
