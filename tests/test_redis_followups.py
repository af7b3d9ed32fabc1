"""Follow-ups on the Redis layer against a real redis-server: a backend
dropped without close() is collected and its thread ends; text UTF-8
cannot encode is refused by name before anything is written, on Redis and
in SQLite alike; hostile payloads and close() during concurrent publishes."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import sys
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
    """Fails the test when resil logs an error, a thread dies of an
    exception or a finalizer raises."""
    gc.collect()  # earlier tests' garbage is theirs
    died: list[Any] = []
    old, old_unraisable = threading.excepthook, sys.unraisablehook
    threading.excepthook = sys.unraisablehook = died.append
    caplog.set_level(logging.WARNING, logger="resil")
    try:
        yield
        gc.collect()
    finally:
        threading.excepthook, sys.unraisablehook = old, old_unraisable
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
    assert _clients(server, prefix) == 1  # its connection (gc may collect it once we return)
    return weakref.ref(backend), _thread_of(backend)


def test_a_backend_dropped_without_close_is_collected_and_its_thread_ends(
        redis_clean: RedisServer, no_errors: None) -> None:
    ran = threading.Event()
    ref, thread = _backend_with_a_job(redis_clean, "dropped", ran)
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


# ----------------------------------------------------------- lone surrogates
@pytest.fixture(params=["redis", "redis-asyncio", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """A StreamStore on a real redis-server (through a blocking or an
    asyncio client), or a SQLiteStore in a file."""
    if request.param == "sqlite":
        sqlite = resil.SQLiteStore(str(tmp_path / "events.db"))
        yield sqlite
        sqlite.close()
        return
    server = request.getfixturevalue("redis_clean")
    client = server.async_client() if request.param == "redis-asyncio" else server.client()
    backend = RedisBackend(client, timeout=1.0)
    stream = StreamStore(backend, "surrogates")
    yield stream
    stream.close()
    backend.close()


async def _closed(bus: resil.EventBus, store: Any) -> None:
    """Closes ``bus`` and the connections of the running loop to Redis,
    before asyncio.run closes the loop."""
    await bus.aclose()
    backend = getattr(store, "backend", None)
    if backend is not None and backend.is_async:
        await backend._async_client().connection_pool.disconnect()


BAD = "bad\ud800text"
FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("event_type", {"event_type": BAD}),
    ("correlation_id", {"correlation_id": BAD}),
    ("idempotency_key", {"idempotency_key": BAD}),
    ("publisher", {"publisher": BAD}),
    ("schema_version", {"schema_version": BAD}),
]


@pytest.mark.parametrize("field, given", FIELDS, ids=[f for f, _ in FIELDS])
def test_text_utf8_cannot_encode_is_refused_by_name_and_nothing_is_numbered(
        store: Any, field: str, given: dict[str, Any]) -> None:
    async def main() -> None:
        bus = resil.EventBus(store=store)
        first = await bus.publish("ok", {"n": 1})
        assert first is not None and first.seq == 1
        kwargs = dict(given)
        event_type = kwargs.pop("event_type", "ok")
        for _ in range(2):
            with pytest.raises(ValueError, match=rf"^{field} must be encodable as UTF-8 "
                                                 r"\(it holds a lone surrogate"):
                await bus.publish(event_type, {"n": 2}, **kwargs)
        assert store.last_seq() == 1
        assert [row["seq"] for row in store.events()] == [1]
        second = await bus.publish("ok", {"n": 3})
        assert second is not None and second.seq == 2  # no gap
        assert [row["seq"] for row in store.events()] == [1, 2]
        await _closed(bus, store)
    asyncio.run(main())


def test_store_append_event_refuses_unencodable_text_before_writing(store: Any) -> None:
    args = dict(event_id="e1", event_type="t", payload_json="{}", timestamp=1.0,
                correlation_id="c", schema_version="1", idempotency_key=None, publisher=None)
    for name in ("event_id", "event_type", "payload_json", "correlation_id", "schema_version",
                 "idempotency_key", "publisher"):
        field = "payload" if name == "payload_json" else name
        with pytest.raises(ValueError, match=f"^{field} must be encodable as UTF-8"):
            store.append_event(**{**args, name: "{\"\ud83d\":1}" if field == "payload" else BAD})
    assert store.last_seq() == 0 and list(store.events()) == []
    with pytest.raises(ValueError, match="^event_type must be encodable as UTF-8"):
        list(store.events(event_type=BAD))
    assert store.append_event(**args) == 1


def test_payload_strings_with_lone_surrogates_round_trip_on_either_store(store: Any) -> None:
    # JSON escapes them (\ud800): stored, read back and replayed unchanged
    payload = {"text": BAD, BAD: [BAD, "\udfff"]}
    got: list[Any] = []

    async def main() -> None:
        bus = resil.EventBus(store=store)
        event = await bus.publish("t", payload)
        assert event is not None and event.seq == 1
        bus.subscribe("t", lambda e: got.append(e.payload))
        assert await bus.replay() == 1
        await _closed(bus, store)
    asyncio.run(main())
    assert got[-1] == payload


def test_dead_letters_with_lone_surrogates_fare_alike_on_either_store(store: Any) -> None:
    dlq = resil.DeadLetterQueue(store=store, name="q")
    with pytest.raises(ValueError, match="^source must be encodable as UTF-8"):
        dlq.put("item", RuntimeError("x"), source=BAD)
    with pytest.raises(ValueError, match="^name must be encodable as UTF-8"):
        resil.DeadLetterQueue(store=store, name=BAD)
    assert dlq.list() == []
    first = dlq.put(BAD, RuntimeError(BAD), source="ok")
    second = dlq.put({"k": [BAD]}, BAD)
    assert (first, second) == (1, 2)
    entries = dlq.list()
    assert [(e.item, e.error, e.error_type) for e in entries] == [
        (BAD, "RuntimeError: bad\\ud800text", "RuntimeError"),
        ({"k": [BAD]}, "bad\\ud800text", "str")]


def test_names_sent_to_redis_are_refused_when_utf8_cannot_encode_them(
        redis_clean: RedisServer) -> None:
    client = redis_clean.client()
    for kwargs, name in (({"prefix": BAD}, "prefix"), ({"host": BAD}, "host")):
        with pytest.raises(ValueError, match=f"^{name} must be encodable as UTF-8"):
            RedisBackend(client, **kwargs)
    backend = RedisBackend(client, timeout=1.0)
    try:
        with pytest.raises(ValueError, match="^stream must be encodable as UTF-8"):
            StreamStore(backend, BAD)
        with pytest.raises(ValueError, match="^name must be encodable as UTF-8"):
            resil.CircuitBreaker(BAD, cluster=backend)
        with pytest.raises(ValueError, match="^name must be encodable as UTF-8"):
            resil.Deduplicator(60.0, cluster=backend, name=BAD)
        with pytest.raises(ValueError, match="^name must be encodable as UTF-8"):
            resil.idempotent(lambda: "k", cluster=backend, name=BAD)
        assert backend._thread is None  # no synchronisation was started for any of them
    finally:
        backend.close()


# ------------------------------------------------------ close under publishes
def test_close_during_concurrent_publishes_tells_each_publisher_the_truth(
        redis_clean: RedisServer, no_errors: None) -> None:
    # close() lets the operations under way finish: an event on the stream
    # was returned to its publisher, one that raised is not on the stream.
    rng = random.Random(11)
    with switch_interval(1e-5):
        for round_ in range(10):
            backend = RedisBackend(redis_clean.client(), prefix=f"cl{round_}:", timeout=1.0)
            store = StreamStore(backend, "s")
            returned: list[int] = []
            refused: list[BaseException] = []
            others: list[BaseException] = []

            def publish(i: int) -> None:
                for n in range(200):
                    try:
                        returned.append(store.append_event(
                            f"{i}-{n}", "t", "{}", 1.0, "c", "1", f"k{i}-{n}" if n % 2 else None,
                            None))
                    except RedisUnavailable as exc:
                        refused.append(exc)
                        return
                    except BaseException as exc:  # noqa: BLE001 - asserted empty
                        others.append(exc)
                        return
            threads = [threading.Thread(target=publish, args=(i,)) for i in range(4)]
            for th in threads:
                th.start()
            time.sleep(rng.random() * 0.03)
            backend.close()
            for th in threads:
                th.join(10)
            assert not any(th.is_alive() for th in threads)
            assert others == []
            events = redis_clean.client().xrange(f"cl{round_}:{{stream:s}}:events")
            stored = sorted(int(fields[b"seq"]) for _, fields in events)
            assert sorted(returned) == stored
            assert stored == list(range(1, len(stored) + 1))
            assert all("closed" in str(exc) for exc in refused)
            store.close()


class _Sneaky(str):
    """A str whose encode(), __format__ and __str__ tell another text."""

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return b"other"

    def __format__(self, spec: str) -> str:
        return "other"

    def __str__(self) -> str:
        return "other"


def test_a_str_subclass_is_stored_as_its_text_on_either_store(store: Any) -> None:
    async def main() -> None:
        bus = resil.EventBus(store=store)
        event = await bus.publish(_Sneaky("t"), {"n": 1}, idempotency_key=_Sneaky("k"),
                                  correlation_id=_Sneaky("c"), publisher=_Sneaky("p"))
        assert event is not None
        await _closed(bus, store)
    asyncio.run(main())
    [row] = store.events()
    assert (row["event_type"], row["idempotency_key"], row["correlation_id"],
            row["publisher"]) == ("t", "k", "c", "p")
    assert store.event_types() == {"t"}


def test_store_append_event_refuses_a_field_that_is_not_a_str(store: Any) -> None:
    args = dict(event_id="e1", event_type="t", payload_json="{}", timestamp=1.0,
                correlation_id="c", schema_version="1", idempotency_key=None, publisher=None)
    for name, bad in (("event_type", 5), ("idempotency_key", b"k"), ("publisher", 1.5)):
        with pytest.raises(TypeError, match=f"^{name} must be a str, not "):
            store.append_event(**{**args, name: bad})
    assert store.last_seq() == 0 and list(store.events()) == []


def test_close_leaves_an_operation_under_way_its_connection_then_closes_it(
        redis_clean: RedisServer) -> None:
    # Redis paused: the PING under way cannot finish. close() returns at
    # once without cutting it; the PING ends within its timeout, refused,
    # and then its connection closes too.
    backend = RedisBackend(redis_clean.client(client_name="underway"), timeout=0.3)
    backend.command("PING")
    outcome: list[BaseException | object] = []
    started = threading.Event()

    def ping() -> None:
        started.set()
        try:
            outcome.append(backend.command("PING"))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            outcome.append(exc)
    redis_clean.client().execute_command("CLIENT", "PAUSE", 700, "ALL")
    th = threading.Thread(target=ping)
    th.start()
    assert started.wait(5)
    time.sleep(0.05)
    t0 = time.monotonic()
    backend.close()
    took = time.monotonic() - t0
    th.join(5)
    assert took < 0.3, took  # close() did not wait for the operation's timeout
    assert len(outcome) == 1 and isinstance(outcome[0], RedisUnavailable)
    time.sleep(0.8)  # the pause ends
    deadline = time.monotonic() + 5
    while _clients(redis_clean, "underway") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _clients(redis_clean, "underway") == 0


def test_a_stream_store_dropped_without_close_is_collected_while_its_backend_lives(
        redis_clean: RedisServer, no_errors: None) -> None:
    # The backend's restore listener must not keep every store made on it.
    backend = RedisBackend(redis_clean.client(), timeout=1.0)
    try:
        refs = []
        for i in range(20):
            store = StreamStore(backend, f"s{i}")
            store.last_seq()
            refs.append(weakref.ref(store))
            del store
        gc.collect()
        assert [r() for r in refs] == [None] * 20
        assert backend._restore_listeners == []
    finally:
        backend.close()


def test_components_dropped_while_their_backend_lives_leave_nothing_on_it(
        redis_clean: RedisServer, no_errors: None) -> None:
    backend = RedisBackend(redis_clean.client(), timeout=0.05)
    try:
        def use() -> list[weakref.ref[Any]]:
            dedup = resil.Deduplicator(60.0, cluster=backend, name="d")
            dedup.seen("x")
            limiter = resil.RateLimiter(100.0, burst=5, name="l", cluster=backend)
            limiter.try_acquire()
            breaker = resil.CircuitBreaker("b", cluster=backend, sync_interval=0.01)
            with breaker:
                pass

            @resil.idempotent(lambda: "k", ttl=60.0, cluster=backend, name="i", lease=0.3)
            async def job() -> int:
                await asyncio.sleep(0.15)  # a lease renewal runs meanwhile
                return 1
            assert asyncio.run(job()) == 1
            dlq = resil.DeadLetterQueue(store=StreamStore(backend, "s"), name="q")
            dlq.put(1, "e")
            return [weakref.ref(o) for o in (dedup, limiter, breaker, job, dlq)]
        for _ in range(3):
            refs = use()
            # A sync of the breaker running right now holds it until it ends.
            deadline = time.monotonic() + 5
            while any(r() is not None for r in refs) and time.monotonic() < deadline:
                gc.collect()
                time.sleep(0.01)
            assert [r() for r in refs] == [None] * len(refs)
        backend.wake()  # the thread drops cancelled jobs
        deadline = time.monotonic() + 5
        while backend._tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        assert backend._tasks == [] and backend._restore_listeners == []
    finally:
        backend.close()


@pytest.mark.parametrize("asynchronous", [False, True])
def test_aclose_with_publishes_in_flight_delivers_or_refuses_every_one(
        redis_clean: RedisServer, asynchronous: bool, no_errors: None) -> None:
    """Publishes under way when aclose() is called either deliver their
    event to the bus's own handlers before aclose() returns or raise
    ResilError: none returns an event the bus never delivers."""
    async def main() -> None:
        client = redis_clean.async_client() if asynchronous else redis_clean.client()
        backend = RedisBackend(client, timeout=1.0)
        try:
            for round_ in range(20):
                bus = resil.EventBus(store=StreamStore(backend, f"inflight{round_}"))
                got: list[int] = []
                bus.subscribe("t", lambda e: got.append(e.payload["i"]))
                await bus.publish("t", {"i": -1})
                tasks = [asyncio.ensure_future(bus.publish("t", {"i": i})) for i in range(6)]
                for _ in range(round_ % 4):
                    await asyncio.sleep(0)
                await bus.aclose()
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
                published = [i for i, o in enumerate(outcomes) if isinstance(o, resil.Event)]
                refused = [o for o in outcomes if not isinstance(o, resil.Event)]
                assert all(isinstance(o, resil.ResilError) for o in refused), refused
                assert sorted(got) == [-1, *published], (round_, got, outcomes)
        finally:
            await backend.aclose()

    asyncio.run(main())


def test_a_brace_in_a_component_s_name_is_refused_by_name(redis_clean: RedisServer) -> None:
    """The braces of a key's hash tag keep a component's keys in one slot; a
    name holding one would change the tag and could meet another's keys."""
    backend = RedisBackend(redis_clean.client())
    try:
        for bad in ("a}b", "{x}", "s}:key:k"):
            with pytest.raises(ValueError, match=r"^stream must not contain '\}'"):
                StreamStore(backend, bad)
            with pytest.raises(ValueError, match=r"^name must not contain"):
                resil.CircuitBreaker(bad, cluster=backend)
            with pytest.raises(ValueError, match=r"^name must not contain"):
                resil.Deduplicator(name=bad, cluster=backend)
            with pytest.raises(ValueError, match=r"^kind must not contain"):
                backend.key(bad, "n")
        assert backend.key("k", "n", "a}b") == "resil:{k:n}:a}b"   # after the tag: any text
        StreamStore(backend, "{x").close()                       # a '{' ends nothing
        # A limiter takes any name: its '}' is escaped, so two names never meet.
        one = resil.RateLimiter(1, burst=1, name="a}", cluster=backend)
        other = resil.RateLimiter(1, burst=1, name="a%7D", cluster=backend)
        assert one.try_acquire() and other.try_acquire() and not one.try_acquire()
        StreamStore(backend, "fine").close()
    finally:
        backend.close()
