"""Token-bucket rate limiting, shared by every server process: a SQLite file in the embedded home, Redis for
a service fleet (``AA_PROFILE=service`` with a ``redis://`` broker: every API process on every machine spends
from the same buckets). The in-memory limiter counts for one process only: tests and benchmarks, never a
server (``serve --workers N`` would multiply its limit by N).

A limiter whose store fails (Redis down or timing out, the SQLite file locked past its timeout) **fails
open**: the request is let through, the error is logged (at most once per ``LOG_EVERY_S`` per limiter) and
counted in ``aa_ratelimit_errors_total{backend}``. An outage of the limiter's store must not turn every
request into an error; the limit returns with the store.

No limiter ever forgets a bucket before it has refilled completely: forgetting a bucket is the same as
refilling it, so freeing a locked-out one early would hand an attacker fresh attempts.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from annotate_anyone.metrics import RATE_LIMIT_ERRORS

log = logging.getLogger(__name__)
LOG_EVERY_S = 30.0  # a failing store is logged at most this often per limiter (every error is counted)


class RateLimiter(ABC):
    """``take(key, capacity, rate)`` spends one token; returns 0.0 if allowed, else seconds to wait."""

    backend = "memory"
    _last_logged = float("-inf")

    @abstractmethod
    def take(self, key: str, *, capacity: float, rate: float) -> float: ...

    def _fail_open(self, exc: BaseException) -> float:
        """The store failed: count it, log it now and then, and let the request through."""
        RATE_LIMIT_ERRORS.labels(self.backend).inc()
        now = time.monotonic()
        if now - self._last_logged >= LOG_EVERY_S:
            self._last_logged = now
            log.warning(
                "rate limiter (%s) failed, letting requests through: %s: %s", self.backend, type(exc).__name__, exc
            )
        return 0.0


class MemoryRateLimiter(RateLimiter):
    """Buckets in a dict guarded by a lock; for one process only.

    Memory is bounded by ``max_keys``: when full, buckets that have refilled are dropped (forgetting them
    changes nothing); when none has, a new key waits until one will have (never a locked-out bucket freed).
    """

    def __init__(self, clock: Any = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float, float, float]] = {}  # key: tokens, last, capacity, rate
        self._lock = threading.Lock()
        self._max_keys = max_keys
        self._full_until = 0.0  # no bucket refills before this: new keys wait

    def take(self, key: str, *, capacity: float, rate: float) -> float:
        now = self._clock()
        with self._lock:
            tokens, last, _, _ = self._buckets.get(key, (capacity, now, capacity, rate))
            tokens = min(capacity, tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now, capacity, rate)
                return (1.0 - tokens) / rate
            if key not in self._buckets and len(self._buckets) >= self._max_keys:
                wait = self._make_room(now)
                if wait > 0:
                    return wait
            self._buckets[key] = (tokens - 1.0, now, capacity, rate)
            return 0.0

    def _make_room(self, now: float) -> float:
        """Drop every refilled bucket; 0.0 if room was made, else the seconds until the first refills."""
        if now < self._full_until:
            return self._full_until - now
        refill_at = {k: last + (cap - tokens) / r for k, (tokens, last, cap, r) in self._buckets.items()}
        for key in [k for k, at in refill_at.items() if at <= now]:
            del self._buckets[key]
        if len(self._buckets) < self._max_keys:
            return 0.0
        self._full_until = min(refill_at.values())
        return self._full_until - now


_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - ts) * rate)
local wait = 0
if tokens < 1 then
  wait = (1 - tokens) / rate
else
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return tostring(wait)
"""


class RedisRateLimiter(RateLimiter):
    """The same bucket as an atomic Lua script, so every API process shares one budget per key.
    Fails open on any Redis error (connection refused, timeout, a read-only replica, ...)."""

    backend = "redis"

    def __init__(self, url: str, namespace: str = "aa:rl:", timeout: float = 0.5) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # one attempt, no backoff: a request must not wait seconds on a Redis that is down (it fails open)
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._script = self._client.register_script(_TAKE)
        self._namespace = namespace
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    def take(self, key: str, *, capacity: float, rate: float) -> float:
        try:
            return float(self._script(keys=[self._namespace + key], args=[capacity, rate]))
        except self._errors as exc:
            return self._fail_open(exc)


class SqliteRateLimiter(RateLimiter):
    """The same bucket in a SQLite file, so every server process on this machine shares one budget per key.

    One short ``BEGIN IMMEDIATE`` transaction per take (the file lock serialises processes); the file is
    scratch state (no fsync). Rows whose bucket has refilled are deleted now and then.
    """

    SWEEP_EVERY = 1000  # takes between deletions of refilled buckets
    backend = "sqlite"

    def __init__(self, path: str | Path, clock: Any = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._local = threading.local()
        self._count = 0
        with self._conn() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, tokens REAL NOT NULL, ts REAL NOT NULL,"
                " capacity REAL NOT NULL, rate REAL NOT NULL)"
            )

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            self._local.conn = conn
        return conn

    def take(self, key: str, *, capacity: float, rate: float) -> float:
        try:
            return self._take(key, capacity, rate)
        except sqlite3.Error as exc:  # locked past the timeout, disk full, file gone: fail open
            return self._fail_open(exc)

    def _take(self, key: str, capacity: float, rate: float) -> float:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = self._clock()
            row = conn.execute("SELECT tokens, ts FROM buckets WHERE key = ?", (key,)).fetchone()
            tokens, last = row if row else (capacity, now)
            tokens = min(capacity, tokens + max(0.0, now - last) * rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate
            if wait == 0.0:
                tokens -= 1.0
            conn.execute(
                "INSERT OR REPLACE INTO buckets (key, tokens, ts, capacity, rate) VALUES (?, ?, ?, ?, ?)",
                (key, tokens, now, capacity, rate),
            )
            self._count += 1
            if self._count % self.SWEEP_EVERY == 0:
                conn.execute("DELETE FROM buckets WHERE ts + (capacity - tokens) / rate <= ?", (now,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return wait
