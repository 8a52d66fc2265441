"""One retry helper for every call that may fail for a moment (review backend calls, image fetches).

:func:`call_with_retries` calls ``fn`` up to ``attempts`` times. An exception ``retry_on`` rejects is
raised at once; a transient one is retried after ``delay(attempt, exc)`` seconds, unless it was the last
attempt or the wait would reach ``deadline`` (a :func:`time.monotonic` instant): then it is raised as it
is, and the caller decides what running out means (an error of its own, a result with a reason).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def exponential(first: float, most: float) -> Callable[[int, BaseException], float]:
    """Delays ``first``, 2 ``first``, 4 ``first``, ... capped at ``most`` (``attempt`` counts from 0)."""
    return lambda attempt, exc: min(first * 2**attempt, most)


def call_with_retries(
    fn: Callable[[], T],
    *,
    attempts: int,
    retry_on: Callable[[BaseException], bool],
    delay: Callable[[int, BaseException], float],
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    what: str | None = None,
) -> T:
    """``fn()``, retried on transient failures; see the module docstring. ``what`` names the call in a
    warning logged before each retry (none when ``None``)."""
    for attempt in range(max(1, attempts)):
        try:
            return fn()
        except Exception as exc:
            if not retry_on(exc) or attempt >= attempts - 1:
                raise
            wait = delay(attempt, exc)
            if deadline is not None and time.monotonic() + wait >= deadline:
                raise
            if what is not None:
                log.warning("%s failed (%s); retry %d in %.1fs", what, type(exc).__name__, attempt + 1, wait)
            sleep(wait)
    raise AssertionError("unreachable")
