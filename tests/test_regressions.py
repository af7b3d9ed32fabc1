"""One test per defect found in review, each failing before its fix."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any

import pytest

import resil
from resil import State


class SlowClock:
    """A Python clock (any object with now()); optionally releases the GIL."""

    def __init__(self, sleep: float = 0.0) -> None:
        self.t = 100.0
        self.sleep = sleep

    def now(self) -> float:
        if self.sleep:
            time.sleep(self.sleep)
        return self.t


def test_python_clock_keeps_the_calls_exception_and_counts_a_failure() -> None:
    b = resil.CircuitBreaker("x", clock=SlowClock(), failure_threshold=3)

    @b
    def boom() -> None:
        raise ZeroDivisionError

    @b
    async def aboom() -> None:
        raise KeyError("k")

    with pytest.raises(ZeroDivisionError):
        b.call(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        boom()
    with pytest.raises(KeyError):
        asyncio.run(aboom())
    st = b.stats()
    assert (st["failures"], st["successes"], st["state"]) == (3, 0, State.OPEN)


def test_virtual_clock_set_backwards_is_a_value_error_with_a_readable_message() -> None:
    with pytest.raises(ValueError, match=r"now is 10\.000000000, got 9\.5"):
        resil.VirtualClock(10).set(9.5)


def test_a_permit_reported_from_two_threads_counts_once() -> None:
    b = resil.CircuitBreaker("x", clock=SlowClock(sleep=0.001), failure_threshold=0)
    permits = [b.acquire() for _ in range(50)]
    errors: list[BaseException] = []

    def report() -> None:
        for p in permits:
            try:
                b.record_success(p)
            except ValueError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=report) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.stats()["successes"] == 50 and len(errors) == 50


def test_dedup_is_safe_across_threads_with_python_eq_keys() -> None:
    @dataclasses.dataclass(frozen=True)
    class Key:
        n: int
        s: str

    d = resil.Deduplicator()
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(3000):
                d.seen(Key(i % 50, "x"))
                Key(i % 7, "x") in d  # noqa: B015
        except BaseException as exc:  # pragma: no cover - the defect
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and len(d) == 50 and d.duplicate_count == 4 * 3000 - 50


def test_a_failing_wakeup_never_loses_an_item() -> None:
    q: resil.BoundedQueue[str] = resil.BoundedQueue(1, reject_at=1.0)
    q.put_nowait("a")
    other = asyncio.new_event_loop()
    parked = other.create_future()  # a put() parked on a loop since closed
    other.close()
    q._putters.append(parked)
    assert q.get_nowait() == "a"


def test_throughput_is_over_the_span_the_window_covers() -> None:
    clock = resil.VirtualClock()
    q: resil.BoundedQueue[int] = resil.BoundedQueue(10, clock=clock)
    for _ in range(3000):       # 100 gets per second for 30 s
        q.put_nowait(1)
        q.get_nowait()
        clock.advance(0.01)
    assert q.stats()["throughput"] == pytest.approx(100, rel=0.02)


def test_retry_deadline_lets_the_callers_cancellation_through() -> None:
    @resil.retry(retries=3, deadline=1.0)
    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)  # cleans up for a while
            raise

    async def main() -> None:
        task = asyncio.create_task(slow_to_stop())
        await asyncio.sleep(1.2)      # the deadline passed; the attempt is unwinding
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    resil.run_virtual(main())


def test_a_nested_timeout_keeps_its_own_deadline_when_the_parent_gets_grace() -> None:
    tm = resil.TimeoutManager(grace_period=30)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with tm.timeout("outer", 10) as outer:
            await asyncio.sleep(9)
            outer.progress()
            with pytest.raises(resil.OperationTimeout, match="inner"):
                async with tm.timeout("inner", 5):   # bound by outer (10) at first
                    await asyncio.sleep(100)
            assert loop.time() == 14.0               # its own 5 s, not outer's grace (40)

    resil.run_virtual(main())


def test_drain_of_a_processed_queue_is_true_even_with_zero_timeout() -> None:
    async def main() -> None:
        assert await resil.BoundedQueue(10).drain(0) is True
        assert await resil.PartitionedQueue(10).drain(0) is True
        q: resil.BoundedQueue[int] = resil.BoundedQueue(10)
        q.put_nowait(1)
        assert await q.drain(0) is False

    resil.run_virtual(main())


def test_last_opened_is_unix_time_everywhere_and_reset_clears_it() -> None:
    b = resil.CircuitBreaker("x", clock=resil.VirtualClock())
    before = time.time()
    b.open()
    assert before <= b.last_opened <= time.time()  # type: ignore[operator]
    assert b.stats()["last_opened"] == b.last_opened
    b.reset()
    assert b.last_opened is None and b.stats()["last_opened"] is None


def test_a_non_finite_retry_hint_is_ignored() -> None:
    clock = resil.VirtualClock()
    calls: list[float] = []

    class Hinted(Exception):
        retry_after = float("nan")

    @resil.retry(retries=1, backoff=resil.Backoff(2.0), clock=clock)
    def f() -> str:
        calls.append(clock.now())
        if len(calls) == 1:
            raise Hinted()
        return "ok"

    assert f() == "ok" and calls == [0.0, 2.0]


def test_executor_work_takes_no_virtual_time() -> None:
    # The virtual loop once jumped to its next timer while a worker thread
    # was still busy, so a store write "took" an hour of virtual time and
    # asyncio.Runner's 300 s executor-join timeout fired at once (3.12+).
    clock = resil.VirtualClock()

    async def main() -> float:
        timer = asyncio.ensure_future(asyncio.sleep(3600))
        await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.05)
        now = clock.now()
        timer.cancel()
        return now

    assert resil.run_virtual(main(), clock) == 0.0


@pytest.mark.parametrize("state", list(State))
def test_state_str_and_format_give_the_name(state: State) -> None:
    # IntEnum printed the number on 3.11+ ("2") and "State.OPEN" on 3.10,
    # so `print(breaker.state)` and log f-strings showed no name.
    assert str(state) == state.name
    assert f"{state}" == state.name
    assert f"{state:>12}" == f"{state.name:>12}"
    assert "%s" % state == state.name
    # The value is still the metric encoding.
    assert int(state) == state.value and "%d" % state == str(state.value)
    assert repr(state) == f"<State.{state.name}: {state.value}>"


def test_unconfigured_logging_prints_nothing() -> None:
    # Without a handler on the resil logger, Python's last-resort handler
    # printed every resil WARNING (trips, contract violations) to stderr of
    # an application that had configured no logging at all.
    import subprocess
    import sys

    code = (
        "import asyncio, resil\n"
        "b = resil.CircuitBreaker('x', failure_threshold=1)\n"
        "b.record_failure(b.acquire(), 1.0)\n"
        "assert b.state == resil.State.OPEN\n"
        "bus = resil.EventBus()\n"
        "bus.subscribe('t', lambda e: None, required=('f',))\n"
        "asyncio.run(bus.publish('t', {}))\n"
        "assert bus.stats()['violations'] == 1\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "" and out.stdout == ""


HUGE = [10**400, 10**5000]


@pytest.mark.parametrize("huge", HUGE, ids=["1e400", "1e5000"])
@pytest.mark.parametrize("make, name", [
    (lambda v: resil.TimeoutManager(operation_timeout=v), "operation_timeout"),
    (lambda v: resil.TimeoutManager(global_timeout=v), "global_timeout"),
    (lambda v: resil.TimeoutManager(grace_period=v), "grace_period"),
    (lambda v: resil.retry(deadline=v), "deadline"),
    (lambda v: resil.idempotent(key=str, ttl=v), "ttl"),
    (lambda v: resil.Monitor(retention=v), "retention"),
    (lambda v: resil.EventBus(storm_threshold=v), "storm_threshold"),
    (lambda v: resil.EventBus(storm_window=v), "storm_window"),
    (lambda v: resil.AdaptiveScheduler(novelty_threshold=v), "novelty_threshold"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_huge_int_names_its_parameter(make: Any, name: str, huge: int) -> None:
    # float() of the int raised a bare OverflowError, and an int past 4,300
    # digits could not even be shown in the message.
    with pytest.raises(ValueError, match=name) as info:
        make(huge)
    assert f"an int of {huge.bit_length()} bits" in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0, True, "1"])
def test_timeout_manager_and_retry_refuse_bad_durations(bad: Any) -> None:
    error = TypeError if isinstance(bad, (bool, str)) else ValueError
    with pytest.raises(error, match="operation_timeout"):
        resil.TimeoutManager(operation_timeout=bad)
    with pytest.raises(error, match="deadline"):
        resil.retry(deadline=bad)


@pytest.mark.timeout(30)
def test_dedup_of_sequential_int_keys_is_not_quadratic() -> None:
    # Python hashes an int to itself, and the table is indexed by the hash's
    # low bits with linear probing: ids 0, 1, 2, ... filled one contiguous
    # run, and every eviction, expiry or clear shifted the whole run back.
    # 200,000 evictions then took about 4 * 10**10 steps (two minutes and
    # more); now they take under a second. The timeout turns a regression
    # into a failure instead of a hung CI run.
    d = resil.Deduplicator(capacity=200_000)
    for i in range(400_000):
        assert d.seen(i) is False
    assert len(d) == 200_000 and d.stats()["evicted"] == 200_000
    assert 199_999 not in d and 200_000 in d and 399_999 in d
    assert d.seen(300_000) is True
    d.clear()
    assert len(d) == 0


def test_replay_of_an_event_whose_stored_text_is_damaged_raises_store_error(
        tmp_path: Any) -> None:
    # Damaged text in a page that reads back (quick_check passes) made
    # replay raise a bare JSONDecodeError from json.
    import sqlite3

    path = tmp_path / "bus.db"
    store = resil.SQLiteStore(path)
    bus = resil.EventBus(store=store)
    seen: list[int] = []
    bus.subscribe("t", lambda e: seen.append(e.seq))

    async def publish_two() -> None:
        await bus.publish("t", {"n": 1})
        await bus.publish("t", {"n": 2})

    asyncio.run(publish_two())
    raw = sqlite3.connect(path)
    raw.execute("UPDATE resil_events SET payload = ? WHERE seq = 2", ('{"n": \x00',))
    raw.commit()
    raw.close()
    seen.clear()
    with pytest.raises(resil.StoreError, match=r"event 2 is corrupt .* 1 events were replayed"):
        asyncio.run(bus.replay())
    assert seen == [1]
    store.close()


def test_submodules_are_attributes_without_an_import() -> None:
    # `import resil; resil.prometheus` raised AttributeError; it must work
    # without importing the module (or its optional dependency) up front.
    import subprocess
    import sys

    code = (
        "import sys, resil\n"
        "assert 'resil.prometheus' not in sys.modules\n"
        "assert 'prometheus' in dir(resil)\n"
        "text = resil.prometheus.exposition(resil.CircuitBreaker('x'))\n"
        "assert 'resil_circuit_breaker_state' in text\n"
        "import resil.prometheus as p\n"
        "assert p is resil.prometheus and resil.sinks.fanout\n"
        "try:\n"
        "    resil.no_such_thing\n"
        "except AttributeError as e:\n"
        "    assert 'no_such_thing' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_every_resil_exception_is_exported_and_a_resil_error() -> None:
    # EmitterClosed, FanoutError and DeliveryCancelled were raised or
    # recorded by resil but not reachable as resil.<Name>.
    import importlib
    import inspect
    import pkgutil

    found = {}
    for info in pkgutil.walk_packages(resil.__path__, "resil."):
        if info.name in ("resil.cli.demo", "resil.__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__.startswith("resil") and not name.startswith("_")):
                found[name] = obj
    assert {"EmitterClosed", "FanoutError", "DeliveryCancelled", "StoreError"} <= set(found)
    for name, cls in found.items():
        assert issubclass(cls, resil.ResilError), name
        assert getattr(resil, name) is cls, name
        assert name in resil.__all__, name


def test_cli_help_names_its_commands() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "resil", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "demo" in out.stdout and "--metrics-port" in out.stdout
    bare = subprocess.run([sys.executable, "-m", "resil"], capture_output=True, text=True,
                          timeout=60)
    assert bare.returncode == 2 and "usage:" in bare.stderr


def test_the_package_carries_its_licence() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    text = (root / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert 'license-files = ["LICENSE"]' in (root / "pyproject.toml").read_text()


def test_the_readme_service_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    # The first example a user meets: the block under "Use it in your
    # project", with its network call stood in for.
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Use it in your project", 1)[1]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    assert "...  " in code
    code = re.sub(r"\.\.\. +# the network call.*", "return 7", code)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out == "7\n"


def test_emitter_and_scheduler_have_stats_like_every_component() -> None:
    import json

    async def sink(event: Any) -> None:
        return None

    emitter = resil.EventEmitter(sink)
    scheduler = resil.AdaptiveScheduler()
    for component in (emitter, scheduler):
        json.dumps(component.stats())
        json.dumps(component.status())
