"""Configuration: from_env on TimeoutManager, Monitor, RetryPolicy and
EventEmitter, and run-time configure() on Deduplicator and BoundedQueue."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import resil

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
