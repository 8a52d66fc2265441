"""The one retry helper: bounded attempts, refusals at once, waits cut by the deadline."""

from __future__ import annotations

import time

import pytest

from annotate_anyone.retry import call_with_retries, exponential


class Transient(Exception):
    pass


def _failing(times: int, exc: type[Exception] = Transient) -> tuple[list[int], object]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise exc("down")
        return "ok"

    return calls, fn


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, Transient)


def test_retries_until_success_with_exponential_capped_waits() -> None:
    sleeps: list[float] = []
    calls, fn = _failing(3)
    out = call_with_retries(fn, attempts=5, retry_on=is_transient, delay=exponential(0.5, 1.5), sleep=sleeps.append)
    assert out == "ok" and len(calls) == 4 and sleeps == [0.5, 1.0, 1.5]


def test_attempts_are_bounded_and_the_last_failure_is_raised() -> None:
    sleeps: list[float] = []
    calls, fn = _failing(10)
    with pytest.raises(Transient):
        call_with_retries(fn, attempts=3, retry_on=is_transient, delay=exponential(1, 8), sleep=sleeps.append)
    assert len(calls) == 3 and sleeps == [1, 2]


def test_a_refusal_is_raised_at_once() -> None:
    calls, fn = _failing(1, ValueError)
    with pytest.raises(ValueError):
        call_with_retries(fn, attempts=5, retry_on=is_transient, delay=exponential(1, 8), sleep=pytest.fail)
    assert len(calls) == 1


def test_no_wait_reaches_past_the_deadline() -> None:
    sleeps: list[float] = []
    calls, fn = _failing(10)
    deadline = time.monotonic() + 3.5
    with pytest.raises(Transient):
        call_with_retries(fn, attempts=10, retry_on=is_transient, delay=exponential(1, 8), deadline=deadline,
                          sleep=sleeps.append)  # fmt: skip
    assert sleeps == [1, 2] and len(calls) == 3  # the third wait (4 s) would end after the deadline
