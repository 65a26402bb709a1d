"""Limit counters in Redis, shared by every receiver that uses the same Redis.

Rates are fixed windows (``INCRBY`` + ``PEXPIRE`` on a key per window, numbered by the
Redis server's clock so receivers on different hosts agree). Concurrent connections are
sorted sets of holders scored with their expiry time: a receiver refreshes the holders it
has every ``lease / 3`` seconds (a heartbeat), and a holder whose receiver died expires
after ``lease`` seconds, so a crashed receiver cannot leak slots. Every decision is one
Lua script, atomic on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..redisconn import open_redis
from .backend import Verdict

__all__ = ["RedisBackend"]

logger = logging.getLogger("smtpgate.limits")

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

_ACQUIRE = (
    _NOW
    + """
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  return {1, redis.call('ZCARD', KEYS[1])}
end
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then return {0, n} end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return {1, n + 1}
"""
)

_HIT = (
    _NOW
    + """
local period = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local key = KEYS[1] .. ':' .. math.floor(now / period)
local count = tonumber(redis.call('GET', key) or '0')
if count + amount > tonumber(ARGV[1]) then return {0, count} end
count = redis.call('INCRBY', key, amount)
if count == amount then redis.call('PEXPIRE', key, period + 1000) end
return {1, count}
"""
)

_REFRESH = (
    _NOW
    + """
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', key, lease)
end
return #KEYS
"""
)

_BATCH = 200  # holders refreshed per script call


class RedisBackend:
    """Counters in Redis (``redis://``, ``rediss://``), under ``prefix``."""

    def __init__(
        self,
        url: str,
        *,
        lease: float = 30.0,
        prefix: str = "smtpgate:limit:",
        password_file: str | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.lease = lease
        self.prefix = prefix
        self._client: Any = open_redis(url, password_file=password_file, timeout=timeout)
        self._held: dict[tuple[str, str], None] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._acquire: Any = self._client.register_script(_ACQUIRE)
        self._hit: Any = self._client.register_script(_HIT)
        self._refresh: Any = self._client.register_script(_REFRESH)

    @property
    def _lease_ms(self) -> int:
        return max(1, int(self.lease * 1000))

    async def start(self) -> None:
        """Start the heartbeat, then ping (raises if Redis does not answer; the
        heartbeat goes on, and the limits work again once Redis answers)."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.ensure_future(self._beat())
        await self._client.ping()

    async def acquire(self, key: str, holder: str, limit: int) -> Verdict:
        allowed, count = await self._acquire(keys=[self.prefix + "conn:" + key], args=[holder, limit, self._lease_ms])
        if allowed:
            self._held[(key, holder)] = None
        return Verdict(bool(allowed), int(count))

    async def release(self, key: str, holder: str) -> None:
        self._held.pop((key, holder), None)  # no longer refreshed: expires even if ZREM fails
        await self._client.zrem(self.prefix + "conn:" + key, holder)

    async def hit(self, key: str, limit: int, period: float, amount: int = 1) -> Verdict:
        period_ms = max(1, int(period * 1000))
        allowed, count = await self._hit(keys=[f"{self.prefix}rate:{key}:{period_ms}"], args=[limit, period_ms, amount])
        return Verdict(bool(allowed), int(count))

    async def refresh(self) -> int:
        """Extend the lease of every slot this process holds; returns how many."""
        held = list(self._held)
        for start in range(0, len(held), _BATCH):
            batch = held[start : start + _BATCH]
            keys = [self.prefix + "conn:" + key for key, _ in batch]
            await self._refresh(keys=keys, args=[self._lease_ms, *(holder for _, holder in batch)])
        return len(held)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.refresh()
            except Exception as error:  # Redis away: the next beat tries again
                logger.warning("limits: cannot refresh connection slots in Redis: %s", error)

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        held, self._held = list(self._held), {}
        try:
            for key, holder in held:
                await self._client.zrem(self.prefix + "conn:" + key, holder)
        except Exception as error:
            logger.info("limits: slots not released (they expire in %.0f s): %s", self.lease, error)
        await self._client.aclose()
