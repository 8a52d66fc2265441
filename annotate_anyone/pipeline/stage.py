"""Stage and Filter base classes: one job each; the base class counts, times and records drop reasons."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from annotate_anyone.errors import MissingExtra
from annotate_anyone.metrics import observe_stage
from annotate_anyone.pipeline.record import Record


@dataclass
class StageStats:
    """What one stage saw: records in and out, drops by reason, and time spent."""

    name: str
    records_in: int = 0
    records_out: int = 0
    seconds: float = 0.0
    dropped: Counter[str] = field(default_factory=Counter)

    def merge(self, other: StageStats) -> None:
        self.records_in += other.records_in
        self.records_out += other.records_out
        self.seconds += other.seconds
        self.dropped.update(other.dropped)

    @property
    def ms_per_record(self) -> float:
        return 1000.0 * self.seconds / self.records_in if self.records_in else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.records_in,
            "out": self.records_out,
            "seconds": round(self.seconds, 4),
            "dropped": dict(self.dropped),
        }


class Stage:
    """A pipeline step with one job.

    Subclasses implement :meth:`process` (one record) or override :meth:`process_batch`. They
    declare heavy dependencies in ``requires`` as ``{"module": "extra"}``; :meth:`check_requirements`
    fails at build time with a message naming the extra. Heavy models load in :meth:`setup`, which
    runs once per process before the first record (so it runs inside worker processes).
    """

    name: ClassVar[str] = "stage"
    requires: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        self.stats = StageStats(self.name)
        self._ready = False

    @classmethod
    def check_requirements(cls) -> None:
        import importlib.util

        for module, extra in cls.requires.items():
            if importlib.util.find_spec(module) is None:
                raise MissingExtra(f"stage '{cls.name}'", extra, module)

    def setup(self) -> None:
        """Load models or open resources; called once per process, lazily."""

    def process(self, record: Record) -> Record:
        """Transform one record in place, or drop it with ``record.drop(reason)``."""
        raise NotImplementedError

    def process_batch(self, records: list[Record]) -> list[Record]:
        """Run the stage over a batch; dropped records pass through untouched."""
        if not self._ready:
            self.setup()
            self._ready = True
        live = [r for r in records if not r.dropped]
        start = time.perf_counter()
        self._run(live)
        seconds = time.perf_counter() - start
        self.stats.seconds += seconds
        self.stats.records_in += len(live)
        passed = 0
        for r in live:
            if r.dropped:
                self.stats.dropped[r.drop_reason or "unknown"] += 1
            else:
                passed += 1
        self.stats.records_out += passed
        if live:
            observe_stage(self.name, seconds, passed, len(live) - passed)
        return records

    def _run(self, live: list[Record]) -> None:
        for record in live:
            try:
                self.process(record)
            except Exception as exc:  # a failing item never stops the batch: it is dropped with a reason
                record.drop(f"{self.name}:error", f"{type(exc).__name__}: {exc}")


class Filter(Stage):
    """A stage that keeps or drops: :meth:`check` returns ``None`` to keep or a reason to drop."""

    def check(self, record: Record) -> str | tuple[str, str] | None:
        raise NotImplementedError

    def process(self, record: Record) -> Record:
        verdict = self.check(record)
        if verdict is None:
            return record
        if isinstance(verdict, tuple):
            return record.drop(*verdict)
        return record.drop(verdict)


def run_stages(stages: Iterable[Stage], records: list[Record]) -> list[Record]:
    """Run ``records`` through ``stages`` in order and return them (dropped ones included)."""
    for stage in stages:
        records = stage.process_batch(records)
    return records
