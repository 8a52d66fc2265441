"""Token-bucket rate limiting: in-process for the embedded profile, Redis-backed for a service fleet."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Any


class RateLimiter(ABC):
    """``take(key, capacity, rate)`` spends one token; returns 0.0 if allowed, else seconds to wait."""

    @abstractmethod
    def take(self, key: str, *, capacity: float, rate: float) -> float: ...


class MemoryRateLimiter(RateLimiter):
    """Buckets in a dict guarded by a lock; fine for one process (the embedded server)."""

    def __init__(self, clock: Any = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def take(self, key: str, *, capacity: float, rate: float) -> float:
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / rate
            if len(self._buckets) >= self._max_keys and key not in self._buckets:
                self._buckets.clear()  # bounded memory: forgetting buckets only ever refills them
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0


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
    """The same bucket as an atomic Lua script, so every API process shares one budget per key."""

    def __init__(self, url: str, namespace: str = "aa:rl:") -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._script = self._client.register_script(_TAKE)
        self._namespace = namespace

    def take(self, key: str, *, capacity: float, rate: float) -> float:
        return float(self._script(keys=[self._namespace + key], args=[capacity, rate]))
