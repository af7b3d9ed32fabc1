"""The cluster-wide circuit breaker on a real redis-server: hosts are
processes (tests/redis_breaker_workers.py) with their own ``host=``; one sick
host does not open the cluster, two do and every host rejects within
``sync_interval``; probes are capped across hosts; a process joining resets
nothing; a SIGKILLed Redis leaves the local breakers deciding; and the Lua
judging in lockstep with a pure-Python model of the cluster rule."""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resil
from redis_support import RedisServer, free_port, redis_clean, redis_server  # noqa: F401
from tests_support import run_threads
from resil.redis import RedisBackend
from resil.redis.breaker import SYNC

WORKER = Path(__file__).with_name("redis_breaker_workers.py")

#: Rate rule only (the local consecutive-failure and health rules off), so
#: what opens is the failure rate.
RATE = dict(failure_rate_threshold=0.5, minimum_calls=10, window_size=20, failure_threshold=0,
            adaptive=False, min_health_score=0.0)


def keys(name: str = "dep", prefix: str = "resil:") -> list[str]:
    return [f"{prefix}{{breaker:{name}}}:{part}" for part in ("hosts", "state", "lease")]


class Hosts:
    """Worker processes, one per host name, on one control directory."""

    def __init__(self, server: RedisServer, control: Path, seconds: float,
                 config: dict[str, Any]) -> None:
        self.server = server
        self.control = control
        self.seconds = seconds
        self.config = config
        self.procs: list[subprocess.Popen[str]] = []

    def fail(self, *hosts: str) -> None:
        for h in hosts:
            (self.control / f"fail-{h}").touch()

    def heal(self, *hosts: str) -> None:
        for h in hosts:
            (self.control / f"fail-{h}").unlink(missing_ok=True)

    def start(self, *hosts: str) -> None:
        procs = [subprocess.Popen(
            [sys.executable, str(WORKER), str(self.server.port), h, str(self.control),
             str(self.seconds), json.dumps(self.config)], stdout=subprocess.PIPE, text=True)
            for h in hosts]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        self.procs += procs

    def finish(self) -> list[dict[str, Any]]:
        (self.control / "stop").touch()
        out = []
        for p in self.procs:
            text, _ = p.communicate(timeout=60)
            assert p.returncode == 0
            out.append(json.loads(text.splitlines()[-1]))
        return out


def state(server: RedisServer, name: str = "dep") -> dict[str, int]:
    c = server.client()
    raw = c.hgetall(keys(name)[1])
    c.close()
    return {k.decode(): int(v) for k, v in raw.items()}


def wait_for(cond: Any, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def whats(result: dict[str, Any], since: float = 0.0) -> Counter[str]:
    return Counter(w for t, w in result["events"] if t >= since)


# ---------------------------------------------------------------- hosts
def test_one_sick_host_of_three_does_not_open_the_cluster(redis_clean: RedisServer,
                                                          tmp_path: Path) -> None:
    hosts = Hosts(redis_clean, tmp_path, 20, dict(RATE, cooldown=30.0, sync_interval=0.1,
                                                    min_hosts=2))
    hosts.fail("A")
    hosts.start("A", "B", "C")
    time.sleep(1.5)
    a, b, c = hosts.finish()
    assert whats(a)["fail"] >= 10 and whats(a)["rejected"] > 0  # A's own breaker tripped
    for healthy in (b, c):
        assert whats(healthy)["rejected"] == 0 and whats(healthy)["ok"] > 50
        assert healthy["stats"]["cluster"]["state"] == "CLOSED"
    view = b["stats"]["cluster"]
    assert view["hosts"] == 3 and view["failing_hosts"] == 1 and view["failures"] > 0
    assert state(redis_clean).get("opens", 0) == 0


def test_two_sick_hosts_open_it_and_every_host_rejects_within_sync_interval(
        redis_clean: RedisServer, tmp_path: Path) -> None:
    sync = 0.2
    hosts = Hosts(redis_clean, tmp_path, 20, dict(RATE, cooldown=30.0, sync_interval=sync,
                                                    min_hosts=2))
    hosts.start("A", "B", "C")
    time.sleep(0.3)
    hosts.fail("A", "B")
    wait_for(lambda: state(redis_clean).get("st") == 2)
    time.sleep(4 * sync)
    results = hosts.finish()
    st_ = state(redis_clean)
    opened = (st_["until"] - st_["cd"]) / 1000  # Redis TIME, the hosts' wall clock
    for r in results:
        after = [(t, w) for t, w in r["events"] if t >= opened]
        first = next(t for t, w in after if w == "rejected")
        assert first - opened < 3 * sync, (r["host"], first - opened)
        # from then on nothing runs
        assert all(w == "rejected" for t, w in after if t >= first), r["host"]
        assert r["stats"]["cluster"]["state"] == "OPEN"
        assert r["stats"]["state"] == int(resil.State.OPEN)
    assert whats(results[2])["ok"] > 0 and whats(results[2])["fail"] == 0
    assert results[2]["stats"]["cluster"]["failing_hosts"] == 2


def test_probes_across_hosts_stay_within_half_open_probes(redis_clean: RedisServer,
                                                          tmp_path: Path) -> None:
    probes = 2
    hosts = Hosts(redis_clean, tmp_path, 30, dict(
        RATE, cooldown=0.3, cooldown_multiplier=1.0, half_open_probes=probes,
        sync_interval=0.1, min_hosts=2))
    hosts.fail("A", "B", "C")
    hosts.start("A", "B", "C")
    wait_for(lambda: state(redis_clean).get("st") == 2)
    opened = time.time()
    # probes keep failing for a few cooldowns, then the dependency recovers
    wait_for(lambda: state(redis_clean).get("opens", 0) >= 3)
    hosts.heal("A", "B", "C")
    wait_for(lambda: state(redis_clean).get("ep", 0) >= 1)
    closed = time.time()
    time.sleep(0.8)
    results = hosts.finish()
    episodes = state(redis_clean)["opens"]
    assert state(redis_clean)["st"] == 0
    probe_calls = [(t, w, r["host"]) for r in results for t, w in r["events"]
                   if w.startswith("probe") and opened - 0.05 <= t <= closed]
    ran = sum(whats(r, opened)["ok"] + whats(r, opened)["fail"] for r in results
              if r["events"])
    assert probes <= len(probe_calls) <= probes * episodes, (probe_calls, episodes)
    assert sum(1 for _, w, _ in probe_calls if w == "probe-ok") == probes
    # every host runs calls again once the cluster closed, and none ran
    # while it was open or probing (the prober's breaker closes with its
    # last probe, just before the cluster does)
    assert ran > 0
    last_probe = max(t for t, w, _ in probe_calls)
    for r in results:
        assert whats(r, closed + 0.3)["ok"] > 0
        ran_early = [t for t, w in r["events"]
                     if opened + 0.3 < t < last_probe and w in ("ok", "fail")]
        assert ran_early == [], (r["host"], ran_early)


def test_a_process_joining_resets_no_counts(redis_clean: RedisServer, tmp_path: Path) -> None:
    hosts = Hosts(redis_clean, tmp_path, 20, dict(RATE, cooldown=30.0, sync_interval=0.1,
                                                    min_hosts=3))
    hosts.fail("A", "B")
    hosts.start("A", "B")
    c = redis_clean.client()

    def entries() -> dict[bytes, list[Any]]:
        return {k: json.loads(v) for k, v in c.hgetall(keys()[0]).items()}

    wait_for(lambda: len(entries()) == 2 and all(e[2] >= 10 for e in entries().values()))
    before = entries()
    hosts.start("C")  # a new process: its first synchronisation writes its own entry only
    wait_for(lambda: len(entries()) == 3)
    after = entries()
    for instance, entry in before.items():
        assert after[instance][2] >= 10 and after[instance][3] >= 10  # calls, failures kept
    time.sleep(0.3)
    a, b, joined = hosts.finish()
    view = joined["stats"]["cluster"]
    assert view["hosts"] == 3 and view["failing_hosts"] == 2 and view["failures"] >= 20
    assert state(redis_clean)["opens"] == 0  # min_hosts=3: two sick hosts are not enough
    c.close()


def test_redis_killed_during_load_leaves_the_local_breakers_deciding(
        redis_clean: RedisServer, tmp_path: Path) -> None:
    timeout = 0.05
    hosts = Hosts(redis_clean, tmp_path, 30, dict(
        RATE, cooldown=30.0, sync_interval=0.1, min_hosts=2,
        backend=dict(timeout=timeout, cooldown=0.2, on_unavailable="local")))
    hosts.start("A", "B")
    time.sleep(0.4)
    redis_clean.kill()
    down = time.time()
    time.sleep(0.3)
    hosts.fail("A")  # only A's own breaker can stop A now
    time.sleep(0.8)
    redis_clean.start()
    up = time.time()
    time.sleep(1.0)
    a, b = hosts.finish()
    for r in (a, b):
        assert r["longest"] < timeout + 0.1
        modes = [m for _, m in r["modes"]]
        assert modes[0] == "redis" and "local-fallback" in modes and modes[-1] == "redis", modes
        lost = next(t for t, m in r["modes"] if m == "local-fallback")
        back = next(t for t, m in r["modes"] if m == "redis" and t > lost)
        assert down - 0.05 <= lost < up <= back + 0.05
    during = Counter(w for t, w in a["events"] if down < t < up)
    assert during["fail"] >= 10 and during["rejected"] > 0  # A's local breaker tripped alone
    assert whats(b)["rejected"] == 0
    # after the restart both republished: the cluster sees both hosts again
    assert a["stats"]["cluster"]["hosts"] == 2 and a["stats"]["cluster"]["failing_hosts"] == 1


# ----------------------------------------------------------- in process
def alone(server: RedisServer, name: str, **config: Any) -> tuple[RedisBackend, Any]:
    """A backend of host "h1" and a cluster breaker on it that opens the
    cluster alone (min_hosts=1), synchronising every 50 ms."""
    backend = RedisBackend(server.client(), host="h1")
    return backend, resil.CircuitBreaker(name, cluster=backend, sync_interval=0.05, min_hosts=1,
                                         **config)


def open_alone(breaker: Any, failures: int) -> None:
    """Fails ``failures`` calls of a breaker with min_hosts=1 and waits for
    the cluster to open."""
    for _ in range(failures):
        breaker.record_failure(None, 1.0)
    wait_for(lambda: breaker.stats()["cluster"]["state"] == "OPEN", limit=3.0)


def test_a_local_trip_is_published_at_once(redis_clean: RedisServer) -> None:
    backend = RedisBackend(redis_clean.client(), host="h1")
    breaker = resil.CircuitBreaker("wake", cluster=backend, sync_interval=30.0,
                                   failure_threshold=3)
    c = redis_clean.client()
    for _ in range(3):
        with pytest.raises(ValueError):
            breaker.call(int, "x")
    assert breaker.state == resil.State.OPEN
    wait_for(lambda: c.hget(keys("wake")[0], backend.instance) is not None, limit=3.0)
    entry = json.loads(c.hget(keys("wake")[0], backend.instance))
    assert entry[0] == "h1" and entry[5] == 1  # tripped, long before the 30 s tick
    breaker.leave_cluster()
    backend.close()
    c.close()


def test_stats_name_the_backend_and_the_cluster_view(redis_clean: RedisServer) -> None:
    backend, breaker = alone(redis_clean, "s", **RATE)
    assert breaker.cluster is backend
    assert resil.CircuitBreaker("plain").cluster is None
    assert "backend" not in resil.CircuitBreaker("plain").stats()
    wait_for(lambda: breaker.stats()["cluster"]["age"] is not None)
    s = breaker.stats()
    json.dumps(s)
    assert s["backend"] == backend.mode == "redis"
    assert s["cluster"]["state"] == "CLOSED" and s["cluster"]["min_hosts"] == 1
    open_alone(breaker, 10)  # one host is enough with min_hosts=1
    assert breaker.stats()["cluster"]["opens"] == 1
    with pytest.raises(resil.CircuitOpenError):
        breaker.call(int, "1")
    breaker.leave_cluster()
    breaker.leave_cluster()
    backend.close()


def test_without_probes_the_cooldown_end_closes_the_cluster(redis_clean: RedisServer) -> None:
    backend, breaker = alone(redis_clean, "noprobe", half_open_probes=0, cooldown=0.2,
                             failure_threshold=2)
    open_alone(breaker, 2)
    wait_for(lambda: breaker.stats()["cluster"]["epoch"] == 1, limit=3.0)
    assert breaker.stats()["cluster"]["state"] == "CLOSED"
    wait_for(lambda: breaker.state == resil.State.CLOSED, limit=3.0)
    assert breaker.call(int, "3") == 3
    breaker.leave_cluster()
    backend.close()


def test_garbage_collection_and_leave_cluster_stop_the_synchronisation(
        redis_clean: RedisServer) -> None:
    backend = RedisBackend(redis_clean.client())
    breaker = resil.CircuitBreaker("gc", cluster=backend, sync_interval=0.05)
    sync = breaker._cluster
    assert not sync._task.cancelled
    del breaker
    gc.collect()
    assert sync._task.cancelled
    other = resil.CircuitBreaker("gc2", cluster=backend, sync_interval=0.05)
    other.leave_cluster()
    assert other._cluster._task.cancelled
    backend.close()


@pytest.mark.parametrize("mode", ["open", "closed", "local"])
def test_on_unavailable_while_redis_is_away_and_after_it_returns(mode: str) -> None:
    import redis
    port = free_port()
    backend = RedisBackend(redis.Redis(port=port), on_unavailable=mode, timeout=0.05,
                           cooldown=0.05)
    breaker = resil.CircuitBreaker("away", cluster=backend, sync_interval=0.05,
                                   failure_threshold=3)
    wait_for(lambda: breaker.stats()["backend"] != "redis", limit=3.0)
    assert breaker.stats()["backend"] == f"{mode}-fallback"
    if mode == "open":
        wait_for(lambda: breaker.state == resil.State.DISABLED, limit=3.0)
        for _ in range(5):
            with pytest.raises(ValueError):
                breaker.call(int, "x")
        assert breaker.call(int, "7") == 7  # admitted, failures counted nowhere
    elif mode == "closed":
        wait_for(lambda: breaker.state == resil.State.FORCED_OPEN, limit=3.0)
        with pytest.raises(resil.CircuitOpenError):
            breaker.call(int, "7")
    else:
        for _ in range(3):
            with pytest.raises(ValueError):
                breaker.call(int, "x")
        assert breaker.state == resil.State.OPEN  # the local rules alone
    server = RedisServer(port=port)
    try:
        wait_for(lambda: breaker.stats()["backend"] == "redis", limit=5.0)
        if mode != "local":
            wait_for(lambda: breaker.state == resil.State.CLOSED, limit=3.0)
            assert breaker.call(int, "7") == 7
        wait_for(lambda: breaker.stats()["cluster"]["age"] is not None, limit=3.0)
        assert breaker.stats()["cluster"]["state"] == "CLOSED"
    finally:
        breaker.leave_cluster()
        backend.close()
        server.stop()


def test_bad_arguments(redis_clean: RedisServer, tmp_path: Path) -> None:
    backend = RedisBackend(redis_clean.client())
    for value in (0, -1, math.nan, math.inf, 10**400):
        with pytest.raises(ValueError, match="sync_interval"):
            resil.CircuitBreaker("x", cluster=backend, sync_interval=value)
    for value in ("1", None, [1]):
        with pytest.raises(TypeError, match="sync_interval"):
            resil.CircuitBreaker("x", cluster=backend, sync_interval=value)
    for value in (0, -3, 2**31):
        with pytest.raises(ValueError, match="min_hosts"):
            resil.CircuitBreaker("x", cluster=backend, min_hosts=value)
    for value in (True, 2.0, "2", None):
        with pytest.raises(TypeError, match="min_hosts"):
            resil.CircuitBreaker("x", cluster=backend, min_hosts=value)
    for value in (object(), "redis://x", redis_clean.client()):
        with pytest.raises(TypeError, match="cluster"):
            resil.CircuitBreaker("x", cluster=value)
    region = resil.SharedRegion(str(tmp_path / "r"), size=1 << 16)
    with pytest.raises(ValueError, match="shared"):
        resil.CircuitBreaker("x", cluster=backend, shared=region)
    with pytest.raises(TypeError, match="needs a name"):  # two unnamed ones would be one
        resil.CircuitBreaker(cluster=backend)
    assert resil.CircuitBreaker(name="named", cluster=backend).cluster is backend
    region.close()
    import inspect
    params = inspect.signature(resil.CircuitBreaker).parameters
    assert params["cluster"].default is None and params["sync_interval"].default == 1.0
    assert params["min_hosts"].default == 2
    backend.close()


# ------------------------------------------------ the script vs the model
sys.path.insert(0, str(Path(__file__).parent))
from model.redis_breaker import Cluster, Entry, Rules, Sync  # noqa: E402

INSTANCES = ["i0", "i1", "i2", "i3", "i4"]
LEASE_MS = 60_000


def _args(s: Sync, rules: Rules) -> list[Any]:
    return [s.instance, s.host, s.epoch, s.calls, s.failures, s.slow, int(s.tripped), s.probe,
            int(s.want_lease), rules.fresh, repr(rules.failure_rate), repr(rules.slow_rate),
            rules.minimum_calls, rules.min_hosts, rules.cooldown, repr(rules.multiplier),
            rules.cooldown_max, LEASE_MS, 600_000, rules.probes]


def _redis_now(c: Any) -> int:
    sec, usec = c.time()
    return int(sec) * 1000 + int(usec) // 1000


def _load(c: Any, name: str) -> Cluster:
    k = keys(name)
    raw = {a.decode(): int(b) for a, b in c.hgetall(k[1]).items()}
    entries = {}
    for inst, v in c.hgetall(k[0]).items():
        h, ep, calls, f, s, t, u = json.loads(v)
        entries[inst.decode()] = Entry(h, ep, calls, f, s, t == 1, u)
    lease = c.get(k[2])
    return Cluster(raw.get("st", 0), raw.get("ep", 0), raw.get("cd"), raw.get("until", 0),
                   raw.get("opens", 0), entries, None if lease is None else lease.decode())


def _store(c: Any, name: str, m: Cluster) -> None:
    k = keys(name)
    c.delete(*k)
    if m.cooldown is not None:
        c.hset(k[1], mapping={"st": m.state, "ep": m.epoch, "cd": m.cooldown,
                              "until": m.until, "opens": m.opens})
    for inst, e in m.entries.items():
        c.hset(k[0], inst, json.dumps([e.host, e.epoch, e.calls, e.failures, e.slow,
                                       int(e.tripped), e.updated]))
    if m.lease is not None:
        c.set(k[2], m.lease, px=LEASE_MS)


def _counts(draw: Any) -> tuple[int, int, int]:
    calls = draw(st.integers(0, 30))
    return calls, draw(st.integers(0, calls)), draw(st.integers(0, calls))


@st.composite
def rules_(draw: Any) -> Rules:
    cooldown = draw(st.integers(1, 500))
    return Rules(fresh=draw(st.sampled_from([40, 100])),
                 failure_rate=draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])),
                 slow_rate=draw(st.sampled_from([0.0, 0.5, 0.75])),
                 minimum_calls=draw(st.integers(1, 40)), min_hosts=draw(st.integers(1, 3)),
                 cooldown=cooldown, multiplier=draw(st.sampled_from([1.0, 1.5, 2.0, 3.3])),
                 cooldown_max=cooldown + draw(st.integers(0, 2000)),
                 probes=draw(st.sampled_from([0, 1, 3])))


@st.composite
def syncs(draw: Any, epoch: int) -> Sync:
    calls, failures, slow = _counts(draw)
    return Sync(instance=draw(st.sampled_from(["i0", "i0", "i1"] + INSTANCES)),
                host=draw(st.sampled_from(["h0", "h1", "h2"])),
                epoch=draw(st.sampled_from([-1, epoch, max(0, epoch - 1)])), calls=calls,
                failures=failures, slow=slow, tripped=draw(st.booleans()),
                probe=draw(st.sampled_from([0, 1, 2])), want_lease=draw(st.booleans()))


@st.composite
def clusters(draw: Any, now: int, fresh: int) -> Cluster:
    if draw(st.booleans()):
        return Cluster()
    epoch = draw(st.integers(0, 3))
    entries = {}
    for inst in draw(st.lists(st.sampled_from(INSTANCES), max_size=5, unique=True)):
        calls, failures, slow = _counts(draw)
        entries[inst] = Entry(draw(st.sampled_from(["h0", "h1", "h2"])),
                              draw(st.sampled_from([epoch, max(0, epoch - 1)])), calls,
                              failures, slow, draw(st.booleans()),
                              now - draw(st.integers(0, 2 * fresh)
                                         | st.integers(fresh - 4, fresh + 2)))
    return Cluster(state=draw(st.sampled_from([0, 2, 3, 3])), epoch=epoch,
                   cooldown=draw(st.integers(1, 1000)),
                   until=now + draw(st.integers(-100, 100) | st.integers(0, 3)), opens=draw(st.integers(0, 5)),
                   entries=entries, lease=draw(st.sampled_from([None, "i0", "i1"])))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_one_synchronisation_agrees_with_the_model(redis_server: RedisServer,
                                                   data: st.DataObject) -> None:
    """Any state of the cluster, any process's synchronisation: the script's
    reply and every key afterwards are the model's."""
    c = redis_server.client()
    rules = data.draw(rules_())
    model = data.draw(clusters(_redis_now(c), rules.fresh))
    _store(c, "lock1", model)
    s = data.draw(syncs(model.epoch))
    reply = [int(x) for x in c.eval(SYNC.source, 3, *keys("lock1"), *_args(s, rules))]
    assert reply == model.sync(reply[-1], s, rules)
    assert _load(c, "lock1") == model
    c.close()


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_random_schedule_of_synchronisations_agrees_with_the_model(
        redis_server: RedisServer, data: st.DataObject) -> None:
    """Several processes synchronising in a random order with random
    pauses (entries going stale, cooldowns ending on Redis time): the
    script and the model in lockstep."""
    c = redis_server.client()
    c.delete(*keys("lock2"))
    rules = data.draw(rules_())
    rules.cooldown = min(rules.cooldown, 60)
    rules.cooldown_max = min(rules.cooldown_max, 200)
    model = Cluster()
    for _ in range(data.draw(st.integers(1, 25))):
        pause = data.draw(st.sampled_from([0, 0, 0, 5, 20, 60]))
        if pause:
            time.sleep(pause / 1000)
        s = data.draw(syncs(model.epoch))
        reply = [int(x) for x in c.eval(SYNC.source, 3, *keys("lock2"), *_args(s, rules))]
        assert reply == model.sync(reply[-1], s, rules)
        assert _load(c, "lock2") == model
    c.close()


# ------------------------------------------------------- hostile inputs
def test_follow_refuses_what_it_cannot_apply(tmp_path: Path) -> None:
    b = resil.CircuitBreaker("f", failure_threshold=2)
    seen: list[tuple[Any, Any, str]] = []
    b.on_state_change(lambda _b, old, new, why: seen.append((old, new, why)))
    for args in [(), (2,), (2, 1.0, 3)]:
        with pytest.raises(TypeError):
            b._follow(*args)
    for state_ in (1, 4, 5, 6, -1, 10**400):
        with pytest.raises((ValueError, OverflowError)):
            b._follow(state_, 1.0)
    for bad in ("2", 2.0, None, True):
        with pytest.raises((TypeError, ValueError)):
            b._follow(bad, 1.0)
    for cooldown in (math.nan, -1.0, math.inf, 10**400):
        with pytest.raises(ValueError, match="cooldown"):
            b._follow(2, cooldown)
    with pytest.raises(TypeError, match="cooldown"):
        b._follow(2, "1")
    assert b.state == resil.State.CLOSED and seen == []
    b._follow(2, 5.0)
    assert b.state == resil.State.OPEN and 4.0 < b.remaining <= 5.0
    b._follow(2, 0.5)  # refreshed: no second transition
    assert b.remaining <= 0.5
    b._follow(3, 0.0)
    assert b.state == resil.State.HALF_OPEN
    b._follow(0, 0.0)
    assert b.state == resil.State.CLOSED
    assert seen == [(resil.State.CLOSED, resil.State.OPEN, "cluster"),
                    (resil.State.OPEN, resil.State.HALF_OPEN, "cluster"),
                    (resil.State.HALF_OPEN, resil.State.CLOSED, "cluster")]
    region = resil.SharedRegion(str(tmp_path / "r"), size=1 << 16)
    shared = resil.CircuitBreaker("f", shared=region)
    with pytest.raises(ValueError, match="shared"):
        shared._follow(2, 1.0)
    region.close()


def test_threads_calling_while_the_cluster_flips(redis_clean: RedisServer) -> None:
    """Threads through a cluster breaker whose state the synchronisation
    changes under them (switch interval 10 us): every call either runs or
    is rejected, permits always close, the counts add up."""
    backend = RedisBackend(redis_clean.client(), host="t")
    breaker = resil.CircuitBreaker("threads", cluster=backend, sync_interval=0.01, min_hosts=1,
                                   cooldown=0.03, cooldown_multiplier=1.0, half_open_probes=2,
                                   **RATE)
    per_thread = [Counter[str]() for _ in range(4)]
    errors: list[BaseException] = []
    end = time.monotonic() + 0.8

    def work(i: int) -> None:
        counts = per_thread[i]
        n = 0
        try:
            while time.monotonic() < end:
                n += 1
                try:
                    breaker.call(lambda: None if (n + i) % 3 == 0 else 1 / 0)
                    counts["ok"] += 1
                except ZeroDivisionError:
                    counts["failed"] += 1
                except resil.CircuitOpenError:
                    counts["rejected"] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    run_threads(work, 4)
    assert not errors
    counts = sum(per_thread, Counter[str]())
    s = breaker.stats()
    assert counts["ok"] and counts["failed"] and counts["rejected"]
    assert s["successes"] + s["failures"] == counts["ok"] + counts["failed"]
    assert s["permitted"] == s["successes"] + s["failures"] + s["released"]
    assert s["rejected"] == counts["rejected"]
    assert s["backend"] == "redis" and s["cluster"]["opens"] >= 1
    breaker.leave_cluster()
    backend.close()
