"""StreamStore against a real redis-server: an EventBus numbering gaplessly
and delivering live across processes ("hosts"), replay from the stream, a
DeadLetterQueue shared through a consumer group (a SIGKILLed consumer's
entries claimed again), publishes raising RedisUnavailable within the
timeout while Redis is paused or killed, and random schedules checked
against the same bus and queue on a SQLiteStore."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import resil
from redis_support import RedisServer, redis_clean, redis_server  # noqa: F401
from resil.redis import RedisBackend, RedisUnavailable, StreamStore

HERE = Path(__file__).resolve().parent
WORKERS = str(HERE / "redis_stream_workers.py")


def _spawn(*args: object) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    return subprocess.Popen([sys.executable, WORKERS, *map(str, args)], env=env,
                            stdin=subprocess.DEVNULL)


def _wait(predicate: Any, limit: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _finish(procs: list[subprocess.Popen[bytes]], limit: float = 60.0) -> None:
    try:
        for p in procs:
            assert p.wait(limit) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _store(server: RedisServer, stream: str = "s", **kwargs: Any) -> StreamStore:
    backend = RedisBackend(server.client(), timeout=kwargs.pop("timeout", 0.5),
                           cooldown=kwargs.pop("cooldown", 0.2))
    return StreamStore(backend, stream, **kwargs)


# ---- the bus across processes ------------------------------------------------------------
def test_three_hosts_publish_3000_events_every_subscriber_gets_them_live_in_order_and_replay_agrees(
        redis_clean: RedisServer, tmp_path: Path) -> None:
    hosts = ["h1", "h2", "h3"]
    procs = [_spawn("publish", redis_clean.port, h, "bus", 1000, 3000, tmp_path) for h in hosts]
    try:
        _wait(lambda: all((tmp_path / f"{h}.ready").exists() for h in hosts), what="ready")
        (tmp_path / "go").write_text("")
    finally:
        _finish(procs)
    everything = {(h, i) for h in hosts for i in range(1000)}
    for h in hosts:
        doc = json.loads((tmp_path / f"{h}.json").read_text())
        received = doc["received"]
        # Every host's subscriber got all 3,000, numbered 1..3000 in order, each once.
        assert [r[0] for r in received] == list(range(1, 3001)), h
        assert {(r[1], r[2]) for r in received} == everything
        # Each host's own events keep its publishing order.
        for other in hosts:
            assert [r[2] for r in received if r[1] == other] == list(range(1000))
        assert doc["replayed"] == received
        assert doc["stats"]["backend"] == "redis"
        assert doc["stats"]["published"] == 1000 and doc["stats"]["received"] == 3000
    c = redis_clean.client()
    assert c.xlen("resil:{stream:bus}:events") == 3000


def test_two_buses_in_one_process_each_get_the_others_events_and_their_own_once() -> None:
    server = RedisServer()
    try:
        async def main() -> None:
            a, b = _store(server), _store(server)
            bus_a, bus_b = resil.EventBus(store=a), resil.EventBus(store=b)
            got_a: list[int] = []
            got_b: list[int] = []
            bus_a.subscribe("x", lambda e: got_a.append(e.seq))
            bus_b.subscribe("x", lambda e: got_b.append(e.seq))
            for i in range(20):
                await (bus_a if i % 2 else bus_b).publish("x", {"i": i})
            t0 = time.monotonic()
            while len(got_a) < 20 or len(got_b) < 20:
                assert time.monotonic() - t0 < 10
                await asyncio.sleep(0.01)
            assert got_a == got_b == list(range(1, 21))
            assert bus_a.stats()["last_seq"] == 20
            assert a.stats()["backend"] == "redis" and a.stats()["received"] == 20
            assert a.last_seq() == 20 and a.event_types() == {"x"}
            await bus_a.aclose()
            await bus_b.aclose()
            await asyncio.sleep(0.05)
            assert got_a == got_b == list(range(1, 21))  # nothing delivered twice
        asyncio.run(main())
    finally:
        server.stop()


def test_aclose_delivers_every_event_the_bus_published_then_stops_its_reader(
        redis_clean: RedisServer) -> None:
    async def main() -> None:
        store = _store(redis_clean, block=2.0)
        bus = resil.EventBus(store=store, storm_threshold=1000)
        got: list[int] = []

        async def slow(event: resil.Event) -> None:
            await asyncio.sleep(0.001)
            got.append(event.seq)
        bus.subscribe("x", slow)
        def readers() -> list[threading.Thread]:
            return [t for t in threading.enumerate() if t.name == "resil-stream s"]
        assert len(readers()) == 1
        for i in range(200):
            await bus.publish("x", {"i": i})
        t0 = time.monotonic()
        await bus.aclose()
        took = time.monotonic() - t0
        assert got == list(range(1, 201))  # acknowledged to the publisher: delivered
        assert readers() == []  # the reader ended
        assert took < 1.0  # not left waiting in XREAD BLOCK (2 s)
        assert store.stats()["followers"] == 0
        with pytest.raises(resil.ResilError):
            await bus.publish("x", {})
    asyncio.run(main())


def test_a_bus_started_outside_a_loop_follows_from_its_first_publish(
        redis_clean: RedisServer) -> None:
    store = _store(redis_clean)
    bus = resil.EventBus(store=store)
    got: list[int] = []
    bus.subscribe("x", got.append)  # no loop: nothing read yet

    async def main() -> None:
        first = await bus.publish("x", {})
        assert first is not None
        t0 = time.monotonic()
        while not got:
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.01)
        await bus.aclose()
        assert [e.seq for e in got] == [first.seq]
    asyncio.run(main())


def test_slow_handlers_hold_the_reader_back_and_then_get_every_event_in_order(
        redis_clean: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import resil.messaging.bus as bus_module
    monkeypatch.setattr(bus_module, "_INBOX_LIMIT", 20)
    writer = _store(redis_clean)

    async def main() -> None:
        store = _store(redis_clean, block=0.1)
        bus = resil.EventBus(store=store)
        gate = asyncio.Event()
        got: list[int] = []

        async def slow(event: resil.Event) -> None:
            await gate.wait()
            got.append(event.seq)
        bus.subscribe("x", slow)
        for i in range(300):
            writer.append_event(f"e{i}", "x", "{}", 1.0, "c", "1.0", None, None)
            if i % 10 == 9:
                await asyncio.sleep(0.01)  # the reader reads as they come
        await asyncio.sleep(0.3)
        # It read on until 20 waited (plus the batch that passed the limit), no further.
        assert store.stats()["received"] < 100
        gate.set()
        t0 = time.monotonic()
        while len(got) < 300:
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.01)
        assert got == list(range(1, 301))
        await bus.aclose()
    asyncio.run(main())


def test_a_reader_ends_when_its_event_loop_is_gone_without_aclose(
        redis_clean: RedisServer) -> None:
    store = _store(redis_clean, "gone", block=0.05)

    async def main() -> None:
        bus = resil.EventBus(store=store)
        bus.subscribe("x", lambda e: None)
    asyncio.run(main())
    _wait(lambda: not [t for t in threading.enumerate() if t.name == "resil-stream gone"],
          limit=5, what="the reader to end")
    assert store.stats()["followers"] == 0


def test_an_entry_resil_did_not_write_is_reported_not_delivered_and_replay_raises(
        redis_clean: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        store = _store(redis_clean, "c")
        bus = resil.EventBus(store=store)
        got: list[int] = []
        bus.subscribe("x", lambda e: got.append(e.seq))
        await bus.publish("x", {})
        redis_clean.client().xadd("resil:{stream:c}:events", {"seq": "oops"})
        await bus.publish("x", {})
        t0 = time.monotonic()
        while got != [1, 2]:
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.01)
        assert "corrupt" in caplog.text
        with pytest.raises(resil.StoreError, match="corrupt"):
            await bus.replay()
        await bus.aclose()
    asyncio.run(main())


# ---- Redis away -----------------------------------------------------------------------------
def test_publish_while_redis_is_paused_raises_within_timeout_and_a_retry_with_its_key_is_kept_once(
        redis_clean: RedisServer) -> None:
    async def main() -> None:
        store = _store(redis_clean, timeout=0.1, cooldown=0.05)
        bus = resil.EventBus(store=store)
        got: list[resil.Event] = []
        bus.subscribe("x", got.append)
        await bus.publish("x", {"i": 0})
        admin = redis_clean.client()
        admin.execute_command("CLIENT", "PAUSE", 600, "WRITE")
        t0 = time.monotonic()
        with pytest.raises(RedisUnavailable):
            await bus.publish("x", {"i": 1}, idempotency_key="k1")
        took = time.monotonic() - t0
        assert took < 0.1 + 0.1
        assert bus.stats()["backend"] == "local-fallback" == store.stats()["backend"]
        assert bus.stats()["published"] == 1  # not numbered here
        await asyncio.sleep(0.7)  # the pause ends: Redis runs the paused script after all
        while True:
            try:
                again = await bus.publish("x", {"i": 1}, idempotency_key="k1")
                break
            except RedisUnavailable:
                await asyncio.sleep(0.05)
        assert again is not None and again.seq == 2
        t0 = time.monotonic()
        while len(got) < 2:
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert [(e.seq, e.payload["i"]) for e in got] == [(1, 0), (2, 1)]
        assert redis_clean.client().xlen("resil:{stream:s}:events") == 2
        assert bus.stats()["backend"] == "redis"
        await bus.aclose()
    asyncio.run(main())


def test_redis_killed_while_two_hosts_publish_raises_and_after_restart_nothing_is_lost_or_doubled(
        tmp_path: Path) -> None:
    server = RedisServer()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        hosts = ["a", "b"]
        procs = [_spawn("outage", server.port, h, "o", 500, tmp_path) for h in hosts]
        c = server.client()
        _wait(lambda: all((tmp_path / f"{h}.ready").exists() for h in hosts), what="ready")
        _wait(lambda: c.xlen("resil:{stream:o}:events") >= 200, what="events")
        server.kill()
        time.sleep(0.5)
        server.start()
        _wait(lambda: all((tmp_path / f"{h}.done").exists() for h in hosts), what="done")
        (tmp_path / "close").write_text("")
        _finish(procs)
        stream = server.client().xrange("resil:{stream:o}:events")
        on_stream = [(f[b"pub"].decode() or json.loads(f[b"payload"])["host"],
                      json.loads(f[b"payload"])["i"], int(f[b"seq"])) for _, f in stream]
        keys = [(h, i) for h, i, _ in on_stream]
        assert len(keys) == len(set(keys))  # nothing doubled on the stream
        seqs = [s for _, _, s in on_stream]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # gapless after the restart
        docs = {h: json.loads((tmp_path / f"{h}.json").read_text()) for h in hosts}
        for h, doc in docs.items():
            assert doc["raised"] > 0  # the documented behaviour: the publisher is told
            assert doc["modes"] == ["local-fallback"]
            assert len(doc["seqs"]) == 500  # every publish returned in the end
            first = doc["first_raise"]
            # Those published after the restart are on the new stream, each once.
            assert {(h, i) for i in range(first, 500)} <= set(keys)
            assert not {(h, i) for i in range(first - 1)} & set(keys)
        for h, doc in docs.items():
            received = [(r[1], r[2]) for r in doc["received"]]
            assert len(received) == len(set(received)), h  # each delivered once
            # Every event of the new stream reached every host, in stream order.
            after = [r for r in doc["received"] if (r[1], r[2]) in set(keys)]
            assert [(r[1], r[2]) for r in after] == keys
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        server.stop()


def test_a_bus_reader_waits_through_an_outage_and_reads_on(redis_clean: RedisServer) -> None:
    async def main() -> None:
        store = _store(redis_clean, timeout=0.1, cooldown=0.1)
        bus = resil.EventBus(store=store)
        got: list[int] = []
        seqs: list[int] = []
        bus.subscribe("x", lambda e: (got.append(e.payload["i"]), seqs.append(e.seq)))
        await bus.publish("x", {"i": 0})
        t0 = time.monotonic()
        while got != [0]:  # read before the kill (a restarted Redis has lost it)
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.01)
        redis_clean.kill()
        with pytest.raises(RedisUnavailable):
            await bus.publish("x", {"i": 1})
        await asyncio.sleep(0.3)
        redis_clean.start()
        t0 = time.monotonic()
        while True:
            try:
                await bus.publish("x", {"i": 2})
                break
            except RedisUnavailable:
                assert time.monotonic() - t0 < 10
                await asyncio.sleep(0.05)
        while got != [0, 2]:
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.01)
        # The restarted Redis lost its counter: numbering goes on after what this host saw.
        assert seqs == [1, 2]
        await bus.aclose()
    asyncio.run(main())


def test_a_reading_host_raises_the_counter_of_a_restarted_redis_to_what_it_has_seen(
        redis_clean: RedisServer) -> None:
    async def main() -> None:
        store = _store(redis_clean, "f", timeout=0.1, cooldown=0.05, block=0.1)
        bus = resil.EventBus(store=store)
        got: list[int] = []
        bus.subscribe("x", lambda e: got.append(e.seq))
        for i in range(5):
            await bus.publish("x", {})
        t0 = time.monotonic()
        while len(got) < 5:
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.01)
        redis_clean.kill()
        redis_clean.start()
        admin = redis_clean.client()
        while admin.get("resil:{stream:f}:seq") != b"5":  # its reader, not a publish
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.01)
        fresh = _store(redis_clean, "f")  # has seen nothing: would number from 1
        assert fresh.append_event("n", "x", "{}", 1.0, "c", "1.0", None, None) == 6
        while got != [1, 2, 3, 4, 5, 6]:
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.01)
        await bus.aclose()
    asyncio.run(main())


# ---- dead letters ----------------------------------------------------------------------------
def test_dead_letters_held_by_a_killed_consumer_are_reprocessed_by_another_after_claim_after(
        redis_clean: RedisServer, tmp_path: Path) -> None:
    store = _store(redis_clean, "d", claim_after=1.0)
    dlq = resil.DeadLetterQueue(store=store, name="q")
    for i in range(5):
        dlq.put({"i": i}, ValueError("boom"), source="t")
    worker = _spawn("dlq-hang", redis_clean.port, "d", "q", 1.0, tmp_path)
    try:
        _wait(lambda: (tmp_path / "holding").exists(), what="the consumer to hold an entry")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    seen: list[Any] = []

    async def ok(item: Any) -> None:
        seen.append(item["i"])
    t_killed = time.monotonic()
    # Held by the dead consumer for less than claim_after: not taken.
    assert asyncio.run(dlq.reprocess_all(ok)) == {"successful": 0, "failed": 0}
    assert len(dlq) == 5
    with pytest.raises(resil.ResilError, match="being reprocessed"):
        asyncio.run(dlq.reprocess(dlq.list()[0].id, ok))
    time.sleep(max(0.0, 1.2 - (time.monotonic() - t_killed)))
    assert asyncio.run(dlq.reprocess_all(ok)) == {"successful": 5, "failed": 0}
    assert sorted(seen) == list(range(5)) and len(dlq) == 0
    assert dlq.stats()["backend"] == "redis"


def test_a_failed_dead_letter_stays_with_its_consumer_and_another_live_one_cannot_take_it(
        redis_clean: RedisServer) -> None:
    one = resil.DeadLetterQueue(store=_store(redis_clean, "d", claim_after=30.0), name="q")
    two = resil.DeadLetterQueue(store=_store(redis_clean, "d", claim_after=30.0), name="q")
    one.put({"i": 1}, "first")

    def fail(item: Any) -> None:
        raise RuntimeError("still broken")
    assert asyncio.run(one.reprocess_all(fail)) == {"successful": 0, "failed": 1}
    assert asyncio.run(two.reprocess_all(lambda item: None)) == {"successful": 0, "failed": 0}
    [entry] = two.list()  # shared: the other host sees it, with its history
    assert entry.attempts == 1 and [h[1] for h in entry.history] == [
        "first", "RuntimeError: still broken"]
    assert asyncio.run(one.reprocess_all(lambda item: None)) == {"successful": 1, "failed": 0}
    assert len(two) == 0


def test_a_dead_letter_put_while_redis_is_down_raises(redis_clean: RedisServer) -> None:
    dlq = resil.DeadLetterQueue(store=_store(redis_clean, "d", timeout=0.1), name="q")
    redis_clean.kill()
    t0 = time.monotonic()
    with pytest.raises(RedisUnavailable):
        dlq.put({"i": 1}, "x")
    assert time.monotonic() - t0 < 0.1 + 0.1
    assert dlq.stats()["added"] == 0
    redis_clean.start()


# ---- arguments ----------------------------------------------------------------------------
def test_arguments_are_checked(redis_clean: RedisServer) -> None:
    backend = RedisBackend(redis_clean.client())
    with pytest.raises(TypeError, match="backend"):
        StreamStore(redis_clean.client(), "s")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stream"):
        StreamStore(backend, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stream"):
        StreamStore(backend, "")
    for bad in (0, -1, True, 2 ** 60):
        with pytest.raises((TypeError, ValueError), match="max_events"):
            StreamStore(backend, "s", max_events=bad)
    for name in ("claim_after", "idempotency_ttl", "block"):
        for bad in (math_nan(), float("inf"), -1, 0, "1", True, 10 ** 400):
            with pytest.raises((TypeError, ValueError), match=name):
                StreamStore(backend, "s", **{name: bad})
    with pytest.raises(TypeError, match="store"):
        resil.EventBus(store=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="store"):
        resil.DeadLetterQueue(store=object())  # type: ignore[arg-type]


def math_nan() -> float:
    return float("nan")


def test_max_events_trims_the_stream(redis_clean: RedisServer) -> None:
    store = _store(redis_clean, max_events=100)
    for i in range(2000):
        store.append_event(f"e{i}", "x", "{}", 1.0, "c", "1.0", None, None)
    kept = [r["seq"] for r in store.events()]
    assert 100 <= len(kept) < 2000 and kept == list(range(2001 - len(kept), 2001))
    assert store.last_seq() == 2000


# ---- against the SQLiteStore --------------------------------------------------------------
def _bus_schedule(rng: random.Random, store: Any) -> list[Any]:
    """Runs one random schedule of publishes and replays on a bus over
    ``store``; returns everything observable."""
    out: list[Any] = []

    async def main() -> None:
        bus = resil.EventBus(store=store, storm_threshold=1000)
        got: list[tuple[int, str, Any]] = []
        bus.subscribe("*", lambda e: got.append((e.seq, e.event_type, dict(e.payload))))
        types = ["a", "b.c", "d"]
        for _ in range(rng.randrange(5, 40)):
            op = rng.random()
            if op < 0.75:
                key = rng.choice([None, None, "k1", "k2", f"u{rng.random()}"])
                event = await bus.publish(rng.choice(types), {"v": rng.randrange(100),
                                                             "s": "é\u2603"},
                                          idempotency_key=key, publisher=rng.choice([None, "p"]))
                out.append(("pub", None if event is None else event.seq))
            else:
                frm = rng.choice([None, rng.randrange(0, 10)])
                to = rng.choice([None, rng.randrange(0, 30)])
                kind = rng.choice([None, "a", "d"])
                if kind is not None and kind not in {t for t in bus.topology()}:
                    kind = None
                await _settle(bus, got)
                before = len(got)
                n = await bus.replay(frm, to_seq=to, event_type=kind)
                out.append(("replay", n, got[before:]))
        await _settle(bus, got)
        out.append(("got", got))
        await bus.aclose()
    asyncio.run(main())
    return out


async def _settle(bus: resil.EventBus, got: list[Any]) -> None:
    """Waits until a bus on a live store has delivered what it published."""
    if getattr(bus.store, "follow", None) is None:
        return
    last = bus.store.last_seq()  # type: ignore[union-attr]
    t0 = time.monotonic()
    while bus.stats()["last_seq"] < last:
        assert time.monotonic() - t0 < 10
        await asyncio.sleep(0.005)


def test_the_bus_on_a_stream_behaves_as_on_a_sqlite_store_over_random_schedules(
        redis_clean: RedisServer, tmp_path: Path) -> None:
    for seed in range(8):
        redis_clean.flush()
        on_redis = _bus_schedule(random.Random(seed), _store(redis_clean, f"m{seed}"))
        with resil.SQLiteStore(tmp_path / f"m{seed}.db") as sqlite:
            on_disk = _bus_schedule(random.Random(seed), sqlite)
        assert on_redis == on_disk, seed


def _dlq_schedule(rng: random.Random, store: Any) -> list[Any]:
    clock = resil.VirtualClock()
    dlq = resil.DeadLetterQueue(maxsize=rng.randrange(2, 8), store=store, name="m",
                                ttl=rng.choice([None, 5.0]), clock=clock)
    out: list[Any] = []
    # The queue's Unix time started at the wall clock when it was made.
    t0 = dlq._now() - clock.now()
    for _ in range(rng.randrange(10, 60)):
        op = rng.random()
        if op < 0.4:
            out.append(("put", dlq.put({"n": rng.randrange(10), "l": [1, 2.5, None]},
                                       rng.choice([ValueError("v"), "text"]),
                                       source=rng.choice([None, "s"]),
                                       attempts=rng.randrange(3))))
        elif op < 0.55:
            clock.advance(rng.choice([0.5, 2.0, 4.0]))
        elif op < 0.7 and dlq.list():
            entry = rng.choice(dlq.list())

            def handler(item: Any, ok: bool = rng.random() < 0.5) -> None:
                if not ok:
                    raise RuntimeError("again")
            out.append(("reprocess", asyncio.run(dlq.reprocess(entry.id, handler))))
        elif op < 0.78:
            out.append(("all", asyncio.run(dlq.reprocess_all(
                lambda item: None if item["n"] % 2 else 1 / 0))))
        elif op < 0.85:
            dlq.configure(maxsize=rng.randrange(1, 8))
        elif op < 0.88:
            out.append(("purge", dlq.purge()))
        else:
            with pytest.raises(KeyError):
                dlq.get(10 ** 6)
        listed = dlq.list()
        out.append(("list", [(e.id, e.item, e.error, e.error_type, e.source, e.attempts,
                              round(e.timestamp - t0, 6), [(h[1], h[2]) for h in e.history])
                             for e in listed], len(dlq)))
    stats = dlq.stats()
    stats.pop("backend", None)
    out.append(("stats", {k: v for k, v in stats.items() if k != "oldest"}))
    return out


def test_the_dead_letter_queue_on_a_stream_behaves_as_on_a_sqlite_store_over_random_schedules(
        redis_clean: RedisServer, tmp_path: Path) -> None:
    for seed in range(15):
        on_redis = _dlq_schedule(random.Random(seed), _store(redis_clean, f"q{seed}"))
        with resil.SQLiteStore(tmp_path / f"q{seed}.db") as sqlite:
            on_disk = _dlq_schedule(random.Random(seed), sqlite)
        assert on_redis == on_disk, seed


def test_with_an_asyncio_client_publish_awaits_the_script_on_the_loop_without_a_thread(
        redis_clean: RedisServer) -> None:
    publishing = False

    class NoThreads(concurrent.futures.ThreadPoolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            assert not publishing, "publish handed its write to a worker thread"
            return super().submit(*args, **kwargs)

    async def main() -> list[int]:
        nonlocal publishing
        asyncio.get_running_loop().set_default_executor(NoThreads())
        backend = RedisBackend(redis_clean.async_client(), timeout=0.5)
        bus = resil.EventBus(store=StreamStore(backend, "awaited"))
        got: list[int] = []
        bus.subscribe("t", lambda e: got.append(e.payload["i"]))
        publishing = True
        for i in range(20):
            assert (await bus.publish("t", {"i": i})).seq == i + 1
        publishing = False
        await bus.aclose()
        await backend.aclose()
        return got

    assert asyncio.run(main()) == list(range(20))
