"""Configuration: from_env on TimeoutManager, Monitor, RetryPolicy and
EventEmitter, and run-time configure() on Deduplicator and BoundedQueue."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

import resil
from tests_support import run_threads

SEC = 1_000_000_000


# ---- from_env ---------------------------------------------------------------------

def test_timeout_manager_from_env_reads_the_seed_variables() -> None:
    tm = resil.TimeoutManager.from_env({
        "TIMEOUT_OPERATION_DEFAULT": "300", "TIMEOUT_GLOBAL_DEFAULT": "3600",
        "TIMEOUT_GRACE_PERIOD": " 30 ", "TIMEOUT_WARNING_THRESHOLD": "0.75"})
    assert (tm.operation_timeout, tm.global_timeout, tm.grace_period, tm.warning_threshold) == \
        (300.0, 3600.0, 30.0, 0.75)
    empty = resil.TimeoutManager.from_env({})
    assert (empty.operation_timeout, empty.grace_period) == (300.0, 30.0)


def test_resil_prefixed_name_wins_and_overrides_win_over_both() -> None:
    env = {"TIMEOUT_OPERATION_DEFAULT": "10", "RESIL_TIMEOUT_OPERATION_DEFAULT": "20",
           "TIMEOUT_GRACE_PERIOD": "5"}
    assert resil.TimeoutManager.from_env(env).operation_timeout == 20.0
    tm = resil.TimeoutManager.from_env(env, operation_timeout=40.0, grace_period=1.0)
    assert (tm.operation_timeout, tm.grace_period) == (40.0, 1.0)
    # The variable of an overridden parameter is not even parsed.
    tm = resil.TimeoutManager.from_env({"TIMEOUT_GRACE_PERIOD": "soon"}, grace_period=2)
    assert tm.grace_period == 2.0
    # An empty RESIL_ value counts as unset: the plain name is read.
    assert resil.TimeoutManager.from_env(
        {"RESIL_TIMEOUT_GRACE_PERIOD": "", "TIMEOUT_GRACE_PERIOD": "7"}).grace_period == 7.0


@pytest.mark.parametrize("variable, value", [
    ("TIMEOUT_GRACE_PERIOD", "soon"),        # does not parse
    ("TIMEOUT_GRACE_PERIOD", "nan"),
    ("TIMEOUT_OPERATION_DEFAULT", "inf"),
    ("RESIL_TIMEOUT_OPERATION_DEFAULT", "1e400"),
    ("TIMEOUT_GRACE_PERIOD", "-5"),          # parses; the constructor refuses it
    ("TIMEOUT_WARNING_THRESHOLD", "80"),     # a fraction, not a percentage
    ("TIMEOUT_OPERATION_DEFAULT", "0"),
])
def test_a_bad_timeout_value_names_the_variable_and_the_value(variable: str, value: str) -> None:
    with pytest.raises(ValueError) as info:
        resil.TimeoutManager.from_env({variable: value})
    assert variable in str(info.value) and repr(value) in str(info.value)


def test_unknown_or_bad_override_is_the_constructors_error() -> None:
    with pytest.raises(TypeError, match="bogus"):
        resil.TimeoutManager.from_env({"TIMEOUT_GRACE_PERIOD": "5"}, bogus=1)
    with pytest.raises(TypeError, match="bogus"):
        resil.Monitor.from_env({}, bogus=1)
    with pytest.raises(TypeError, match="bogus"):
        resil.RetryPolicy.from_env({"KAFKA_MAX_RETRIES": "2"}, bogus=1)
    with pytest.raises(TypeError, match="bogus"):
        resil.EventEmitter.from_env(print, {}, bogus=1)
    with pytest.raises(ValueError, match="grace_period") as info:
        resil.TimeoutManager.from_env({"TIMEOUT_GRACE_PERIOD": "5"}, grace_period=-1)
    assert "TIMEOUT_GRACE_PERIOD" not in str(info.value)
    with pytest.raises(TypeError, match="environ"):
        resil.TimeoutManager.from_env(["TIMEOUT_GRACE_PERIOD=5"])  # type: ignore[arg-type]


def test_a_rule_between_two_variables_names_both() -> None:
    with pytest.raises(ValueError) as info:
        resil.Monitor.from_env({"PERF_MONITOR_ERROR_THRESHOLD": "0",
                                "PERF_MONITOR_RESPONSE_THRESHOLD": "10"})
    assert "PERF_MONITOR_ERROR_THRESHOLD='0'" in str(info.value)
    assert "RESPONSE" not in str(info.value)  # 10 ms alone is accepted


def test_environment_is_read_at_from_env_only() -> None:
    code = textwrap.dedent("""
        import os
        os.environ["TIMEOUT_GRACE_PERIOD"] = "not a number"
        os.environ["PERF_MONITOR_RETENTION_HOURS"] = "not a number"
        import resil
        tm = resil.TimeoutManager()
        m = resil.Monitor()
        assert tm.grace_period == 30.0 and m.retention == 86400.0
        os.environ["TIMEOUT_GRACE_PERIOD"] = "4"
        assert resil.TimeoutManager.from_env().grace_period == 4.0
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_monitor_from_env_converts_hours_and_maps_the_sampling_interval() -> None:
    clock = resil.VirtualClock()
    m = resil.Monitor.from_env({"PERF_MONITOR_RETENTION_HOURS": "0.5",
                                "PERF_MONITOR_SAMPLING_INTERVAL": "300",
                                "PERF_MONITOR_ERROR_THRESHOLD": "10",
                                "PERF_MONITOR_RESPONSE_THRESHOLD": "250.0"}, clock=clock)
    assert m.retention == 1800.0
    # 1800 s in steps of 300 s: a failure leaves the window within 1800 s + one step.
    m.record("db", "q", 1.0, False)
    assert m.health() == "critical"
    clock.advance(1800 + 300)
    assert m.dashboard()["system_health"]["total_requests"] == 0
    # Thresholds: 10 % errors and 250 ms mean.
    for _ in range(9):
        m.record("db", "q", 1.0, True)
    m.record("db", "q", 1.0, False)
    assert m.health() == "degraded"   # 10 % errors
    m2 = resil.Monitor.from_env({"PERF_MONITOR_RESPONSE_THRESHOLD": "250"})
    m2.record("api", "get", 300.0, True)
    assert m2.health() == "degraded"


def test_monitor_sampling_interval_sets_the_window_step() -> None:
    # retention 600 s, interval 60 s: 10 steps of 60 s. A request at 59 s
    # leaves the window at 600 s; with the default 12 steps of 50 s, at 650 s.
    for env, gone_at in (({"PERF_MONITOR_SAMPLING_INTERVAL": "60"}, 600),
                         ({}, 650), ({"PERF_MONITOR_SAMPLING_INTERVAL": "1e-9"}, 656.25)):  # 64 steps at most
        clock = resil.VirtualClock()
        m = resil.Monitor.from_env(env, retention=600.0, clock=clock)
        clock.advance(59)
        m.record("c", "op", 1.0, True)
        clock.advance(gone_at - 59 - 0.001)
        assert m.dashboard()["system_health"]["total_requests"] == 1
        clock.advance(0.001)
        assert m.dashboard()["system_health"]["total_requests"] == 0
    # slots= wins, and the interval is then not read at all.
    m = resil.Monitor.from_env({"PERF_MONITOR_SAMPLING_INTERVAL": "often"}, slots=4)
    assert m.retention == 86400.0
    for bad in ("0", "-1", "often", "nan"):
        with pytest.raises(ValueError, match=f"PERF_MONITOR_SAMPLING_INTERVAL={bad!r}"):
            resil.Monitor.from_env({"PERF_MONITOR_SAMPLING_INTERVAL": bad})
    with pytest.raises(ValueError, match="PERF_MONITOR_RETENTION_HOURS='-1'"):
        resil.Monitor.from_env({"PERF_MONITOR_RETENTION_HOURS": "-1",
                                "PERF_MONITOR_SAMPLING_INTERVAL": "60"})


def test_retry_policy_from_env() -> None:
    calls = 0
    clock = resil.VirtualClock()

    def flaky() -> str:
        nonlocal calls
        calls += 1
        raise OSError("down")

    policy = resil.RetryPolicy.from_env({"KAFKA_MAX_RETRIES": "2"}, clock=clock,
                                        backoff=resil.Backoff(base=1.0))
    assert isinstance(policy, resil.RetryPolicy)
    with pytest.raises(OSError):
        policy(flaky)()
    assert calls == 3 and policy.stats()["retries"] == 2
    # A 2.5 s deadline with 1, 2, 4 s delays: the second sleep would cross it.
    calls = 0
    policy = resil.RetryPolicy.from_env({"RESIL_KAFKA_TIMEOUT_SECONDS": "2.5",
                                         "KAFKA_MAX_RETRIES": "9"}, clock=clock,
                                        backoff=resil.Backoff(base=1.0))
    with pytest.raises(OSError):
        policy(flaky)()
    assert calls == 2
    for variable, value in (("KAFKA_MAX_RETRIES", "-1"), ("KAFKA_MAX_RETRIES", "2.0"),
                            ("KAFKA_MAX_RETRIES", "three"), ("KAFKA_TIMEOUT_SECONDS", "0"),
                            ("KAFKA_TIMEOUT_SECONDS", "-inf")):
        with pytest.raises(ValueError, match=f"{variable}={value!r}"):
            resil.RetryPolicy.from_env({variable: value})
    calls = 0
    policy = resil.RetryPolicy.from_env({"KAFKA_MAX_RETRIES": "x"}, retries=1, clock=clock)
    with pytest.raises(OSError):
        policy(flaky)()
    assert calls == 2


@pytest.mark.parametrize("value, enabled", [
    ("1", True), ("TRUE", True), ("yes", True), ("On", True),
    ("0", False), ("false", False), ("NO", False), ("off", False)])
def test_emitter_dlq_flag_spellings(value: str, enabled: bool) -> None:
    e = resil.EventEmitter.from_env(print, {"KAFKA_ENABLE_DLQ": value}, topic="orders")
    assert (e.dlq is not None) is enabled


@pytest.mark.parametrize("value", ["2", "y", "enabled", "t"])
def test_emitter_dlq_flag_refuses_other_words(value: str) -> None:
    with pytest.raises(ValueError, match=f"KAFKA_ENABLE_DLQ={value!r}"):
        resil.EventEmitter.from_env(print, {"KAFKA_ENABLE_DLQ": value})


def test_emitter_from_env_retries_then_dead_letters_to_topic_dot_dlq() -> None:
    calls = 0

    async def publish_orders(event: Any) -> None:
        nonlocal calls
        calls += 1
        raise OSError("broker down")

    env = {"KAFKA_ENABLE_DLQ": "true", "KAFKA_MAX_RETRIES": "2", "KAFKA_TIMEOUT_SECONDS": "30",
           "RESIL_KAFKA_DLQ_SUFFIX": ".dead", "KAFKA_DLQ_SUFFIX": ".ignored"}

    async def main() -> None:
        emitter = resil.EventEmitter.from_env(publish_orders, env)
        async with emitter:
            assert emitter.emit({"id": 1})
        stats = emitter.stats()
        assert stats["dead_lettered"] == 1 and calls == 3
        dlq = emitter.dlq
        assert isinstance(dlq, resil.DeadLetterQueue)
        assert dlq.name == "publish_orders.dead"
        [entry] = dlq.list()
        assert entry.attempts == 3 and "broker down" in entry.error

    resil.run_virtual(main())
    e = resil.EventEmitter.from_env(print, {"KAFKA_ENABLE_DLQ": "1"}, topic="orders")
    assert isinstance(e.dlq, resil.DeadLetterQueue) and e.dlq.name == "orders.dlq"


def test_emitter_overrides_win_over_the_environment() -> None:
    dlq = resil.DeadLetterQueue(name="mine")
    e = resil.EventEmitter.from_env(print, {"KAFKA_ENABLE_DLQ": "maybe",
                                            "KAFKA_MAX_RETRIES": "many"}, dlq=dlq, retry=None)
    assert e.dlq is dlq

    async def fail(event: Any) -> None:
        raise OSError("no")

    async def main() -> None:
        # retry=None wins over KAFKA_MAX_RETRIES: one call, then the dlq.
        e = resil.EventEmitter.from_env(fail, {"KAFKA_MAX_RETRIES": "5"}, dlq=dlq, retry=None)
        async with e:
            e.emit("x")
        assert [entry.attempts for entry in dlq.list()] == [1]

    resil.run_virtual(main())
    with pytest.raises(ValueError, match="KAFKA_MAX_RETRIES='-2'"):
        resil.EventEmitter.from_env(print, {"KAFKA_MAX_RETRIES": "-2"})
    with pytest.raises(TypeError, match="topic"):
        resil.EventEmitter.from_env(print, {"KAFKA_ENABLE_DLQ": "1"}, topic=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue_size"):
        resil.EventEmitter.from_env(print, {}, queue_size=0)


def _hammer(workers: list[Any], reconfigure: Any) -> None:
    """Runs each worker(stop) in a thread, with thread switches every 10 us,
    while another thread calls reconfigure(); re-raises the first error."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            if i:
                workers[i - 1](stop)
                return
            try:
                reconfigure()
            finally:
                stop.set()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    run_threads(run, len(workers) + 1)
    if errors:
        raise errors[0]


# ---- Deduplicator.configure ----------------------------------------------------------

def test_dedup_lower_maxsize_evicts_the_oldest_and_gives_memory_back() -> None:
    clock = resil.VirtualClock()
    d = resil.Deduplicator(ttl=100, capacity=10_000, clock=clock)
    for i in range(5000):
        d.seen(i)
    before = d.stats()["memory_bytes"]
    d.configure(maxsize=100)
    stats = d.stats()
    assert (stats["depth"], stats["evicted"], stats["maxsize"], d.capacity) == (100, 4900, 100, 100)
    assert stats["memory_bytes"] < before / 20
    assert [i for i in range(5000) if i in d] == list(range(4900, 5000))
    assert d.seen(4999) is True and d.seen("new") is False
    assert 4900 not in d and d.stats()["evicted"] == 4901
    d.configure(capacity=200)  # the constructor's name for it
    for i in range(300):
        d.seen(("more", i))
    assert len(d) == 200


def test_dedup_ttl_change_applies_to_keys_already_stored() -> None:
    clock = resil.VirtualClock()
    d = resil.Deduplicator(ttl=100, clock=clock)
    d.seen("old")
    clock.advance(60)
    d.seen("young")
    clock.advance(10)                # old is 70 s old, young 10 s
    d.configure(ttl=50)              # old has expired under the new ttl: dropped now
    assert "old" not in d and "young" in d and d.stats()["expired"] == 1
    clock.advance(39)
    assert d.seen("young") is True   # 49 s < 50
    clock.advance(1)
    assert "young" not in d
    d.seen("k")
    d.configure(ttl=1000)            # a longer ttl lengthens what is still live
    clock.advance(500)
    assert "k" in d and "young" not in d and d.ttl == 1000.0


def test_dedup_bad_configure_changes_nothing() -> None:
    clock = resil.VirtualClock()
    d = resil.Deduplicator(ttl=10, capacity=5, clock=clock)
    for i in range(5):
        d.seen(i)
    clock.advance(20)  # all expired, not yet dropped: a successful configure would drop them
    for changes, error, name in (
            ({"ttl": 1, "maxsize": 0}, ValueError, "maxsize"),
            ({"maxsize": 1, "ttl": float("nan")}, ValueError, "ttl"),
            ({"maxsize": 1, "ttl": float("inf")}, ValueError, "ttl"),
            ({"maxsize": 1, "ttl": -1}, ValueError, "ttl"),
            ({"ttl": 1, "capacity": 10**400}, ValueError, "capacity"),
            ({"ttl": 1, "maxsize": True}, TypeError, "maxsize"),
            ({"ttl": "1"}, TypeError, "ttl"),
            ({"maxsize": 1, "capacity": 1}, TypeError, "not both"),
            ({"clock": resil.VirtualClock()}, TypeError, "clock"),
            ({"size": 3}, TypeError, "size")):
        with pytest.raises(error, match=name):
            d.configure(**changes)
        assert (d.ttl, d.capacity, d.duplicate_count) == (10.0, 5, 0)
    # Nothing was dropped either: the expired keys are still there to expire.
    with pytest.raises(TypeError, match="keyword"):
        d.configure(5)  # type: ignore[misc]
    d.configure()  # nothing to change: drops what has expired, as stats() would
    assert d.stats()["expired"] == 5


def test_dedup_configure_under_threads_is_atomic() -> None:
    d = resil.Deduplicator(ttl=1000, capacity=64)

    def worker(n: int) -> Any:
        def work(stop: threading.Event) -> None:
            i = 0
            while not stop.is_set():
                d.seen((n, i % 500))
                d.put(("v", n, i % 300), i)
                i += 1
        return work

    def reconfigure() -> None:
        for k in range(300):
            d.configure(maxsize=1 + k % 97, ttl=0.5 + k % 3)
            assert len(d) <= 1 + k % 97

    _hammer([worker(n) for n in range(3)], reconfigure)
    s = d.stats()
    assert s["depth"] <= s["maxsize"] == 1 + 299 % 97


# ---- BoundedQueue.configure ------------------------------------------------------------

def test_queue_lowered_below_its_depth_keeps_items_and_refuses_puts_until_drained() -> None:
    q: resil.BoundedQueue[int] = resil.BoundedQueue(10, warn_at=0.5, reject_at=1.0)
    for i in range(8):
        q.put_nowait(i)
    q.configure(maxsize=4)
    assert q.qsize() == 8 and q.full() and q.pressure == 2.0 and q.maxsize == 4
    with pytest.raises(resil.QueueFull):
        q.put_nowait(99)
    assert [q.get_nowait() for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(resil.QueueFull):
        q.put_nowait(99)  # depth 4 is still the limit
    assert q.get_nowait() == 4
    q.put_nowait(99)
    assert [q.get_nowait() for _ in range(4)] == [5, 6, 7, 99]
    assert q.stats()["rejected"] == 2


def test_queue_watermarks_change_and_the_warning_follows() -> None:
    q: resil.BoundedQueue[int] = resil.BoundedQueue(10, warn_at=0.8, reject_at=1.0)
    for i in range(5):
        q.put_nowait(i)
    assert not q.warning and q.stats()["warnings"] == 0
    q.configure(warn_at=0.5)
    assert q.warning and q.stats()["warnings"] == 1 and q.warn_at == 0.5
    q.configure(warn_at=0.6)
    assert not q.warning and q.stats()["warnings"] == 1
    q.configure(warn_at=0.3, maxsize=20)  # 5 >= 6? no: ceil(0.3 * 20) = 6
    assert not q.warning
    q.configure(maxsize=15)               # ceil(0.3 * 15) = 5: in the zone again
    assert q.warning and q.stats()["warnings"] == 2


def test_queue_bad_configure_changes_nothing() -> None:
    q: resil.BoundedQueue[int] = resil.BoundedQueue(10, warn_at=0.8, reject_at=0.9)
    for changes, error, name in (
            ({"maxsize": 5, "reject_at": 0.7}, ValueError, r"reject_at must be >= warn_at \(0.8\)"),
            ({"maxsize": 5, "warn_at": 0.95}, ValueError, "warn_at"),
            ({"warn_at": 0.1, "maxsize": 0}, ValueError, "maxsize"),
            ({"warn_at": 0.1, "maxsize": 2**30 + 1}, ValueError, "maxsize"),
            ({"warn_at": 0.1, "maxsize": 5.0}, TypeError, "maxsize"),
            ({"maxsize": 5, "reject_at": float("nan")}, ValueError, "reject_at"),
            ({"maxsize": 5, "reject_at": 0}, ValueError, "reject_at"),
            ({"maxsize": 5, "warn_at": True}, TypeError, "warn_at"),
            ({"maxsize": 5, "clock": None}, TypeError, "clock"),
            ({"size": 5}, TypeError, "size")):
        with pytest.raises(error, match=name):
            q.configure(**changes)
        assert (q.maxsize, q.warn_at, q.reject_at) == (10, 0.8, 0.9)
    for i in range(9):
        q.put_nowait(i)
    with pytest.raises(resil.QueueFull):
        q.put_nowait(9)


def test_queue_raised_limit_wakes_waiting_puts() -> None:
    async def main() -> None:
        q: resil.BoundedQueue[int] = resil.BoundedQueue(2, reject_at=1.0)
        q.put_nowait(0)
        q.put_nowait(1)
        done: list[int] = []

        async def producer(i: int) -> None:
            await q.put(i)
            done.append(i)

        tasks = [asyncio.create_task(producer(i)) for i in (2, 3, 4)]
        await asyncio.sleep(1)
        assert done == []
        q.configure(maxsize=4)  # room for two
        await asyncio.sleep(1)
        assert done == [2, 3] and q.qsize() == 4
        assert q.get_nowait() == 0
        await asyncio.sleep(1)
        assert done == [2, 3, 4]
        await asyncio.gather(*tasks)
        assert [q.get_nowait() for _ in range(4)] == [1, 2, 3, 4]

    resil.run_virtual(main())


def test_queue_configure_under_threads_is_atomic() -> None:
    q: resil.BoundedQueue[int] = resil.BoundedQueue(100, reject_at=1.0)
    counts = {"put": 0, "got": 0}
    lock = threading.Lock()

    def producer(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                q.put_nowait(1)
            except resil.QueueFull:
                continue
            with lock:
                counts["put"] += 1

    def consumer(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                q.get_nowait()
            except asyncio.QueueEmpty:
                continue
            with lock:
                counts["got"] += 1

    def reconfigure() -> None:
        for k in range(500):
            q.configure(maxsize=1 + k % 50, warn_at=0.5 if k % 2 else 1.0)

    _hammer([producer, producer, consumer], reconfigure)
    s = q.stats()
    assert s["depth"] == counts["put"] - counts["got"] == s["put"] - s["got"]
    # The last configure (maxsize 50) holds: items beyond it were kept, none added.
    assert s["maxsize"] == 50 and q.full() == (s["depth"] >= 50) and s["depth"] <= 100
    if s["depth"] < 50:
        q.put_nowait(2)
