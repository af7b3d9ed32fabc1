"""Cluster-wide state on Redis (or Valkey), through redis-py.

:class:`RedisBackend` is the link: give it to ``cluster=`` of a
:class:`resil.CircuitBreaker`, :class:`resil.RateLimiter`,
:class:`resil.Deduplicator` or :func:`resil.idempotent`, and use
:class:`StreamStore` as the store of an :class:`resil.EventBus` or a
:class:`resil.DeadLetterQueue`, so every process on every host shares one
state. resil runs no server of its own. Needs redis-py
(``pip install 'resil[redis]'``).
"""

from __future__ import annotations

from resil.redis._backend import RedisBackend, RedisUnavailable, Script
from resil.redis.stream import StreamStore

__all__ = ["RedisBackend", "RedisUnavailable", "Script", "StreamStore"]
