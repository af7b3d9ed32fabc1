"""RedisBackend against a real redis-server: scripts by SHA and reloaded after a
restart, one timeout per cooldown when Redis is dead or slow (SIGKILL, DEBUG
SLEEP, CLIENT PAUSE, a slow or dropping proxy), the fallback in stats, and
the background thread."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from redis_support import FaultProxy, RedisServer, redis_clean, redis_server  # noqa: F401
from resil.redis import RedisBackend, RedisUnavailable, Script

ECHO = Script("redis.call('INCR', KEYS[1]) return {ARGV[1], redis.call('GET', KEYS[1])}")


def timed(fn, *args):  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    try:
        return fn(*args), time.monotonic() - t0
    except RedisUnavailable as exc:
        return exc, time.monotonic() - t0


def test_a_script_runs_by_sha_and_again_after_the_script_cache_is_flushed(
        redis_clean: RedisServer) -> None:
    backend = RedisBackend(redis_clean.client(), prefix="t:")
    key = backend.key("echo", "a")
    assert key == "t:{echo:a}"
    assert backend.run(ECHO, [key], ["x"]) == [b"x", b"1"]
    assert backend.stats()["script_loads"] == 1  # first call: NOSCRIPT, then loaded
    assert backend.run(ECHO, [key], ["y"]) == [b"y", b"2"]
    assert backend.stats()["script_loads"] == 1
    c = redis_clean.client()
    assert c.script_exists(ECHO.sha) == [True]
    c.script_flush()
    assert backend.run(ECHO, [key], ["z"]) == [b"z", b"3"]
    assert backend.stats()["script_loads"] == 2
    assert backend.stats()["backend"] == "redis"
    backend.close()


def test_a_killed_redis_costs_one_timeout_per_cooldown_and_is_found_again_after_restart(
        redis_clean: RedisServer) -> None:
    backend = RedisBackend(redis_clean.client(), timeout=0.05, cooldown=0.3)
    restored = []
    backend.on_restore(lambda: restored.append(backend.mode))
    key = backend.key("echo", "k")
    backend.run(ECHO, [key], ["a"])
    redis_clean.kill()
    try:
        slow = 0
        t_end = time.monotonic() + 1.0
        calls = 0
        while time.monotonic() < t_end:
            result, took = timed(backend.run, ECHO, [key], ["b"])
            assert isinstance(result, RedisUnavailable)
            assert took < 0.05 + 0.1, took  # never more than the timeout (+ scheduling slack)
            slow += took > 0.002
            calls += 1
        # one attempt per cooldown: about 1.0 / 0.3 of them reached the network
        assert calls > 100
        assert backend.stats()["backend"] == "local-fallback"
        assert backend.stats()["outages"] == 1
        assert backend.stats()["unavailable"] == calls
    finally:
        redis_clean.start()
    time.sleep(0.35)
    assert backend.run(ECHO, [key], ["c"]) == [b"c", b"1"]  # restarted empty
    assert backend.mode == "redis" and restored == ["redis"]
    assert backend.stats()["restorations"] == 1
    backend.close()


def test_only_one_attempt_per_cooldown_reaches_a_dead_server() -> None:
    server = RedisServer()
    backend = RedisBackend(server.client(), timeout=0.05, cooldown=0.25)
    server.stop()
    proxy_attempts = []
    real = backend._sync.execute_command

    def counted(*a, **k):  # type: ignore[no-untyped-def]
        proxy_attempts.append(time.monotonic())
        return real(*a, **k)
    backend._sync.execute_command = counted
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        with pytest.raises(RedisUnavailable):
            backend.run(ECHO, ["k"], ["x"])
    assert 3 <= len(proxy_attempts) <= 6, proxy_attempts  # ~1.0 / 0.25 + the first
    gaps = [b - a for a, b in zip(proxy_attempts, proxy_attempts[1:])]
    assert min(gaps) >= 0.24
    backend.close()


@pytest.mark.parametrize("fault", ["debug sleep", "client pause", "slow proxy", "dropped proxy"])
def test_a_slow_or_cut_redis_is_given_up_after_the_timeout(redis_clean: RedisServer,
                                                            fault: str) -> None:
    proxy = FaultProxy(redis_clean.port)
    backend = RedisBackend(proxy.client(), timeout=0.05, cooldown=0.2, on_unavailable="closed")
    key = backend.key("echo", "f")
    backend.run(ECHO, [key], ["a"])
    admin = redis_clean.client()
    blocker = None
    if fault == "debug sleep":
        blocker = threading.Thread(target=lambda: redis_clean.client().execute_command(
            "DEBUG", "SLEEP", "0.5"))
        blocker.start()
        time.sleep(0.05)
    elif fault == "client pause":
        admin.execute_command("CLIENT", "PAUSE", "500", "ALL")
    elif fault == "slow proxy":
        proxy.delay = 0.2
    else:
        proxy.drop()
    result, took = timed(backend.run, ECHO, [key], ["b"])
    assert isinstance(result, RedisUnavailable)
    assert took < 0.05 + 0.1
    assert backend.stats()["backend"] == "closed-fallback"
    result, took = timed(backend.run, ECHO, [key], ["c"])
    assert isinstance(result, RedisUnavailable) and took < 0.005  # cooling down: no attempt
    proxy.delay = 0.0
    proxy.heal()
    if blocker is not None:
        blocker.join()
    time.sleep(0.6)
    assert backend.run(ECHO, [key], ["d"])[0] == b"d"
    assert backend.stats()["backend"] == "redis"
    backend.close()
    proxy.close()


def test_an_asyncio_client_is_awaited_and_bounded_by_the_timeout(redis_clean: RedisServer) -> None:
    async def main() -> None:
        backend = RedisBackend(redis_clean.async_client(), timeout=0.05, cooldown=0.2)
        assert backend.is_async
        key = backend.key("echo", "async")
        assert await backend.run_async(ECHO, [key], ["a"]) == [b"a", b"1"]
        assert await backend.command_async("GET", key) == b"1"
        assert backend.run(ECHO, [key], ["b"]) == [b"b", b"2"]  # the blocking twin
        blocker = threading.Thread(target=lambda: redis_clean.client().execute_command(
            "DEBUG", "SLEEP", "0.4"))
        blocker.start()
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(RedisUnavailable):
            await backend.run_async(ECHO, [key], ["c"])
        assert time.monotonic() - t0 < 0.15
        blocker.join()
        await asyncio.sleep(0.25)
        assert (await backend.run_async(ECHO, [key], ["d"]))[0] == b"d"
        await backend.aclose()
        with pytest.raises(RedisUnavailable):
            await backend.run_async(ECHO, [key], ["e"])

    asyncio.run(main())


def test_background_tasks_run_every_interval_until_cancelled_or_closed(
        redis_clean: RedisServer) -> None:
    backend = RedisBackend(redis_clean.client())
    runs: list[float] = []
    fails: list[float] = []
    task = backend.every(0.05, lambda: runs.append(time.monotonic()))

    def bad() -> None:
        fails.append(1.0)
        raise RuntimeError("logged, not fatal")
    backend.every(0.05, bad)
    time.sleep(0.4)
    assert 4 <= len(runs) <= 9 and len(fails) >= 4
    task.cancel()
    n = len(runs)
    time.sleep(0.15)
    assert len(runs) <= n + 1
    backend.wake()
    backend.close()
    m = len(fails)
    time.sleep(0.15)
    assert len(fails) == m
    with pytest.raises(RuntimeError, match="closed"):
        backend.every(1.0, lambda: None)


def test_bad_arguments_are_refused_with_the_parameter_named(redis_server: RedisServer) -> None:
    c = redis_server.client()
    with pytest.raises(TypeError, match="redis-py client"):
        RedisBackend(object())
    with pytest.raises(ValueError, match="on_unavailable"):
        RedisBackend(c, on_unavailable="fail")
    with pytest.raises(TypeError, match="on_unavailable"):
        RedisBackend(c, on_unavailable=None)  # type: ignore[arg-type]
    for bad in (0, -1, math.nan, math.inf, 61):
        with pytest.raises((ValueError, TypeError), match="timeout"):
            RedisBackend(c, timeout=bad)
    with pytest.raises((ValueError, TypeError), match="cooldown"):
        RedisBackend(c, cooldown=math.nan)
    with pytest.raises(TypeError, match="prefix"):
        RedisBackend(c, prefix=b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="host"):
        RedisBackend(c, host="")
    with pytest.raises(TypeError, match="host"):
        RedisBackend(c, host=b"h")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source"):
        Script("")
    with pytest.raises(TypeError, match="source"):
        Script(b"return 1")  # type: ignore[arg-type]
    b = RedisBackend(c, host="h1")
    assert b.stats()["host"] == "h1" and b.instance.startswith("h1:")
    with pytest.raises(ValueError, match="interval"):
        b.every(0, lambda: None)
    b.close()


def test_counts_from_many_threads_add_up_exactly(redis_clean: RedisServer) -> None:
    import sys
    backend = RedisBackend(redis_clean.client(), cooldown=60)
    key = backend.key("echo", "threads")

    def hammer(n: int) -> None:
        for _ in range(n):
            try:
                backend.run(ECHO, [key], ["t"])
            except RedisUnavailable:
                pass
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for phase in ("up", "down"):
            n = 200 if phase == "up" else 5000
            threads = [threading.Thread(target=hammer, args=(n,)) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if phase == "up":
                assert backend.stats()["operations"] == 1200
                assert backend.command("GET", key) == b"1200"
                redis_clean.kill()
    finally:
        sys.setswitchinterval(old)
        redis_clean.start()
    stats = backend.stats()
    assert stats["operations"] == 1201 and stats["outages"] == 1
    assert stats["unavailable"] == 30000  # each refused call counted once
    backend.close()


def test_resil_redis_is_a_lazy_attribute_that_imports_redis_py_only_when_used() -> None:
    import subprocess
    import sys
    code = ("import sys, resil\n"
            "assert 'resil.redis' not in sys.modules and 'redis' not in sys.modules\n"
            "backend_type = resil.redis.RedisBackend\n"
            "from resil.redis import RedisBackend, StreamStore\n"
            "assert backend_type is RedisBackend and 'redis' in dir(resil)\n"
            "assert resil.redis.RedisUnavailable is resil.RedisUnavailable\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
