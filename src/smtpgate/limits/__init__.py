"""Shared limits on clients and senders, like Postfix's ``anvil`` and Haraka's ``limit``:
concurrent connections and connections per minute per client (IPv6 per /64 network),
messages and recipients per minute per client and per sender.

`Limiter` wraps an SMTPServer's handlers; its counters live in this process
(`MemoryBackend`) or in Redis (`RedisBackend`, shared by every receiver), so a client
that spreads its connections over several receivers is still limited.
"""

from __future__ import annotations

from .backend import LimitBackend, MemoryBackend, Verdict
from .limiter import LIMIT_NAMES, Limiter
from .policy import LimitPolicy, Rate, TrustedNetworks, client_key, parse_rate
from .redis import RedisBackend

__all__ = [
    "LIMIT_NAMES",
    "LimitBackend",
    "LimitPolicy",
    "Limiter",
    "MemoryBackend",
    "Rate",
    "RedisBackend",
    "TrustedNetworks",
    "Verdict",
    "client_key",
    "parse_rate",
]
