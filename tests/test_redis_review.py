"""Attacks on the cluster-wide components on a real redis-server: event
loops that come and go, threads, hostile inputs, faults at random points."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import resil
from redis_support import RedisServer, redis_clean, redis_server  # noqa: F401
from resil.redis import RedisBackend


async def _release_loop(backend: RedisBackend) -> None:
    # this loop's connections, closed before asyncio.run closes the loop
    await backend._async_client().connection_pool.disconnect()


async def _ping(backend: RedisBackend) -> Any:
    try:
        return await backend.command_async("PING")
    finally:
        await _release_loop(backend)


def test_async_backend_serves_a_second_event_loop(redis_clean: RedisServer) -> None:
    # asyncio.run twice: the second loop must not get the first loop's connections
    backend = RedisBackend(redis_clean.async_client(), timeout=0.5)
    try:
        for _ in range(3):
            assert asyncio.run(_ping(backend)) is True
        assert backend.stats()["backend"] == "redis"
        assert backend.stats()["outages"] == 0
    finally:
        backend.close()


def test_async_backend_two_loops_in_two_threads(redis_clean: RedisServer) -> None:
    backend = RedisBackend(redis_clean.async_client(), timeout=0.5)
    errors: list[BaseException] = []

    async def many() -> None:
        try:
            for i in range(50):
                await backend.command_async("INCR", "review:n")
        finally:
            await _release_loop(backend)

    def run() -> None:
        try:
            asyncio.run(many())
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)
    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    backend.close()
    assert errors == []
    assert int(redis_clean.client().get("review:n")) == 150


def test_idempotent_same_key_from_two_event_loops(redis_clean: RedisServer) -> None:
    # two threads, each with its own loop, call one key at once: both get the
    # result, the function runs once (no "attached to a different loop")
    backend = RedisBackend(redis_clean.client(), timeout=0.5)
    calls: list[Any] = []

    @resil.idempotent(lambda x: x, ttl=10, cluster=backend, name="review-loops")
    async def double(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.2)
        return x * 2

    out: list[Any] = []

    def run() -> None:
        try:
            out.append(asyncio.run(double(5)))
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            out.append(exc)
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    backend.close()
    assert out == [10, 10]
    assert calls == [5]
