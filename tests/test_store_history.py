"""Bounded storage and dead-letter history: SQLiteStore's max_events,
retention and prune (numbers never reused), a file of the previous schema
opened and migrated, each dead letter's history of attempts, and the
DeadLetterQueue's ttl and configure()."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import resil
from resil import DeadLetterQueue, EventBus, SQLiteStore, StoreError
from tests_support import run_threads


def append(store: SQLiteStore, timestamp: float = 1_700_000_000.0, event_type: str = "t") -> int:
    event_id = uuid.uuid4().hex
    return store.append_event(event_id, event_type, json.dumps({"id": event_id}), timestamp,
                              event_id, "1.0", None, None)


def seqs(store: SQLiteStore) -> list[int]:
    return [row["seq"] for row in store.events()]


def vm_steps(store: SQLiteStore, action: Callable[[], Any]) -> int:
    """SQLite virtual-machine steps (in tens) ``action`` makes on the
    store's connection: the work a statement does, free of timing noise."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    db = store._db  # the instrument: SQLite's own step counter on this connection
    db.set_progress_handler(tick, 10)
    try:
        action()
    finally:
        db.set_progress_handler(None, 10)
    return steps


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLiteStore | None]:
    if request.param == "memory":
        yield None
    else:
        with SQLiteStore(tmp_path / "d.db") as s:
            yield s


# ---- max_events, retention, prune ----------------------------------------------------------
def test_max_events_keeps_the_newest_events_as_a_bus_publishes(tmp_path: Path) -> None:
    async def main() -> None:
        with SQLiteStore(tmp_path / "log.db", max_events=3) as store:
            bus = EventBus(store=store)
            for i in range(10):
                event = await bus.publish("t", {"i": i})
            assert event.seq == 10
            assert seqs(store) == [8, 9, 10]
            assert [row["payload"] for row in store.events()] == [
                '{"i":7}', '{"i":8}', '{"i":9}']
            st = store.stats()
            assert (st["events"], st["last_seq"], st["evicted"], st["expired"],
                    st["pruned"]) == (3, 10, 7, 0, 0)
            assert store.max_events == 3 and store.retention is None

    asyncio.run(main())


def test_ten_thousand_appends_with_max_events_1000_stay_bounded_at_a_flat_cost() -> None:
    with SQLiteStore(":memory:", max_events=1000) as store:
        for _ in range(1000):
            append(store)
        early = vm_steps(store, lambda: [append(store) for _ in range(200)])
        for i in range(8600):
            append(store)
            if i % 1000 == 0:
                assert store.event_count() <= 1000
        late = vm_steps(store, lambda: [append(store) for _ in range(200)])
        assert store.event_count() == 1000 and store.last_seq() == 10_000
        assert seqs(store) == list(range(9001, 10_001))
        # The same work per append at 1,200 numbers as at 10,000: no scan of the log.
        assert late <= early * 1.1, (early, late)
        assert store.stats()["evicted"] == 9000


def test_retention_prunes_events_older_than_the_new_ones_timestamp() -> None:
    with SQLiteStore(":memory:", retention=60) as store:
        for t in (1000.0, 1030.0, 1050.0):
            append(store, t)
        assert seqs(store) == [1, 2, 3]
        append(store, 1070.0)  # cut off at 1010: the event of 1000 goes
        assert seqs(store) == [2, 3, 4]
        append(store, 1200.0)  # cut off at 1140: all but the new one go
        assert seqs(store) == [5]
        assert store.stats()["expired"] == 4 and store.retention == 60.0
        assert append(store, 1201.0) == 6


def test_prune_keep_and_before_return_what_they_removed() -> None:
    with SQLiteStore(":memory:") as store:
        for t in range(10):
            append(store, 1000.0 + t)
        assert store.prune(keep=20) == 0
        assert store.prune(keep=7) == 3 and seqs(store) == list(range(4, 11))
        assert store.prune(before=1005.0) == 2 and seqs(store) == list(range(6, 11))
        assert store.prune(before=1005.0) == 0
        # Both: an event goes if either says so.
        assert store.prune(keep=4, before=1008.0) == 3 and seqs(store) == [9, 10]
        assert store.prune(keep=0) == 2 and seqs(store) == []
        assert store.stats()["pruned"] == 10 and store.last_seq() == 10
        assert append(store) == 11


def test_prune_without_arguments_applies_the_stores_limits(tmp_path: Path) -> None:
    with SQLiteStore(":memory:") as plain:
        with pytest.raises(ValueError, match="prune needs keep or before"):
            plain.prune()
    path = tmp_path / "log.db"
    with SQLiteStore(path) as plain:  # no limits while these arrive
        for _ in range(3):
            append(plain, 1_000_000.0)  # long before the wall clock's now - 3600
        for t in range(4):
            append(plain, 4e9 + t)  # in the future: kept by retention
    with SQLiteStore(path, max_events=3, retention=3600) as store:
        assert store.event_count() == 7  # opening prunes nothing
        assert store.prune() == 4 and seqs(store) == [5, 6, 7]
        assert store.prune() == 0 and store.stats()["pruned"] == 4
    with SQLiteStore(path, max_events=2) as store:
        assert store.prune() == 1 and seqs(store) == [6, 7]


def test_numbers_are_never_reused_after_pruning_everything_or_reopening(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with SQLiteStore(path) as store:
        for _ in range(5):
            append(store)
        assert store.prune(keep=0) == 5
        assert store.last_seq() == 5 and store.stats()["last_seq"] == 5
        assert append(store) == 6
        assert store.prune(keep=0) == 1
    with SQLiteStore(path) as store:
        assert store.event_count() == 0 and store.last_seq() == 6
        assert append(store) == 7
        with SQLiteStore(path, max_events=1) as other:  # a second writer on the file
            assert append(other) == 8 and seqs(other) == [8]
            assert append(store) == 9 and append(other) == 10
            assert seqs(store) == [10]


def test_numbers_are_never_reused_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with SQLiteStore(path) as store:
        for _ in range(3):
            append(store)
        script = textwrap.dedent(f"""
            import json, resil
            with resil.SQLiteStore({str(path)!r}, max_events=1) as s:
                for i in range(4):
                    s.append_event("other%d" % i, "t", "{{}}", 1.0, "c", "1.0", None, None)
                print(s.prune(keep=0))
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=60, check=True)
        assert out.stdout.strip() == "1"
        assert store.event_count() == 0 and store.last_seq() == 7
        assert append(store) == 8


def test_writers_in_threads_sharing_a_capped_file_never_reuse_a_number(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    stores = [SQLiteStore(path, max_events=25) for _ in range(4)]
    numbers: list[list[int]] = [[] for _ in stores]

    def writer(i: int) -> None:
        for n in range(40):
            numbers[i].append(append(stores[i]))
            if n == 20 and i == 0:
                stores[i].prune(keep=0)

    try:
        run_threads(writer, 4)
        every = sorted(n for ns in numbers for n in ns)
        assert every == list(range(1, 161))
        assert all(ns == sorted(ns) for ns in numbers)
        left = seqs(stores[0])  # the last 25 numbers, less what prune(keep=0) took late
        assert left == list(range(max(136, left[0]), 161)) and stores[1].last_seq() == 160
    finally:
        for store in stores:
            store.close()


def test_replay_after_a_prune_delivers_what_is_left_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        with SQLiteStore(tmp_path / "log.db") as store:
            bus = EventBus(store=store)
            events = [await bus.publish("t", {"i": i}) for i in range(10)]
            store.prune(keep=6)
            store.prune(before=events[6].timestamp)
            seen: list[int] = []
            bus.subscribe("t", lambda event: seen.append(event.seq))
            assert await bus.replay() == len(seen)
            assert seen == [e.seq for e in events if e.seq >= 7 and e.seq >= 5] == seen
            assert seen[0] >= 7 and seen == sorted(seen) and seen[-1] == 10
            seen.clear()
            assert (await bus.publish("t", {"i": 10})).seq == 11
            assert await bus.replay(from_seq=1) == 5 and seen[-2:] == [10, 11]

    asyncio.run(main())


@pytest.mark.parametrize("value, error", [
    (0, ValueError), (-1, ValueError), (2**63, ValueError), (10**400, ValueError),
    (True, TypeError), (False, TypeError), (1.0, TypeError), ("5", TypeError)])
def test_max_events_must_be_a_positive_int_or_none(value: Any, error: type) -> None:
    with pytest.raises(error, match=r"max_events must be None or an int in \[1, 2\*\*63 - 1\]"):
        SQLiteStore(":memory:", max_events=value)


@pytest.mark.parametrize("value, error", [
    (0, ValueError), (-1.0, ValueError), (math.nan, ValueError), (math.inf, ValueError),
    (10**400, ValueError), (True, TypeError), ("60", TypeError)])
def test_retention_must_be_a_finite_positive_duration_or_none(value: Any, error: type) -> None:
    with pytest.raises(error, match="retention must be None or a"):
        SQLiteStore(":memory:", retention=value)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"keep": -1}, ValueError, r"keep must be None or an int in \[0, 2\*\*63 - 1\]"),
    ({"keep": True}, TypeError, "keep must be None or an int"),
    ({"keep": 1.5}, TypeError, "keep must be None or an int"),
    ({"keep": 2**64}, ValueError, "keep must be None or an int"),
    ({"before": math.nan}, ValueError, "before must be None or a finite Unix time"),
    ({"before": -math.inf}, ValueError, "before must be None or a finite Unix time"),
    ({"before": 10**400}, ValueError, "before must be None or a finite Unix time"),
    ({"before": True}, TypeError, "before must be None or a Unix time"),
    ({"before": "1"}, TypeError, "before must be None or a Unix time")])
def test_prune_checks_its_arguments_and_removes_nothing_on_a_bad_one(
        kwargs: dict[str, Any], error: type, match: str) -> None:
    with SQLiteStore(":memory:") as store:
        append(store)
        with pytest.raises(error, match=match):
            store.prune(**kwargs)
        assert store.event_count() == 1


def test_limits_apply_to_the_event_log_and_not_to_dead_letters() -> None:
    with SQLiteStore(":memory:", max_events=1, retention=1) as store:
        dlq = DeadLetterQueue(store=store, maxsize=10)
        for i in range(5):
            dlq.put(i, "e")
            append(store, 1e9 + 100 * i)
        assert len(dlq) == 5 and store.event_count() == 1


# ---- a file written by the previous release ------------------------------------------------
#: A file made by the release before histories (store schema 1), as sqlite3's
#: iterdump wrote it: five events, and two dead letters of queue "orders" -
#: one as put, one after a failed reprocess.
SCHEMA_1_DUMP = """
CREATE TABLE resil_dead_letters ( id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, item TEXT NOT NULL, error TEXT NOT NULL, error_type TEXT NOT NULL, source TEXT, attempts INTEGER NOT NULL, timestamp REAL NOT NULL);
INSERT INTO "resil_dead_letters" VALUES(1,'orders','{"kind": "value", "value": {"n": 1}}','ValueError: bad input','ValueError','order.placed:handle',2,1.79658829888570237155e+09);
INSERT INTO "resil_dead_letters" VALUES(2,'orders','{"kind": "value", "value": "second"}','RuntimeError: still broken','RuntimeError',NULL,1,1.79658829888669705388e+09);
CREATE TABLE resil_events ( seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL, payload TEXT NOT NULL, timestamp REAL NOT NULL, correlation_id TEXT NOT NULL, schema_version TEXT NOT NULL, idempotency_key TEXT, publisher TEXT);
INSERT INTO "resil_events" VALUES(1,'a8c7e95fa4644091a829000000000001','order.placed','{"n":0}',1.79658829886764788625e+09,'a8c7e95fa4644091a829000000000001','1.0',NULL,NULL);
INSERT INTO "resil_events" VALUES(2,'a8c7e95fa4644091a829000000000002','order.placed','{"n":1}',1.79658829888249492639e+09,'a8c7e95fa4644091a829000000000002','1.0',NULL,NULL);
INSERT INTO "resil_events" VALUES(3,'a8c7e95fa4644091a829000000000003','order.placed','{"n":2}',1.79658829888365602495e+09,'a8c7e95fa4644091a829000000000003','1.0',NULL,NULL);
INSERT INTO "resil_events" VALUES(4,'a8c7e95fa4644091a829000000000004','order.placed','{"n":3}',1.79658829888455891612e+09,'a8c7e95fa4644091a829000000000004','1.0',NULL,NULL);
INSERT INTO "resil_events" VALUES(5,'a8c7e95fa4644091a829000000000005','order.placed','{"n":4}',1796588298.88514,'a8c7e95fa4644091a829000000000005','1.0',NULL,NULL);
CREATE TABLE resil_meta ( key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "resil_meta" VALUES('schema','1');
CREATE INDEX resil_events_by_type ON resil_events (event_type, seq);
CREATE INDEX resil_events_by_time ON resil_events (timestamp);
CREATE INDEX resil_dead_letters_by_queue ON resil_dead_letters (queue, id);
INSERT INTO "sqlite_sequence" VALUES('resil_dead_letters',2);
"""


def schema_1_file(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1_DUMP)
    db.close()
    return path


def test_a_file_of_the_previous_schema_opens_and_keeps_working(tmp_path: Path) -> None:
    path = schema_1_file(tmp_path / "old.db")

    async def main() -> None:
        with SQLiteStore(path, max_events=4) as store:
            assert seqs(store) == [1, 2, 3, 4, 5] and store.last_seq() == 5
            dlq = DeadLetterQueue(store=store, name="orders", maxsize=2)
            first, second = dlq.list()
            assert (first.item, first.attempts, first.source) == ({"n": 1}, 2, "order.placed:handle")
            # What the old row knows: its time added, its last error, its source.
            assert first.history == ((first.timestamp, "ValueError: bad input",
                                      "order.placed:handle"),)
            assert second.history == ((second.timestamp, "RuntimeError: still broken", None),)
            assert second.history_dropped == 0

            def still_failing(item: Any) -> None:
                raise KeyError("again")

            assert await dlq.reprocess(second.id, still_failing) is False
            again = dlq.get(second.id)
            assert again.attempts == 2 and len(again.history) == 2
            assert again.history[0] == second.history[0]
            assert again.history[1][1:] == (
                "KeyError: 'again'",
                "reprocess:test_a_file_of_the_previous_schema_opens_and_keeps_working"
                ".<locals>.main.<locals>.still_failing")
            # The queue's size came across: one more put evicts the oldest.
            dlq.put("third", "e")
            assert [e.item for e in dlq.list()] == ["second", "third"]
            assert dlq.stats()["evicted"] == 1
            bus = EventBus(store=store)
            assert (await bus.publish("order.placed", {"n": 5})).seq == 6
            assert seqs(store) == [3, 4, 5, 6]
        with SQLiteStore(path) as store:  # and again, now at the current schema
            assert store.last_seq() == 6 and len(DeadLetterQueue(store=store, name="orders")) == 2
        db = sqlite3.connect(path)
        assert db.execute("SELECT value FROM resil_meta WHERE key = 'schema'").fetchone() == ("2",)
        db.close()

    asyncio.run(main())


def test_a_file_of_an_unknown_schema_is_refused(tmp_path: Path) -> None:
    path = schema_1_file(tmp_path / "future.db")
    db = sqlite3.connect(path)
    db.execute("UPDATE resil_meta SET value = '9' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="store schema '9' is not supported"):
        SQLiteStore(path)


# ---- dead-letter history ---------------------------------------------------------------------
class Flaky:
    """A reprocess handler failing with ``ConnectionError("try <n>")``."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, item: Any) -> None:
        self.calls += 1
        raise ConnectionError(f"try {self.calls}")


def test_history_lists_the_failure_and_each_failed_reprocess(store: SQLiteStore | None) -> None:
    clock = resil.VirtualClock()
    dlq = DeadLetterQueue(store=store, clock=clock)
    entry_id = dlq.put({"order": 7}, ValueError("bad total"), source="orders:bill", attempts=3)
    added = dlq.get(entry_id).timestamp
    assert dlq.get(entry_id).history == ((added, "ValueError: bad total", "orders:bill"),)
    flaky = Flaky()
    clock.advance(10)
    assert asyncio.run(dlq.reprocess(entry_id, flaky)) is False
    clock.advance(15)

    async def handler(item: Any) -> None:
        raise TimeoutError

    assert asyncio.run(dlq.reprocess(entry_id, handler)) is False
    entry = dlq.get(entry_id)
    assert entry.history == (
        (added, "ValueError: bad total", "orders:bill"),
        (pytest.approx(added + 10, abs=1e-3), "ConnectionError: try 1", "reprocess:Flaky"),
        (pytest.approx(added + 25, abs=1e-3), "TimeoutError",
         "reprocess:test_history_lists_the_failure_and_each_failed_reprocess.<locals>.handler"))
    assert (entry.attempts, entry.error, entry.history_dropped) == (5, "TimeoutError", 0)
    assert dlq.list()[0].history == entry.history
    assert asyncio.run(dlq.reprocess(entry_id, lambda item: None)) is True
    with pytest.raises(KeyError):
        dlq.get(entry_id)


def test_history_keeps_the_first_and_latest_attempts_and_counts_the_rest(
        store: SQLiteStore | None) -> None:
    clock = resil.VirtualClock()
    dlq = DeadLetterQueue(store=store, clock=clock)
    entry_id = dlq.put("x", "first failure")
    flaky = Flaky()
    for _ in range(30):
        clock.advance(1)
        asyncio.run(dlq.reprocess(entry_id, flaky))
    entry = dlq.get(entry_id)
    assert len(entry.history) == 20 and entry.history_dropped == 11
    assert entry.history[0][1:] == ("first failure", None)
    assert [h[1] for h in entry.history[1:]] == [f"ConnectionError: try {n}"
                                                  for n in range(12, 31)]
    assert [round(h[0] - entry.timestamp) for h in entry.history] == [0, *range(12, 31)]
    assert entry.attempts == 30


def test_concurrent_reprocesses_through_two_stores_lose_no_attempt(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with SQLiteStore(path) as a, SQLiteStore(path) as b:
        queues = [DeadLetterQueue(store=a, name="q"), DeadLetterQueue(store=b, name="q")]
        entry_id = queues[0].put("x", "e")

        def worker(i: int) -> None:
            for _ in range(8):
                asyncio.run(queues[i].reprocess(entry_id, Flaky()))

        run_threads(worker, 2)
        entry = queues[1].get(entry_id)
        assert len(entry.history) == 17 and entry.history_dropped == 0
        assert sorted(h[1] for h in entry.history[1:]) == ["ConnectionError: try 1"] * 16


def test_a_corrupt_history_is_reported_naming_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with SQLiteStore(path) as store:
        entry_id = DeadLetterQueue(store=store, name="q").put("x", "e")
    db = sqlite3.connect(path)
    db.execute("UPDATE resil_dead_letters SET history = '[[1, 2]]'")
    db.commit()
    db.close()
    with SQLiteStore(path) as store:
        with pytest.raises(StoreError, match=f"history of dead letter {entry_id} of queue 'q'"):
            DeadLetterQueue(store=store, name="q").get(entry_id)


# ---- ttl and configure ---------------------------------------------------------------------
def test_ttl_ages_stored_entries_by_the_putting_queues_timestamp_and_the_readers_clock(
        tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with SQLiteStore(path) as one, SQLiteStore(path) as two:
        writer_clock, reader_clock = resil.VirtualClock(), resil.VirtualClock()
        writer = DeadLetterQueue(store=one, name="q", clock=writer_clock)
        writer.put("a", "e")
        writer_clock.advance(40)
        writer.put("b", "e")
        reader = DeadLetterQueue(store=two, name="q", ttl=30, clock=reader_clock)
        # An entry's age is the reading queue's Unix time (the wall clock when it
        # was made, plus what its clock moved since) minus the timestamp the
        # putting queue stored: "b" was stamped 40 s ahead of the reader's now.
        assert [e.item for e in reader.list()] == ["a", "b"]
        reader_clock.advance(29.5)
        assert [e.item for e in reader.list()] == ["a", "b"]
        reader_clock.advance(1)
        assert [e.item for e in reader.list()] == ["b"] and reader.stats()["expired"] == 1
        assert [e.item for e in writer.list()] == ["b"]  # gone from the file for both
        reader_clock.advance(39)
        assert len(reader) == 1
        reader_clock.advance(1)
        assert len(reader) == 0 and reader.stats()["expired"] == 2


def test_a_put_with_ttl_does_not_scan_the_queue() -> None:
    with SQLiteStore(":memory:") as store:
        clock = resil.VirtualClock()
        dlq = DeadLetterQueue(maxsize=1 << 20, store=store, ttl=1e6, clock=clock)

        def puts() -> None:
            for _ in range(20):
                clock.advance(0.001)
                dlq.put("x", "e")

        puts()
        few = vm_steps(store, puts)
        for _ in range(3000):
            dlq.put("x", "e")
        many = vm_steps(store, puts)
        assert many <= few * 1.2, (few, many)
        clock.advance(1e6)
        dlq.put("last", "e")
        assert dlq.stats()["expired"] == 3060 and [e.item for e in dlq.list()] == ["last"]


def test_configure_lowers_maxsize_evicting_the_oldest(store: SQLiteStore | None) -> None:
    dlq = DeadLetterQueue(maxsize=10, store=store)
    for i in range(8):
        dlq.put(i, "e")
    dlq.configure(maxsize=3)
    assert dlq.maxsize == 3 and [e.item for e in dlq.list()] == [5, 6, 7]
    assert dlq.stats()["evicted"] == 5
    dlq.put(8, "e")
    assert [e.item for e in dlq.list()] == [6, 7, 8] and dlq.stats()["evicted"] == 6
    dlq.configure(maxsize=100)
    for i in range(9, 20):
        dlq.put(i, "e")
    assert len(dlq) == 14 and dlq.stats()["maxsize"] == 100


def test_configure_ttl_drops_what_is_now_too_old(store: SQLiteStore | None) -> None:
    clock = resil.VirtualClock()
    dlq = DeadLetterQueue(store=store, clock=clock)
    for i in range(4):
        dlq.put(i, "e")
        clock.advance(10)
    dlq.configure(ttl=25)  # now 40 s: the entries of 0 and 10 s are 40 and 30 s old
    assert dlq.ttl == 25.0 and [e.item for e in dlq.list()] == [2, 3]
    assert dlq.stats()["expired"] == 2
    clock.advance(100)
    dlq.configure(ttl=None)
    assert dlq.ttl is None and [e.item for e in dlq.list()] == [2, 3]
    dlq.configure()  # nothing given: nothing changes
    assert (dlq.maxsize, dlq.ttl, len(dlq)) == (100, None, 2)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"maxsize": 0}, ValueError, r"maxsize must be an int in \[1, 2\*\*31\]"),
    ({"maxsize": True}, TypeError, "maxsize must be an int"),
    ({"maxsize": 2.0}, TypeError, "maxsize must be an int"),
    ({"maxsize": 2**31 + 1}, ValueError, "maxsize must be an int"),
    ({"ttl": 0}, ValueError, "ttl must be None or a finite number of seconds"),
    ({"ttl": math.nan}, ValueError, "ttl must be None or a finite number of seconds"),
    ({"ttl": math.inf}, ValueError, "ttl must be None or a finite number of seconds"),
    ({"ttl": 10**400}, ValueError, "ttl must be None or a finite number of seconds"),
    ({"ttl": True}, TypeError, "ttl must be None or a number of seconds"),
    ({"maxsize": 1, "ttl": -1}, ValueError, "ttl must be"),  # all or nothing
    ({"maxsize": -1, "ttl": 1}, ValueError, "maxsize must be"),
])
def test_configure_checks_every_value_before_changing_anything(
        kwargs: dict[str, Any], error: type, match: str) -> None:
    dlq = DeadLetterQueue(maxsize=5, ttl=60, clock=resil.VirtualClock())
    for i in range(5):
        dlq.put(i, "e")
    with pytest.raises(error, match=match):
        dlq.configure(**kwargs)
    assert (dlq.maxsize, dlq.ttl, len(dlq), dlq.stats()["evicted"]) == (5, 60.0, 5, 0)


def test_configure_takes_keywords_only_and_refuses_unknown_ones() -> None:
    dlq = DeadLetterQueue()
    with pytest.raises(TypeError):
        dlq.configure(5)  # type: ignore[misc]
    with pytest.raises(TypeError, match="size"):
        dlq.configure(size=5)  # type: ignore[call-arg]


def test_configure_racing_puts_leaves_the_queue_within_the_new_maxsize(
        store: SQLiteStore | None) -> None:
    dlq = DeadLetterQueue(maxsize=1000, store=store)
    done = threading.Event()

    def worker(i: int) -> None:
        if i == 0:
            try:
                for size in (500, 100, 20, 5):
                    dlq.configure(maxsize=size)
            finally:
                done.set()
        else:
            n = 0
            while not done.is_set() or n < 50:
                dlq.put(n, "e")
                n += 1

    run_threads(worker, 3)
    assert len(dlq) <= 5 and dlq.maxsize == 5
    st = dlq.stats()
    assert st["added"] == st["depth"] + st["evicted"]
