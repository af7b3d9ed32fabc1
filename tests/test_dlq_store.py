"""DeadLetterQueue and SQLiteStore: entries, eviction,
reprocessing, durability across SIGKILL, sharing between processes, and bad
files."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from resil import (
    DeadLetter,
    DeadLetterQueue,
    Event,
    EventBus,
    EventEmitter,
    ResilError,
    SQLiteStore,
    StoreError,
)

ROOT = Path(__file__).resolve().parent.parent


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def make_event(seq: int = 1, **payload: Any) -> Event:
    return Event("t", payload or {"x": seq}, seq, f"{seq:032x}", 1_700_000_000.0 + seq,
                 "corr", "1.0", None, None)


# ---- in-memory DLQ -------------------------------------------------------------------
def test_put_list_get() -> None:
    dlq = DeadLetterQueue()
    obj = object()  # without a store any item is kept as is
    first = dlq.put(obj, ValueError("bad value"), source="svc", attempts=2)
    second = dlq.put({"k": 1}, "plain reason")
    assert (first, second) == (1, 2)
    entry = dlq.get(first)
    assert isinstance(entry, DeadLetter)
    assert entry.item is obj and entry.error == "ValueError: bad value"
    assert (entry.error_type, entry.source, entry.attempts) == ("ValueError", "svc", 2)
    assert abs(entry.timestamp - time.time()) < 5
    assert dlq.get(second).error == "plain reason" and dlq.get(second).source is None
    assert [e.id for e in dlq.list()] == [1, 2] and len(dlq) == 2
    assert dlq.list(since=entry.timestamp + 3600) == []
    with pytest.raises(KeyError):
        dlq.get(99)


def test_eviction_at_maxsize_is_counted() -> None:
    dlq = DeadLetterQueue(maxsize=3)
    for i in range(5):
        dlq.put(i, RuntimeError(str(i)))
    assert [e.item for e in dlq.list()] == [2, 3, 4]
    stats = dlq.stats()
    assert (stats["depth"], stats["added"], stats["evicted"]) == (3, 5, 2)


def test_reprocess_success_failure_and_unknown() -> None:
    dlq = DeadLetterQueue()
    a = dlq.put("a", RuntimeError("x"))
    b = dlq.put("b", RuntimeError("y"), attempts=1)
    handled: list[str] = []

    def handler(item: str) -> None:
        if item == "b":
            raise ConnectionError("still down")
        handled.append(item)

    async def main() -> None:
        assert await dlq.reprocess(a, handler) is True
        assert await dlq.reprocess(b, handler) is False
        with pytest.raises(KeyError):
            await dlq.reprocess(a, handler)  # removed by its success
        with pytest.raises(KeyError):
            await dlq.reprocess(12345, handler)

    run(main())
    assert handled == ["a"]
    left = dlq.list()
    assert [(e.item, e.attempts, e.error) for e in left] == [("b", 2, "ConnectionError: still down")]
    assert dlq.stats()["reprocessed"] == 1 and dlq.stats()["reprocess_failures"] == 1


def test_reprocess_all_with_async_handler() -> None:
    dlq = DeadLetterQueue()
    for i in range(6):
        dlq.put(i, RuntimeError())

    async def handler(item: int) -> None:
        await asyncio.sleep(0)
        if item % 3 == 0:
            raise ValueError(item)

    result = run(dlq.reprocess_all(handler))
    assert result == {"successful": 4, "failed": 2}
    assert [e.item for e in dlq.list()] == [0, 3]


def test_reprocess_is_not_run_twice_at_once() -> None:
    dlq = DeadLetterQueue()
    entry = dlq.put("x", RuntimeError())

    async def main() -> None:
        gate = asyncio.Event()

        async def slow(item: str) -> None:
            await gate.wait()

        first = asyncio.ensure_future(dlq.reprocess(entry, slow))
        await asyncio.sleep(0)
        with pytest.raises(ResilError, match="being reprocessed"):
            await dlq.reprocess(entry, slow)
        gate.set()
        assert await first is True

    run(main())


def test_cancelled_reprocess_keeps_the_entry() -> None:
    dlq = DeadLetterQueue()
    entry = dlq.put("x", RuntimeError("orig"))

    async def main() -> None:
        task = asyncio.ensure_future(dlq.reprocess(entry, lambda item: asyncio.sleep(3600)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert dlq.get(entry).error == "RuntimeError: orig" and dlq.get(entry).attempts == 0


def test_purge_and_bad_arguments() -> None:
    dlq = DeadLetterQueue()
    dlq.put(1, "e")
    dlq.put(2, "e")
    assert dlq.purge() == 2 and len(dlq) == 0 and dlq.stats()["purged"] == 2
    with pytest.raises(ValueError, match="maxsize"):
        DeadLetterQueue(maxsize=0)
    with pytest.raises(TypeError, match="maxsize"):
        DeadLetterQueue(maxsize=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="store"):
        DeadLetterQueue(store="x.db")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="error"):
        dlq.put(1, 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempts"):
        dlq.put(1, "e", attempts=-1)
    with pytest.raises(TypeError, match="handler"):
        run(dlq.reprocess(1, "nope"))  # type: ignore[arg-type]
    assert len(dlq) == 0


def test_emitter_accepts_the_dlq() -> None:
    dlq = DeadLetterQueue()

    async def sink(event: Any) -> None:
        raise ConnectionError("sink down")

    async def main() -> None:
        async with EventEmitter(sink, dlq=dlq) as emitter:
            emitter.emit({"n": 1})
            emitter.emit({"n": 2})

    run(main())
    assert [(e.item, e.source, e.error_type, e.attempts) for e in dlq.list()] == [
        ({"n": 1}, "emitter", "ConnectionError", 1), ({"n": 2}, "emitter", "ConnectionError", 1)]


# ---- store-backed DLQ ------------------------------------------------------------------
def test_store_backed_dlq_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"
    with SQLiteStore(path) as store:
        dlq = DeadLetterQueue(maxsize=3, store=store)
        event = make_event(7, source="a")
        ids = [dlq.put(event, RuntimeError("handler"), source="t:h", attempts=1)]
        ids += [dlq.put({"n": i}, "failed") for i in range(3)]
        assert dlq.stats()["evicted"] == 1
    with SQLiteStore(path) as store:
        dlq = DeadLetterQueue(maxsize=3, store=store)
        assert [e.item for e in dlq.list()] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert [e.id for e in dlq.list()] == ids[1:]
        other = DeadLetterQueue(store=store, name="other")  # queues share a file by name
        eid = other.put(make_event(3), RuntimeError("x"))
        restored = other.get(eid).item
        assert isinstance(restored, Event) and restored == make_event(3)
        assert len(dlq) == 3 and len(other) == 1

        async def handler(item: Any) -> None:
            if item == {"n": 1}:
                raise RuntimeError("again")

        assert run(dlq.reprocess_all(handler)) == {"successful": 2, "failed": 1}
    with SQLiteStore(path) as store:
        dlq = DeadLetterQueue(store=store)
        [left] = dlq.list()
        assert (left.item, left.attempts, left.error) == ({"n": 1}, 1, "RuntimeError: again")
        assert dlq.purge() == 1 and len(dlq) == 0


def test_store_backed_dlq_refuses_non_json_items(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "d.db") as store:
        dlq = DeadLetterQueue(store=store)
        dlq.put({"ok": True}, "e")
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            dlq.put(object(), "e")
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            dlq.put(make_event(1, bad=object()), "e")
        assert [e.item for e in dlq.list()] == [{"ok": True}]


def test_bus_with_store_and_dlq_in_one_file(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "all.db") as store:
        dlq = DeadLetterQueue(store=store)
        bus = EventBus(store=store, dlq=dlq)

        def handler(event: Event) -> None:
            if event.payload["i"] == 2:
                raise RuntimeError("poison")

        bus.subscribe("t", handler, name="h")

        async def main() -> None:
            for i in range(4):
                await bus.publish("t", {"i": i})
            [entry] = dlq.list()
            assert entry.item.seq == 3 and entry.source == "t:h"
            seen = []
            assert await dlq.reprocess(entry.id, lambda e: seen.append(e.payload["i"])) is True
            assert seen == [2]

        run(main())
        assert len(dlq) == 0 and store.event_count() == 4


# ---- durability and sharing ---------------------------------------------------------------
CHILD = textwrap.dedent("""
    import sys
    from resil import SQLiteStore
    store = SQLiteStore(sys.argv[1])
    tag = sys.argv[2]
    count = int(sys.argv[3])
    for i in range(count):
        seq = store.append_event(f"{tag}-{i:08d}", "t", '{"i": %d}' % i, 0.0, "c", "1.0",
                                 None, tag)
        print(seq, flush=True)
    print("done", flush=True)
""")


def _child(path: Path, tag: str, count: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(path), tag, str(count)],
                            stdout=subprocess.PIPE, text=True, env=env)


def test_every_returned_append_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "kill.db"
    SQLiteStore(path).close()
    child = _child(path, "k", 1_000_000)
    assert child.stdout is not None
    returned = []
    for line in child.stdout:
        returned.append(int(line))
        if len(returned) == 300:
            break
    child.send_signal(signal.SIGKILL)  # mid-stream: it is appending as fast as it can
    rest = child.stdout.read()
    child.stdout.close()
    child.wait()
    assert child.returncode == -signal.SIGKILL
    returned += [int(x) for x in rest.split() if x != "done"]
    assert "done" not in rest
    with SQLiteStore(path) as store:
        stored = [row["seq"] for row in store.events()]
        assert set(returned) <= set(stored)
        assert stored == list(range(1, len(stored) + 1))  # gapless
        assert len(stored) - len(returned) <= 1  # at most the append in flight


def test_two_processes_appending_to_one_file_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    SQLiteStore(path).close()
    children = [_child(path, tag, 400) for tag in ("a", "b")]
    outputs = [c.communicate(timeout=240)[0] for c in children]
    assert [c.returncode for c in children] == [0, 0]
    seqs = {tag: [int(x) for x in out.split() if x != "done"]
            for tag, out in zip(("a", "b"), outputs)}
    with SQLiteStore(path) as store:
        rows = list(store.events())
    assert [r["seq"] for r in rows] == list(range(1, 801))
    for tag in ("a", "b"):
        mine = [r for r in rows if r["publisher"] == tag]
        assert [r["seq"] for r in mine] == seqs[tag]  # the numbers each process was given
        assert [r["event_id"] for r in mine] == [f"{tag}-{i:08d}" for i in range(400)]


def test_two_buses_sharing_a_file_stay_gapless(tmp_path: Path) -> None:
    path = tmp_path / "two.db"
    with SQLiteStore(path) as s1, SQLiteStore(path) as s2:
        b1, b2 = EventBus(store=s1), EventBus(store=s2)

        async def main() -> list[int]:
            out = []
            for i in range(10):
                for bus in (b1, b2):
                    event = await bus.publish("t", {"i": i})
                    assert event is not None
                    out.append(event.seq)
            return out

        assert run(main()) == list(range(1, 21))
        assert s1.last_seq() == 20


# ---- bad files ----------------------------------------------------------------------------
def test_a_corrupt_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database at all, just text " * 200)
    with pytest.raises(StoreError, match="not a SQLite database or is corrupt") as info:
        SQLiteStore(path)
    assert info.value.path == str(path) and info.value.operation == "open"
    assert path.read_bytes().startswith(b"this is not a database")  # left untouched


def test_a_truncated_store_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "trunc.db"
    with SQLiteStore(path) as store:
        for i in range(200):
            store.append_event(f"{i:032x}", "t", '{"pad": "%s"}' % ("x" * 500), 0.0, "c", "1.0",
                               None, None)
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\xff" * 4000 + data[4100:])  # scribble over pages
    with pytest.raises(StoreError, match="corrupt"):
        with SQLiteStore(path) as store:
            list(store.events())


def test_a_locked_file_gives_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = SQLiteStore(path, timeout=0.2)
    bus = EventBus(store=store)

    async def main() -> None:
        assert (await bus.publish("t", {"i": 1})).seq == 1  # type: ignore[union-attr]
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(StoreError, match="locked by another connection after the 0.2 s"):
            await bus.publish("t", {"i": 2})
        assert 0.15 <= time.monotonic() - started < 5
        holder.execute("ROLLBACK")
        holder.close()
        assert (await bus.publish("t", {"i": 3})).seq == 2  # type: ignore[union-attr]

    run(main())
    assert [r["payload"] for r in store.events()] == ['{"i":1}', '{"i":3}']
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.event_count()


def test_store_arguments() -> None:
    with pytest.raises(ValueError, match="timeout"):
        SQLiteStore(":memory:", timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        SQLiteStore(":memory:", timeout="5")  # type: ignore[arg-type]
    with SQLiteStore(":memory:") as store:
        assert store.last_seq() == 0 and store.event_types() == set()
        assert "open" in repr(store)


def test_reprocess_all_propagates_a_store_failure(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db", timeout=0.05)
    dlq = DeadLetterQueue(store=store)
    for i in range(3):
        dlq.put(i, "e")
    holder: list[sqlite3.Connection] = []

    def handler(item: int) -> None:
        if not holder:  # lock the file once the first handler ran
            conn = sqlite3.connect(store.path, isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            holder.append(conn)

    with pytest.raises(StoreError, match="locked"):
        run(dlq.reprocess_all(handler))
    holder[0].execute("ROLLBACK")
    holder[0].close()
    assert [e.item for e in dlq.list()] == [0, 1, 2]  # nothing lost
    assert run(dlq.reprocess_all(handler)) == {"successful": 3, "failed": 0}
    store.close()


def test_the_store_is_durable_by_configuration(tmp_path: Path) -> None:
    # SIGKILL keeps the page cache, so the test above cannot see a missing
    # fsync; the pragmas that make a returned write survive power loss can.
    store = SQLiteStore(tmp_path / "p.db")
    db = store._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    store.close()
