"""One sending rate for every worker, and one pause when the ESP says "too many".

The limit is a GCRA schedule kept in Redis: one key holds the theoretical
arrival time (TAT) of the next message, and a Lua script reserves `cost`
messages atomically, answering how long the caller must wait before its call
may start. Every worker process and thread reserves from the same key, so ten
workers together never go above DIGEST_ESP_RATE messages per second. A batch
of N recipients costs N.

When the ESP answers 429, `pause(seconds)` sets a shared "pause until" (its
Retry-After, or a backoff): every reservation waits it out, so one worker's 429
slows all of them down instead of each worker spending its own attempts.

The embedded mode (no Redis) uses the same schedule in this process.
"""

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from django.conf import settings

# KEYS[1] = TAT (microseconds, Redis clock), KEYS[2] = pause-until (microseconds)
# ARGV[1] = microseconds per message (0 = no rate limit), ARGV[2] = cost
# Returns microseconds to wait before the reserved call may start (0 = go now).
# While a pause is in force nothing is reserved and the answer is negative: the
# caller waits that long and asks again.
_RESERVE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then
  return now - pause
end
local interval = tonumber(ARGV[1])
if interval <= 0 then
  return 0
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(tat, now)
local after = start + interval * tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%d', after), 'PX', math.ceil((after - now) / 1000) + 1000)
return start - now
"""

# KEYS[1] = pause-until; ARGV[1] = seconds. Only ever moves the pause later.
_PAUSE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local until_ = now + math.floor(tonumber(ARGV[1]) * 1000000)
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > current then
  redis.call('SET', KEYS[1], string.format('%d', until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return until_
"""


class RateLimiter(Protocol):
    def reserve(self, cost: int = 1) -> float:
        """Seconds until the reserved call may start; negative while paused
        (nothing reserved: wait that long and ask again)."""
        ...

    def pause(self, seconds: float) -> None: ...


def wait_for_turn(limiter: RateLimiter, cost: int, *, sleep: Callable[[float], None] = time.sleep) -> float:
    """Block until `cost` messages may go out; returns the seconds waited."""
    waited = 0.0
    while True:
        wait = limiter.reserve(cost)
        if wait < 0:  # paused: nothing reserved yet
            sleep(-wait)
            waited -= wait
            continue
        if wait > 0:
            sleep(wait)
        return waited + wait


class LocalRateLimiter:
    """The same schedule within one process, for the embedded mode."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self.lock = threading.Lock()
        self.tat = 0.0
        self.paused_until = 0.0

    def reserve(self, cost: int = 1) -> float:
        with self.lock:
            now = self.clock()
            if self.paused_until > now:
                return now - self.paused_until
            if not self.interval:
                return 0.0
            start = max(self.tat, now)
            self.tat = start + self.interval * cost
            return start - now

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.paused_until = max(self.paused_until, self.clock() + seconds)


class RedisRateLimiter:
    """The schedule in Redis, shared by every worker that uses the same keys.

    Without a rate (0 = unlimited) only the shared pause matters: it is read
    from Redis at most every `pause_poll` seconds instead of once per message,
    so an unlimited night costs no Redis round trip per call, and a 429 seen by
    one worker reaches the others within that time."""

    pause_poll = 0.2

    def __init__(self, rate: float, client: Any = None, prefix: str | None = None):
        prefix = prefix or f"{settings.CACHES['default'].get('KEY_PREFIX', 'paperboy')}:esp"
        self.keys = [f"{prefix}:tat", f"{prefix}:pause"]
        self.interval_us = int(1_000_000 / rate) if rate > 0 else 0
        self.client = client or shared_redis()
        self._reserve = self.client.register_script(_RESERVE)
        self._pause = self.client.register_script(_PAUSE)
        self.lock = threading.Lock()
        self.paused_until = 0.0  # time.monotonic() until which the last read pause holds
        self.checked_at = -1e9

    def reserve(self, cost: int = 1) -> float:
        if not self.interval_us:
            now = time.monotonic()
            with self.lock:
                if now - self.checked_at < self.pause_poll:
                    return min(0.0, now - self.paused_until)
                self.checked_at = now
            wait = int(self._reserve(keys=self.keys, args=[0, 1])) / 1_000_000
            with self.lock:
                self.paused_until = now - wait
            return wait
        return int(self._reserve(keys=self.keys, args=[self.interval_us, max(1, cost)])) / 1_000_000

    def pause(self, seconds: float) -> None:
        self._pause(keys=self.keys[1:], args=[max(0.0, seconds)])
        with self.lock:
            self.paused_until = max(self.paused_until, time.monotonic() + seconds)
            self.checked_at = time.monotonic()


_shared: dict[tuple[Any, ...], RateLimiter] = {}
_shared_lock = threading.RLock()
_clients: dict[str, Any] = {}


def shared_redis(url: str | None = None) -> Any:
    """One Redis client (and connection pool) per URL and process, shared by
    every sender thread: clients made per chunk would each open connections anew."""
    import redis

    url = url or settings.REDIS_URL
    with _shared_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return client


def esp_rate_limiter() -> RateLimiter:
    """The process's limiter for the configured ESP rate (Redis when configured)."""
    key = (settings.REDIS_URL, settings.DIGEST_ESP_RATE)
    with _shared_lock:
        limiter = _shared.get(key)
        if limiter is None:
            if settings.REDIS_URL:
                limiter = RedisRateLimiter(settings.DIGEST_ESP_RATE)
            else:
                limiter = LocalRateLimiter(settings.DIGEST_ESP_RATE)
            _shared.clear()
            _shared[key] = limiter
        return limiter
