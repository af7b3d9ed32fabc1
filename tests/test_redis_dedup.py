"""Deduplicator(cluster=...) and idempotent(..., cluster=...) against a real
redis-server: one run per key across processes ("hosts"), waiters get the
first result, a failure lets one waiter run again, a SIGKILLed runner's
lease lapses, Redis killed mid-calls (bounded waits, the fallbacks), bad
arguments and hostile keys, and a lockstep test of the cluster set's
decisions against a local Deduplicator."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

import resil
from redis_support import RedisServer, redis_clean, redis_server  # noqa: F401
from tests_support import run_threads
from resil.redis import RedisBackend, RedisUnavailable

WORKERS = os.path.join(os.path.dirname(__file__), "redis_dedup_workers.py")


def spawn(mode: str, server: RedisServer, host: str, *args: Any) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
         os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, WORKERS, mode, str(server.port), host,
                             *map(str, args)], stdout=subprocess.PIPE, text=True, env=env)


def collect(procs: list[subprocess.Popen[str]]) -> list[Any]:
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=60)
        assert p.returncode == 0, stdout
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def backend(server: RedisServer, **kwargs: Any) -> RedisBackend:
    kwargs.setdefault("timeout", 0.5)
    return RedisBackend(server.client(), **kwargs)


# ------------------------------------------------------------ across hosts
def test_idempotent_runs_each_of_50_keys_once_for_1000_calls_from_4_hosts(
        redis_clean: RedisServer) -> None:
    start = time.time() + 0.5
    procs = [spawn("calls", redis_clean, f"host{i}", start, 250, 50, i) for i in range(4)]
    outs = collect(procs)
    counter = redis_clean.client()
    runs = {f"key-{i}": int(counter.get(f"test:runs:key-{i}") or 0) for i in range(50)}
    assert runs == {k: 1 for k in runs}  # each key ran once in the cluster
    firsts: dict[str, Any] = {}
    for out in outs:
        assert len(out["results"]) == 250
        for r in out["results"]:
            assert r["run"] == 1
            assert firsts.setdefault(r["key"], r) == r  # every caller got the first result
        assert out["stats"]["backend"] == "redis"
    assert len(firsts) == 50
    assert sum(out["stats"]["runs"] for out in outs) == 50
    assert sum(out["stats"]["waits"] for out in outs) > 0  # hosts waited for others' runs


def test_a_failure_is_not_cached_and_exactly_one_waiter_runs_it_again(
        redis_clean: RedisServer) -> None:
    start = time.time() + 0.5
    outs = collect([spawn("flaky", redis_clean, f"host{i}", start, 5) for i in range(4)])
    assert int(redis_clean.client().get("test:runs")) == 2
    failed = [o for o in outs if all(isinstance(x, str) for x in o)]
    served = [o for o in outs if all(isinstance(x, dict) for x in o)]
    assert len(failed) == 1 and len(served) == 3  # one host's callers share its failed run
    assert all(x.startswith("RuntimeError: run 1 failed") for x in failed[0])
    second = {json.dumps(x, sort_keys=True) for o in served for x in o}
    assert len(second) == 1 and json.loads(second.pop())["run"] == 2


def test_a_sigkilled_runner_holds_its_key_while_alive_and_another_host_runs_it_after_the_lease(
        redis_clean: RedisServer) -> None:
    lease = 1.0
    runner = spawn("hang", redis_clean, "doomed", lease)
    assert runner.stdout is not None
    assert json.loads(runner.stdout.readline()) == "running"
    b = backend(redis_clean, host="survivor", timeout=0.25)
    runs: list[float] = []

    @resil.idempotent(lambda: "stuck", ttl=60.0, cluster=b, name="hang", lease=lease)
    async def job() -> str:
        runs.append(time.monotonic())
        return "rerun"

    killed: list[float] = []

    async def kill_later() -> None:
        await asyncio.sleep(1.5 * lease)  # renewed all along: the waiter must not run it
        assert not runs
        runner.send_signal(signal.SIGKILL)
        killed.append(time.monotonic())

    async def main() -> str:
        killer = asyncio.ensure_future(kill_later())
        result = await job()
        await killer
        return result

    try:
        assert asyncio.run(main()) == "rerun"
    finally:
        runner.kill()
        runner.wait(10)
        runner.stdout.close()
    assert len(runs) == 1
    took = runs[0] - killed[0]
    assert 0 < took < 3 * (lease + 0.1)  # the lease lapsed; a poll found it free
    assert job.stats()["waits"] == 1  # type: ignore[attr-defined]
    b.close()


def test_a_cluster_deduplicator_tells_each_key_new_to_exactly_one_of_4_hosts(
        redis_clean: RedisServer) -> None:
    start = time.time() + 0.5
    outs = collect([spawn("seen", redis_clean, f"host{i}", start, 600, i) for i in range(4)])
    told = Counter((kind, key) for out in outs for key, kind in zip(out["new"], out["kinds"]))
    expected = {("str", f"e{i}") if i % 3 == 0 else (("bytes", f"e{i}") if i % 3 == 1
                                                     else ("int", i)) for i in range(600)}
    assert set(told) == expected and set(told.values()) == {1}
    assert sum(out["stats"]["duplicates"] for out in outs) == 3 * 600
    assert all(out["stats"]["backend"] == "redis" for out in outs)


# --------------------------------------------------------------- in-process
def test_two_hosts_in_one_process_share_one_run_and_its_result(redis_clean: RedisServer) -> None:
    hosts = [backend(redis_clean, host=h) for h in ("a", "b")]
    runs: list[str] = []

    def make(b: RedisBackend) -> Any:
        @resil.idempotent(lambda k: k, ttl=60.0, cluster=b, name="two")
        async def job(k: int) -> list[Any]:
            runs.append(b.host)
            await asyncio.sleep(0.05)
            return [k, b.host]
        return job

    ja, jb = make(hosts[0]), make(hosts[1])

    async def main() -> list[Any]:
        return await asyncio.gather(*(j(k) for k in (1, 2) for j in (ja, jb, ja, jb)))

    results = asyncio.run(main())
    assert sorted(runs) in (["a", "a"], ["a", "b"], ["b", "b"]) and len(runs) == 2
    assert results[:4] == [results[0]] * 4 and results[4:] == [results[4]] * 4
    # a later call gets the stored result without running
    assert asyncio.run(jb(1)) == results[0] and len(runs) == 2
    s = jb.stats()  # type: ignore[attr-defined]
    assert s["backend"] == hosts[1].mode == "redis" and s["hits"] >= 1
    for b in hosts:
        b.close()


def test_results_are_json_by_default_and_encode_decode_can_be_given(
        redis_clean: RedisServer) -> None:
    b = backend(redis_clean, host="h")
    c = backend(redis_clean, host="other")

    @resil.idempotent(lambda: "t", cluster=b, name="json")
    async def tup() -> Any:
        return (1, "x", {"k": None})

    @resil.idempotent(lambda: "t", cluster=c, name="json")
    async def tup_elsewhere() -> Any:
        raise AssertionError("ran twice")

    assert asyncio.run(tup()) == (1, "x", {"k": None})  # the runner gets its own object
    assert asyncio.run(tup_elsewhere()) == [1, "x", {"k": None}]  # JSON: a list elsewhere
    stored = redis_clean.client().get(b.key("idem", "json").encode() + b":r:st")
    assert stored == b'[1,"x",{"k":null}]'

    @resil.idempotent(lambda: "s", cluster=b, name="custom", encode=lambda v: v.hex(),
                      decode=lambda data: bytes.fromhex(data.decode()))
    async def raw() -> bytes:
        return b"\x00\xff"

    @resil.idempotent(lambda: "s", cluster=c, name="custom", encode=lambda v: v.hex(),
                      decode=lambda data: bytes.fromhex(data.decode()))
    async def raw_elsewhere() -> bytes:
        raise AssertionError("ran twice")

    assert asyncio.run(raw()) == b"\x00\xff" and asyncio.run(raw_elsewhere()) == b"\x00\xff"

    @resil.idempotent(lambda: "s", cluster=c, name="custom")  # decode does not fit encode
    async def mismatched() -> Any:
        raise AssertionError("ran twice")

    with pytest.raises(ValueError, match="could not decode the result stored in Redis"):
        asyncio.run(mismatched())
    b.close()
    c.close()


def test_an_unserialisable_result_raises_a_clear_error_and_leaves_the_key_free(
        redis_clean: RedisServer) -> None:
    b = backend(redis_clean, host="h")
    runs: list[int] = []

    @resil.idempotent(lambda: "k", cluster=b, name="bad", lease=30.0)
    async def job() -> Any:
        runs.append(1)
        return object() if len(runs) == 1 else {"ok": len(runs)}

    t0 = time.monotonic()
    with pytest.raises(TypeError, match="cannot be encoded for other hosts.*not cached"):
        asyncio.run(job())
    # not stuck: the lease (30 s) was given back, the next call runs at once
    assert asyncio.run(job()) == {"ok": 2} and time.monotonic() - t0 < 5

    @resil.idempotent(lambda: "k2", cluster=b, name="bad2", encode=lambda v: 12)
    async def wrong_encoder() -> int:
        return 1

    with pytest.raises(TypeError, match="encode returned int"):
        asyncio.run(wrong_encoder())
    assert redis_clean.client().keys(b.key("idem", "bad2") + "*") == []
    assert job.stats()["failures"] == 1  # type: ignore[attr-defined]
    b.close()


def test_cluster_deduplicator_operations_and_stats(redis_clean: RedisServer) -> None:
    b = backend(redis_clean, host="h")
    other = backend(redis_clean, host="h2")
    d = resil.Deduplicator(60.0, cluster=b, name="ev")
    e = resil.Deduplicator(60.0, cluster=other, name="ev")  # the same set from another host
    assert d.cluster is b and d.shared is None and d.name == "ev" and d.ttl == 60.0
    assert [d.seen("a"), e.seen("a"), e.seen(b"a"), d.seen(1), d.seen("1")] == [
        False, True, False, False, False]
    assert "a" in e and b"a" in d and 2 not in d and len(d) == 4
    assert e.discard("a") and "a" not in d and not d.discard("a")
    assert d.seen("a") is False
    assert d.duplicate_count == 0 and e.duplicate_count == 1
    s = e.stats()
    assert s["backend"] == other.mode == "redis"
    assert (s["duplicates"], s["recorded"], s["unavailable"]) == (1, 1, 0)
    json.dumps(s)
    d.clear()
    assert len(e) == 0 and not e.seen("a")
    for method, args in (("put", ("k", 1)), ("get", ("k",))):
        with pytest.raises(TypeError, match="needs a local Deduplicator"):
            getattr(d, method)(*args)
    with pytest.raises(TypeError, match="needs a local Deduplicator"):
        d.configure(ttl=1.0)
    assert "cluster=" in repr(d)
    b.close()
    other.close()


def test_keys_expire_after_ttl_as_redis_times_them(redis_clean: RedisServer) -> None:
    b = backend(redis_clean)
    d = resil.Deduplicator(0.2, cluster=b, name="short")
    assert not d.seen("k") and d.seen("k")
    time.sleep(0.3)
    assert "k" not in d and not d.seen("k")
    b.close()


def test_hostile_keys_stay_inside_their_set_and_distinct(redis_clean: RedisServer) -> None:
    b = backend(redis_clean)
    d = resil.Deduplicator(60.0, cluster=b, name="ev")
    star = resil.Deduplicator(60.0, cluster=b, name="e*")  # a glob in the name
    hostile: list[Any] = ["", b"", "}", "{", "}{dedup:other}:", "*", "?", "[a]", "\\",
                          "a\r\nSET x 1\r\n", b"\x00\xff", "x" * 1_000_000, b"y" * 300,
                          10**400, -(10**400), 2**64, 0, -1, "s", "b", "i0", b"i0", "h" + "0" * 64,
                          "\U0001f600", "é", "e\u0301"]
    assert not any(d.seen(k) for k in hostile)  # all distinct
    assert all(d.seen(k) for k in hostile)
    assert not star.seen("x") and len(star) == 1
    assert len(d) == len(hostile)
    keys = redis_clean.client().keys("*")
    assert all(k.startswith(b"resil:{dedup:ev}:") or k.startswith(b"resil:{dedup:e*}:")
               for k in keys)
    assert max(len(k) for k in keys) < 300  # a long key is kept as a digest
    star.clear()  # the escaped pattern matches only its own keys
    assert len(d) == len(hostile) and len(star) == 0
    for bad in (True, 1.5, None, (1,), object()):
        with pytest.raises(TypeError, match="key must be a str, bytes or int"):
            d.seen(bad)
    with pytest.raises(ValueError, match="key must be a str encodable as UTF-8"):
        d.seen("\ud800")

    @resil.idempotent(lambda k: k, cluster=b, name="h")
    async def job(k: Any) -> str:
        return "ran"

    with pytest.raises(TypeError, match="the key function's result must be a str, bytes or int"):
        asyncio.run(job(1.5))
    assert asyncio.run(job("}{*\x00")) == "ran"
    b.close()


def test_bad_arguments_are_refused_naming_the_parameter(redis_clean: RedisServer) -> None:
    b = backend(redis_clean, timeout=0.05)
    with pytest.raises(TypeError, match="cluster must be None or a resil.redis.RedisBackend"):
        resil.Deduplicator(cluster="redis://x", name="n")
    with pytest.raises(TypeError, match="with cluster= needs name="):
        resil.Deduplicator(cluster=b)
    with pytest.raises(ValueError, match="name must not contain"):
        resil.Deduplicator(cluster=b, name="a}b")
    with pytest.raises(ValueError, match="ttl must be at least 0.001"):
        resil.Deduplicator(0.0005, cluster=b, name="n")
    with pytest.raises(TypeError, match="name must be"):
        resil.Deduplicator(cluster=b, name=1)
    for ttl in (math_nan(), -1.0, float("inf"), 10**400):
        with pytest.raises(ValueError, match="ttl"):
            resil.Deduplicator(ttl, cluster=b, name="n")
    with pytest.raises(TypeError, match="ttl"):
        resil.Deduplicator(True, cluster=b, name="n")
    with pytest.raises(TypeError, match="cluster must be None or a resil.redis.RedisBackend"):
        resil.idempotent(lambda: 1, cluster=object())
    for kwargs, exc, match in (
            ({"lease": 0.1}, ValueError, "lease must be at least"),
            ({"lease": math_nan()}, ValueError, "lease"),
            ({"lease": "1"}, TypeError, "lease"),
            ({"lease": True}, TypeError, "lease"),
            ({"encode": 1}, TypeError, "encode must be None or callable"),
            ({"decode": "json"}, TypeError, "decode must be None or callable"),
            ({"name": 1}, TypeError, "name must be"),
            ({"name": ""}, ValueError, "name must be"),
            ({"name": "{x}"}, ValueError, "name must not contain"),
            ({"ttl": 0.0001}, ValueError, "ttl must be at least 0.001")):
        with pytest.raises(exc, match=match):
            resil.idempotent(lambda: 1, cluster=b, **kwargs)(_noop)
    for kwargs in ({"name": "n"}, {"encode": str}, {"decode": str}, {"lease": 5.0}):
        with pytest.raises(TypeError, match="needs cluster="):
            resil.idempotent(lambda: 1, **kwargs)
    with pytest.raises(TypeError, match="coroutine function"):
        resil.idempotent(lambda: 1, cluster=b)(lambda: 1)
    b.close()


async def _noop() -> None:
    return None


def math_nan() -> float:
    return float("nan")


# ---------------------------------------------------------- Redis goes away
def test_redis_killed_the_deduplicator_follows_on_unavailable_within_the_timeout(
        redis_clean: RedisServer) -> None:
    sets = {mode: resil.Deduplicator(
        60.0, cluster=RedisBackend(redis_clean.client(), timeout=0.05, cooldown=0.3,
                                   on_unavailable=mode), name=f"down-{mode}")
        for mode in ("local", "open", "closed")}
    for d in sets.values():
        assert not d.seen("before")
    gc.collect()  # earlier tests' garbage collected now, not inside a timed call
    redis_clean.kill()
    worst = 0.0
    try:
        answers: dict[str, list[Any]] = {}
        for mode, d in sets.items():
            got: list[Any] = []
            for key in ("x", "x", "before"):
                t0 = time.monotonic()
                try:
                    got.append(d.seen(key))
                except RedisUnavailable:
                    got.append("unavailable")
                worst = max(worst, time.monotonic() - t0)
            answers[mode] = got
            assert d.stats()["backend"] == d.cluster.mode == f"{mode}-fallback"
        # local: a local set (a key recorded in Redis only is new to it)
        assert answers["local"] == [False, True, False]
        assert answers["open"] == [False, False, False]
        assert answers["closed"] == ["unavailable"] * 3
        assert worst < 0.05 + 0.1
        assert sets["local"].stats()["unavailable"] == 3
        assert "x" in sets["local"] and len(sets["local"]) == 2
        assert "x" not in sets["open"] and len(sets["open"]) == 0
        with pytest.raises(RedisUnavailable):
            len(sets["closed"])
        with pytest.raises(RedisUnavailable):
            "x" in sets["closed"]  # noqa: B015
        assert sets["local"].discard("x") and "x" not in sets["local"]
        with pytest.raises(RedisUnavailable):
            sets["local"].clear()  # the keys in Redis stay: it says so
        assert len(sets["local"]) == 0  # the local set was cleared
    finally:
        redis_clean.start()
    time.sleep(0.35)  # the backend's cooldown: then Redis is tried again
    for mode, d in sets.items():
        # back on Redis (restarted empty: no persistence in the tests)
        assert [d.seen("before"), d.seen("before")] == [False, True]
        assert d.stats()["backend"] == "redis" == d.cluster.mode
        d.cluster.close()


def test_keys_recorded_locally_during_an_outage_reach_redis_when_it_returns(
        redis_clean: RedisServer) -> None:
    b = RedisBackend(redis_clean.client(), timeout=0.05, cooldown=0.2, host="a")
    d = resil.Deduplicator(60.0, 2, cluster=b, name="resync")
    redis_clean.kill()
    try:
        assert not d.seen("x") and not d.seen("y") and not d.seen("z")  # "x" evicted locally
        assert d.seen("z") and d.discard("y")
    finally:
        redis_clean.start()
    time.sleep(0.25)
    assert not d.seen("w")  # Redis answers: the keys new during the outage follow
    other = resil.Deduplicator(60.0, cluster=backend(redis_clean, host="b"), name="resync")
    deadline = time.monotonic() + 5
    while "z" not in other:
        assert time.monotonic() < deadline, "the outage's key never reached Redis"
        time.sleep(0.01)
    assert other.seen("z") and not other.seen("y") and not other.seen("x")
    ttl = redis_clean.client().pttl(b.key("dedup", "resync").encode() + b":sz")
    assert 55_000 < ttl <= 60_000  # the rest of its ttl
    s = d.stats()
    assert (s["resynced"], s["unsynced"], s["backend"]) == (1, 1, "redis")
    b.close()
    other.cluster.close()


def test_redis_killed_idempotent_follows_on_unavailable_within_the_timeout(
        redis_clean: RedisServer) -> None:
    runs: Counter[str] = Counter()
    jobs = {}
    backends = {}
    for mode in ("local", "open", "closed"):
        b = RedisBackend(redis_clean.client(), timeout=0.05, cooldown=0.3, on_unavailable=mode)

        def make(mode: str, b: RedisBackend) -> Any:
            @resil.idempotent(lambda k: k, ttl=60.0, cluster=b, name=f"down-{mode}", lease=1.0)
            async def job(k: str) -> str:
                runs[mode] += 1
                await asyncio.sleep(0.01)
                return f"{mode}:{k}"
            return job
        jobs[mode] = make(mode, b)
        backends[mode] = b

    async def calls(job: Any, n: int) -> tuple[list[Any], float]:
        async def one(k: str) -> tuple[Any, float]:
            t0 = time.monotonic()
            try:
                return await job(k), time.monotonic() - t0
            except RedisUnavailable:
                return "unavailable", time.monotonic() - t0
        out = await asyncio.gather(*(one(f"k{i % 2}") for i in range(n)))
        return [r for r, _ in out], max(t for _, t in out)

    for job in jobs.values():
        asyncio.run(calls(job, 2))
    assert runs == {"local": 2, "open": 2, "closed": 2}
    runs.clear()
    redis_clean.kill()
    try:
        for mode, job in jobs.items():
            first, took = asyncio.run(calls(job, 6))
            second, took2 = asyncio.run(calls(job, 6))
            assert max(took, took2) < 0.05 + 0.1 + 0.01 * (6 if mode == "open" else 1)
            if mode == "closed":
                assert first == second == ["unavailable"] * 6
            else:
                assert first == second == [f"{mode}:k{i % 2}" for i in range(6)]
            assert job.stats()["backend"] == f"{mode}-fallback"
        # local: once per key in this process (results kept); open: every call
        assert runs == {"local": 2, "open": 12}
    finally:
        redis_clean.start()
    time.sleep(0.35)
    runs.clear()
    local = backends["local"]
    local.command("PING")  # Redis answers again: the results run locally are stored
    deadline = time.monotonic() + 5
    while jobs["local"].stats()["resynced"] < 2:
        assert time.monotonic() < deadline, "the outage's results never reached Redis"
        time.sleep(0.01)
    for mode, job in jobs.items():
        results, _ = asyncio.run(calls(job, 4))
        assert results == [f"{mode}:k{i % 2}" for i in range(4)]
        assert job.stats()["backend"] == "redis"
    # back on Redis (restarted empty): the results run here while it was
    # away were stored in it; the other keys run once more
    assert runs == {"open": 2, "closed": 2}
    assert redis_clean.client().pttl(local.key("idem", "down-local") + ":r:sk0") > 50_000


def test_a_waiter_whose_redis_dies_runs_the_key_locally_within_the_timeout(
        redis_clean: RedisServer) -> None:
    runner = RedisBackend(redis_clean.client(), timeout=0.05, cooldown=5.0, host="runner")
    waiter = RedisBackend(redis_clean.client(), timeout=0.05, cooldown=5.0, host="waiter")
    release = asyncio.Event()
    ran: list[str] = []

    def make(b: RedisBackend) -> Any:
        @resil.idempotent(lambda: "k", cluster=b, name="mid", lease=1.0)
        async def job() -> str:
            ran.append(b.host)
            if b is runner:
                await release.wait()
            return b.host
        return job

    run_job, wait_job = make(runner), make(waiter)

    async def main() -> tuple[Any, float]:
        first = asyncio.ensure_future(run_job())
        await asyncio.sleep(0.05)
        assert ran == ["runner"]
        t0 = time.monotonic()
        second = asyncio.ensure_future(wait_job())
        await asyncio.sleep(0.1)
        assert not second.done()  # waiting for the runner's result
        redis_clean.kill()
        got = await second  # its next poll finds Redis gone: runs it here
        took = time.monotonic() - t0
        release.set()
        assert await first == "runner"  # storing fails: the runner still gets its result
        return got, took

    try:
        got, took = asyncio.run(main())
    finally:
        redis_clean.start()
    assert got == "waiter" and ran == ["runner", "waiter"]
    assert took < 0.1 + 0.1 + 0.05 + 0.1  # waited 0.1, one poll (<= 0.1), one timeout
    assert wait_job.stats()["unavailable"] == 1
    runner.close()
    waiter.close()


# ------------------------------------------------ lockstep with a local set
TTL = 0.3
KEYS = st.sampled_from(["a", b"a", 1, "1", "", b"", 0, -1, 2**70, "}{*", "x" * 400])


class ClusterAgainstLocal(RuleBasedStateMachine):
    """The cluster set's seen/in/discard/len decisions equal those of a local
    Deduplicator with the same ttl. Time: the local set's VirtualClock moves
    only in wait(), by twice the ttl, while Redis really sleeps past the
    ttl; between two waits every operation happens within ttl / 2 of real
    time (else a wait comes first), so both sides agree on what expired."""

    server: RedisServer

    def __init__(self) -> None:
        super().__init__()
        self.backend = RedisBackend(self.server.client(), timeout=1.0)
        self.clock = resil.VirtualClock()
        self.local = resil.Deduplicator(TTL, clock=self.clock)
        self.cluster = resil.Deduplicator(TTL, cluster=self.backend,
                                          name=f"lockstep-{uuid.uuid4().hex}")
        self.since = time.monotonic()
        self.waits = 0

    def _wait(self) -> None:
        time.sleep(TTL + 0.05)
        self.clock.advance(2 * TTL)
        self.since = time.monotonic()
        self.waits += 1

    def _fresh(self) -> None:
        if time.monotonic() - self.since > TTL / 2:
            self._wait()

    @initialize()
    def start(self) -> None:
        self.since = time.monotonic()

    @rule(key=KEYS)
    def seen(self, key: Any) -> None:
        self._fresh()
        assert self.cluster.seen(key) == self.local.seen(key)

    @rule(key=KEYS)
    def contains(self, key: Any) -> None:
        self._fresh()
        assert (key in self.cluster) == (key in self.local)

    @rule(key=KEYS)
    def discard(self, key: Any) -> None:
        self._fresh()
        assert self.cluster.discard(key) == self.local.discard(key)

    @rule()
    def length(self) -> None:
        self._fresh()
        assert len(self.cluster) == len(self.local)

    @precondition(lambda self: self.waits == 0)
    @rule()
    def wait(self) -> None:
        self._wait()

    def teardown(self) -> None:
        assert self.cluster.duplicate_count == self.local.duplicate_count
        self.backend.close()


ClusterAgainstLocal.TestCase.settings = settings(
    max_examples=15, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def test_cluster_decisions_match_a_local_deduplicator_in_lockstep(
        redis_clean: RedisServer) -> None:
    ClusterAgainstLocal.server = redis_clean
    ClusterAgainstLocal.TestCase().runTest()


def test_with_shared_too_the_fallback_set_is_the_hosts_region(redis_clean: RedisServer,
                                                              tmp_path: Any) -> None:
    path = str(tmp_path / "region")
    made = []
    for _ in range(2):  # two "processes" of one host: two objects on one region file
        b = RedisBackend(redis_clean.client(), timeout=0.05, cooldown=5.0)
        made.append(resil.Deduplicator(60.0, 64, cluster=b, shared=resil.SharedRegion(path),
                                       name="hostwide"))
    one, two = made
    assert one.shared is not None and one.cluster is not None
    assert not one.seen("up") and two.seen("up")  # Redis decides while it answers
    redis_clean.kill()
    try:
        assert not one.seen(7)
        assert two.seen(7)  # recorded in the region by the other one
        assert 7 in two and len(one) == 1 and two.stats()["backend"] == "local-fallback"
    finally:
        redis_clean.start()
    for d in made:
        d.cluster.close()


def test_threads_racing_on_keys_get_exactly_one_new_each(redis_clean: RedisServer) -> None:
    b = backend(redis_clean)
    d = resil.Deduplicator(60.0, cluster=b, name="race")
    new: list[Any] = []
    run_threads(lambda i: new.extend(k for k in range(300) if not d.seen(k)), 6)
    assert sorted(new) == list(range(300))
    assert d.duplicate_count == 5 * 300
    b.close()


def test_a_run_cancelled_at_shutdown_gives_its_lease_back(redis_clean: RedisServer) -> None:
    b = backend(redis_clean, host="a", timeout=0.1)
    c = backend(redis_clean, host="b", timeout=0.1)

    @resil.idempotent(lambda: "k", cluster=b, name="cancel", lease=30.0)
    async def slow() -> str:
        await asyncio.sleep(3600)
        return "never"

    @resil.idempotent(lambda: "k", cluster=c, name="cancel", lease=30.0)
    async def quick() -> str:
        return "b"

    async def abandon() -> None:
        asyncio.ensure_future(slow())
        await asyncio.sleep(0.05)  # slow() holds the lease; asyncio.run cancels it

    asyncio.run(abandon())
    t0 = time.monotonic()
    assert asyncio.run(quick()) == "b" and time.monotonic() - t0 < 2  # not the 30 s lease
    assert slow.stats()["failures"] == 0  # type: ignore[attr-defined]
    b.close()
    c.close()


def test_an_asyncio_client_is_awaited(redis_clean: RedisServer) -> None:
    async def main() -> list[Any]:
        b = RedisBackend(redis_clean.async_client(), timeout=0.5)
        runs = []

        @resil.idempotent(lambda k: k, cluster=b, name="aio")
        async def job(k: int) -> int:
            runs.append(k)
            await asyncio.sleep(0.02)
            return k * 2

        out = await asyncio.gather(*(job(i % 3) for i in range(12)))
        assert sorted(runs) == [0, 1, 2]
        await b.aclose()
        return out

    assert asyncio.run(main()) == [(i % 3) * 2 for i in range(12)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.text(), st.binary(), st.integers(),
                          st.integers(min_value=2**60, max_value=2**300)),
                unique_by=lambda k: (type(k), k), max_size=20))
def test_the_key_encoding_is_one_to_one_and_bounded(keys: list[Any]) -> None:
    from resil.redis.dedup import encode_key
    keys = [k for k in keys if not (isinstance(k, str) and any(0xD800 <= ord(c) < 0xE000
                                                                for c in k))]
    encoded = [encode_key(k) for k in keys]
    assert len(set(encoded)) == len(keys) and all(len(e) <= 257 for e in encoded)


def test_cluster_idempotent_stats_count_the_callers_that_joined_a_run_as_waits(
        redis_clean: RedisServer) -> None:
    b = backend(redis_clean)
    runs = []

    @resil.idempotent(key=lambda x: x, cluster=b, name="stats-waits")
    async def f(x: int) -> int:
        runs.append(x)
        await asyncio.sleep(0.05)
        return x

    async def main() -> dict[str, Any]:
        assert await asyncio.gather(*(f(1) for _ in range(5))) == [1] * 5
        assert await f(1) == 1                            # stored in Redis: a hit
        return f.stats()  # type: ignore[attr-defined,no-any-return]

    try:
        stats = asyncio.run(main())
    finally:
        b.close()
    assert runs == [1]
    assert {k: stats[k] for k in ("runs", "hits", "waits", "failures", "running")} == \
        {"runs": 1, "hits": 1, "waits": 4, "failures": 0, "running": 0}
