"""Follow-ups on the Redis layer against a real redis-server: a backend
dropped without close() is collected and its thread ends; text UTF-8
cannot encode is refused by name before anything is written, on Redis and
in SQLite alike; hostile payloads and close() during concurrent publishes."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import resil
from redis_support import RedisServer, redis_clean, redis_server  # noqa: F401
from tests_support import switch_interval
from resil.redis import RedisBackend, RedisUnavailable, StreamStore


# ---------------------------------------------------------------- collection
def _thread_of(backend: RedisBackend) -> threading.Thread:
    thread = backend._thread
    assert thread is not None and thread.is_alive()
    return thread


def _gone(ref: weakref.ref[Any], thread: threading.Thread, within: float = 5.0) -> None:
    """Collects garbage until ``ref`` is dead, then waits for ``thread`` to end."""
    deadline = time.monotonic() + within
    while ref() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert ref() is None, "the backend was not collected"
    thread.join(max(0.0, deadline - time.monotonic()))
    assert not thread.is_alive(), "the background thread outlived its backend"


def _clients(server: RedisServer, name: str) -> int:
    c = server.client()
    try:
        return sum(1 for info in c.client_list() if info.get("name") == name)
    finally:
        c.close()


@pytest.fixture
def no_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails the test when resil logs an error or a thread dies of an exception."""
    died: list[Any] = []
    old = threading.excepthook
    threading.excepthook = died.append
    caplog.set_level(logging.WARNING, logger="resil")
    try:
        yield
    finally:
        threading.excepthook = old
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [] and died == []


def _backend_with_a_job(server: RedisServer, prefix: str, ran: threading.Event
                        ) -> tuple[weakref.ref[RedisBackend], threading.Thread]:
    backend = RedisBackend(server.client(client_name=prefix), prefix=prefix, timeout=1.0)

    def job() -> None:  # its closure holds the backend: a cycle, which gc may collect
        backend.command("PING")
        ran.set()
    backend.every(0.005, job)
    assert ran.wait(5)
    return weakref.ref(backend), _thread_of(backend)


def test_a_backend_dropped_without_close_is_collected_and_its_thread_ends(
        redis_clean: RedisServer, no_errors: None) -> None:
    ran = threading.Event()
    ref, thread = _backend_with_a_job(redis_clean, "dropped", ran)
    assert _clients(redis_clean, "dropped") == 1
    _gone(ref, thread)
    # its connection is released: Redis sees it go
    deadline = time.monotonic() + 5
    while _clients(redis_clean, "dropped") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _clients(redis_clean, "dropped") == 0


def test_a_backend_without_jobs_dropped_is_collected(redis_clean: RedisServer,
                                                    no_errors: None) -> None:
    backend = RedisBackend(redis_clean.client(), prefix="idle:")
    task = backend.every(60.0, lambda: None)
    thread = _thread_of(backend)
    task.cancel()
    backend.wake()
    ref = weakref.ref(backend)
    del backend
    _gone(ref, thread)


def test_a_backend_and_its_cluster_breaker_dropped_are_collected(
        redis_clean: RedisServer, no_errors: None) -> None:
    def build() -> tuple[weakref.ref[RedisBackend], weakref.ref[Any], threading.Thread]:
        backend = RedisBackend(redis_clean.client(), prefix="cb:", timeout=1.0)
        breaker = resil.CircuitBreaker("drop-me", cluster=backend, sync_interval=0.01,
                                       min_hosts=1)
        for _ in range(5):
            with breaker:
                pass
        backend.wake()
        deadline = time.monotonic() + 5
        while breaker.stats()["cluster"]["age"] is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert breaker.stats()["cluster"]["age"] is not None  # it synchronised
        return weakref.ref(backend), weakref.ref(breaker), _thread_of(backend)
    ref, breaker_ref, thread = build()
    _gone(ref, thread)
    assert breaker_ref() is None


def test_a_backend_held_by_a_live_breaker_stays_and_close_still_ends_it(
        redis_clean: RedisServer, no_errors: None) -> None:
    backend = RedisBackend(redis_clean.client(), prefix="kept:", timeout=1.0)
    breaker = resil.CircuitBreaker("kept", cluster=backend, sync_interval=0.01, min_hosts=1)
    ref = weakref.ref(backend)
    thread = _thread_of(backend)
    del backend
    for _ in range(3):
        gc.collect()
    time.sleep(0.05)
    assert ref() is not None and thread.is_alive()  # the breaker synchronises through it
    assert breaker.stats()["backend"] == "redis"
    backend = ref()
    assert backend is not None
    backend.close()
    thread.join(5)
    assert not thread.is_alive()
    with pytest.raises(RedisUnavailable):
        backend.command("PING")
    with pytest.raises(RuntimeError):
        backend.every(1.0, lambda: None)
    del backend, breaker
    _gone(ref, thread)


def test_backends_dropped_while_their_jobs_run_under_thread_switches(
        redis_clean: RedisServer, no_errors: None) -> None:
    # Finalisation races a job that is running, about to run or rescheduling:
    # every thread ends, every backend goes, nothing is logged.
    rng = random.Random(7)
    with switch_interval(1e-5):
        for i in range(12):
            ran = threading.Event()
            backend = RedisBackend(redis_clean.client(), prefix=f"race{i}:", timeout=1.0)
            jobs = [backend.every(0.001, lambda b=backend: b.command("PING"))
                    for _ in range(3)]
            backend.every(0.001, ran.set)
            assert ran.wait(5)
            if rng.random() < 0.3:
                backend.wake()
            if rng.random() < 0.3:
                jobs[0].cancel()
            time.sleep(rng.random() * 0.005)
            ref, thread = weakref.ref(backend), _thread_of(backend)
            del backend, jobs
            _gone(ref, thread)


def test_a_backend_dropped_with_every_component_on_it_is_collected(
        redis_clean: RedisServer, no_errors: None) -> None:
    # Each component holds the backend as long as it lives; once all are
    # dropped, their restore listeners and jobs leave nothing rooted.
    def build() -> tuple[weakref.ref[RedisBackend], threading.Thread, list[weakref.ref[Any]]]:
        backend = RedisBackend(redis_clean.client(), prefix="all:", timeout=0.05)
        dedup = resil.Deduplicator(60.0, cluster=backend, name="d")
        assert dedup.seen("x") is False and dedup.seen("x") is True
        limiter = resil.RateLimiter(100.0, burst=5, name="l", cluster=backend)
        assert limiter.try_acquire()

        @resil.idempotent(lambda k: k, ttl=60.0, cluster=backend, name="i", lease=0.3)
        async def job(k: str) -> str:
            await asyncio.sleep(0.15)  # long enough for a lease renewal
            return k
        assert asyncio.run(job("a")) == "a"
        store = StreamStore(backend, "all")
        dlq = resil.DeadLetterQueue(store=store, name="q")
        dlq.put({"n": 1}, "failed")

        async def publish() -> None:
            bus = resil.EventBus(store=store)
            await bus.publish("t", {"n": 1})
            await bus.aclose()
        asyncio.run(publish())
        breaker = resil.CircuitBreaker("all", cluster=backend, sync_interval=0.01)
        thread = _thread_of(backend)
        refs = [weakref.ref(o) for o in (dedup, limiter, store, dlq, breaker, job)]
        return weakref.ref(backend), thread, refs
    ref, thread, refs = build()
    _gone(ref, thread)
    assert [r() for r in refs] == [None] * len(refs)
