"""Attacks on the cluster-wide components on a real redis-server: event
loops that come and go, threads, hostile inputs, faults at random points."""

from __future__ import annotations

import asyncio
import gc
import random
import sys
import threading
import time
import warnings
from typing import Any

import pytest

import resil
from redis_support import FaultProxy, RedisServer, redis_clean, redis_server  # noqa: F401
from tests_support import run_threads
from resil.redis import RedisBackend, RedisUnavailable, Script, StreamStore


async def _release_loop(backend: RedisBackend) -> None:
    # this loop's connections, closed before asyncio.run closes the loop
    await backend._async_client().connection_pool.disconnect()


async def _ping(backend: RedisBackend) -> Any:
    try:
        return await backend.command_async("PING")
    finally:
        await _release_loop(backend)


def _loops_in_threads(main: Any, n: int) -> list[Any]:
    """asyncio.run(main()) in each of n threads at once: each one's result or exception."""
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            out[i] = asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            out[i] = exc
    run_threads(run, n)
    return out


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
    async def many() -> None:
        try:
            for i in range(50):
                await backend.command_async("INCR", "review:n")
        finally:
            await _release_loop(backend)

    outcomes = _loops_in_threads(many, 3)
    backend.close()
    assert outcomes == [None] * 3
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

    out = _loops_in_threads(lambda: double(5), 2)
    backend.close()
    assert out == [10, 10]
    assert calls == [5]


ROUND_TRIP_SCRIPT = Script("return redis.call('INCR', KEYS[1])")


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    t0 = time.monotonic()
    try:
        return fn(*args), time.monotonic() - t0
    except RedisUnavailable as exc:
        return exc, time.monotonic() - t0


def test_first_operations_on_new_connections_take_one_round_trip(
        redis_clean: RedisServer) -> None:
    # Round trips of 0.28 s against a timeout of 0.5: the first script, a new
    # connection after a drop and a script after an outage each answer (no
    # handshake or NOSCRIPT round trip on top), within the timeout.
    proxy = FaultProxy(redis_clean.port)
    proxy.delay = 0.14  # each way
    backend = RedisBackend(proxy.client(), timeout=0.5, cooldown=0.2)
    key = backend.key("review", "rt")
    try:
        result, took = _timed(backend.run, ROUND_TRIP_SCRIPT, [key], [])
        assert result == 1 and took < 0.5, took
        proxy.drop()
        proxy.heal()
        result, took = _timed(backend.command, "PING")
        assert result is True and took < 0.5, took
        redis_clean.kill()
        assert isinstance(_timed(backend.run, ROUND_TRIP_SCRIPT, [key], [])[0], RedisUnavailable)
        redis_clean.start()  # restarted empty: no scripts
        time.sleep(0.3)
        result, took = _timed(backend.run, ROUND_TRIP_SCRIPT, [key], [])
        assert result == 1 and took < 0.5, took
        assert backend.stats()["backend"] == "redis"
    finally:
        backend.close()
        proxy.close()


def test_close_from_two_threads_while_others_run_operations(redis_clean: RedisServer) -> None:
    # operations cut by close() raise RedisUnavailable (never redis-py's
    # internals) and are no outage of Redis
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        rng = random.Random(16)
        for _ in range(10):
            backend = RedisBackend(redis_clean.client(), timeout=0.5, cooldown=0.3)
            errors: list[BaseException] = []
            stop = threading.Event()

            def work() -> None:
                while not stop.is_set():
                    try:
                        backend.run(ROUND_TRIP_SCRIPT, [backend.key("review", "c")], [])
                        backend.command("PING")
                    except RedisUnavailable:
                        pass
                    except BaseException as exc:  # noqa: BLE001 - collected for the assert
                        errors.append(exc)
                        return
            workers = [threading.Thread(target=work) for _ in range(4)]
            for t in workers:
                t.start()
            time.sleep(rng.random() * 0.03)
            closers = [threading.Thread(target=backend.close) for _ in range(2)]
            for t in closers:
                t.start()
            for t in closers:
                t.join(5)
            stop.set()
            for t in workers:
                t.join(5)
            assert errors == []
            assert backend.stats()["outages"] == 0
            assert backend.stats()["backend"] == "local-fallback"  # closed: what is in force
            with pytest.raises(RedisUnavailable, match="closed"):
                backend.command("PING")
    finally:
        sys.setswitchinterval(old)


@pytest.mark.parametrize("host", ["A", "A|1|2"])
def test_a_dead_letter_reprocessed_by_id_is_not_taken_by_another_hosts_reprocess_all(
        redis_clean: RedisServer, host: str) -> None:
    # host A reprocesses entry 1 by id before the consumer group read it; host
    # B's reprocess_all meanwhile must not run it a second time
    a = StreamStore(RedisBackend(redis_clean.client(), timeout=0.5, host=host), "dl")
    b = StreamStore(RedisBackend(redis_clean.client(), timeout=0.5, host="B"), "dl")
    qa = resil.DeadLetterQueue(store=a, name="q")
    qb = resil.DeadLetterQueue(store=b, name="q")
    runs: list[Any] = []

    async def main() -> None:
        qa.put({"x": 1}, "boom")
        (entry,) = qa.list()

        async def slow(item: Any) -> None:
            runs.append(("A", item))
            await asyncio.sleep(0.3)
            raise RuntimeError("again")

        async def fast(item: Any) -> None:
            runs.append(("B", item))
        first = asyncio.create_task(qa.reprocess(entry.id, slow))
        await asyncio.sleep(0.1)
        assert await qb.reprocess_all(fast) == {"successful": 0, "failed": 0}
        assert await first is False
        assert runs == [("A", {"x": 1})]
        # the failed entry stays with A: B's next run leaves it, A's takes it
        assert await qb.reprocess_all(fast) == {"successful": 0, "failed": 0}
        assert await qa.reprocess_all(fast) == {"successful": 1, "failed": 0}
        assert runs == [("A", {"x": 1}), ("B", {"x": 1})]
        assert qa.list() == []
    try:
        asyncio.run(main())
    finally:
        for store in (a, b):
            store.close()
            store.backend.close()


def test_event_loops_that_ended_without_aclose_are_not_kept_alive(
        redis_clean: RedisServer) -> None:
    # asyncio.run per request: each loop's connections are dropped once a
    # later loop uses the backend, so ended loops do not pile up
    backend = RedisBackend(redis_clean.async_client(), timeout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the dropped, unclosed connections
        for _ in range(20):
            assert asyncio.run(backend.command_async("PING")) is True
        gc.collect()
        loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
        assert len(loops) <= 2
        backend.close()
        del loops, backend
        gc.collect()


def test_a_bus_reader_ends_with_its_backend(redis_clean: RedisServer) -> None:
    # backend.close() while a bus still follows the stream: the reader thread
    # and its connection do not outlive the backend
    backend = RedisBackend(redis_clean.client(), timeout=0.5)
    store = StreamStore(backend, "ends", block=0.1)
    watcher = redis_clean.client()

    def readers() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name == "resil-stream ends"]

    async def main() -> None:
        bus = resil.EventBus(store=store)
        bus.subscribe("x", lambda e: None)
        await bus.publish("x", {})
        assert readers() == ["resil-stream ends"]
        backend.close()
        t0 = time.monotonic()
        while readers() and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.02)
        assert readers() == []
        assert len(watcher.client_list()) == 1  # only the watcher's connection
        await bus.aclose()
    asyncio.run(main())
    watcher.close()


def test_script_loads_counts_only_loads_redis_answered(redis_clean: RedisServer) -> None:
    backend = RedisBackend(redis_clean.client(), timeout=0.2, cooldown=0.05)
    key = backend.key("review", "loads")
    try:
        assert backend.run(ROUND_TRIP_SCRIPT, [key], []) == 1
        redis_clean.kill()
        for _ in range(5):  # each after the cooldown: a load tried and failed
            time.sleep(0.06)
            with pytest.raises(RedisUnavailable):
                backend.run(ROUND_TRIP_SCRIPT, [key], [])
        redis_clean.start()
        time.sleep(0.06)
        assert backend.run(ROUND_TRIP_SCRIPT, [key], []) == 1
        stats = backend.stats()
        assert stats["script_loads"] == 2 and stats["backend"] == "redis"
        assert stats["outages"] == 1 and stats["restorations"] == 1
    finally:
        backend.close()


def test_components_on_a_closed_backend_say_the_fallback_is_in_force(
        redis_clean: RedisServer) -> None:
    backend = RedisBackend(redis_clean.client(), timeout=0.5)
    dedup = resil.Deduplicator(ttl=30, cluster=backend, name="review-closed")
    assert dedup.seen("a") is False and dedup.stats()["backend"] == "redis"
    backend.close()
    assert dedup.seen("b") is False  # decided on the local set now
    assert dedup.stats()["backend"] == backend.mode == "local-fallback"
