"""Instructions per operation under callgrind: resil's hot paths beside peers.

Wall-clock nanoseconds on a shared machine drift by up to 2x between
minutes; instruction counts do not. Each scenario is a small program that
runs its statement N times; it runs under ``valgrind --tool=callgrind``
once with N1 and once with N2 iterations, and instructions per operation is
``(I(N2) - I(N1)) / (N2 - N1)``, so interpreter start-up, imports, set-up
and bytecode warm-up cancel out. The *bare* rows are the floor: the loop
itself and a call of an empty Python function.

``--compare DIR`` runs every scenario a second time with ``DIR`` first on
``sys.path`` (a checkout of another commit with its extension built in
place, ``python setup.py build_ext --inplace``), and adds its column and the
ratio, so a change to a hot path is judged in instructions.

``--smoke`` counts nothing: it runs each program once, without valgrind, to
check that every case still runs (and that its own asserts hold).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402
import _redis_server  # noqa: E402


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    setup: str
    stmt: str = ""
    run: str = ""  # for async cases: a statement that does n operations
    needs: str = ""  # a peer's import name; the row is left out without it
    redis: bool = False  # talks to the redis-server main() starts; see _REDIS_PORT


# A limiter in a SharedRegion whose file is removed once mapped.
_SHARED_LIMITER = (
    "import os, tempfile, resil\n"
    "p = os.path.join(tempfile.mkdtemp(), 'r')\n"
    "region = resil.SharedRegion(p)\nos.unlink(p)\n"
    "r = resil.RateLimiter(1e12, burst=10**15, name='r', shared=region)\nt = r.try_acquire")

# A Deduplicator, local or in a SharedRegion whose file is removed once
# mapped, and a stream of new str keys (capacity 2**16: none is evicted).
_DEDUP_LOCAL = ("import itertools, resil\nc = itertools.count()\n"
                "s = resil.Deduplicator(capacity=1 << 16).seen\n")
_DEDUP_SHARED = (
    "import itertools, os, tempfile, resil\nc = itertools.count()\n"
    "p = os.path.join(tempfile.mkdtemp(), 'r')\n"
    "region = resil.SharedRegion(p, size=8 << 20)\nos.unlink(p)\n"
    "s = resil.Deduplicator(capacity=1 << 16, shared=region, name='d').seen\n")
# A monitor in a SharedRegion whose file is removed once mapped.
_SHARED_MONITOR = (
    "import os, tempfile, resil\n"
    "p = os.path.join(tempfile.mkdtemp(), 'r')\n"
    "region = resil.SharedRegion(p, size=4 << 20)\nos.unlink(p)\n"
    "m = resil.Monitor(shared=region)\nr = m.record")

# A bulkhead in a SharedRegion whose file is removed once mapped.
_SHARED_BULKHEAD = (
    "import os, tempfile, resil\n"
    "p = os.path.join(tempfile.mkdtemp(), 'r')\n"
    "region = resil.SharedRegion(p)\nos.unlink(p)\n"
    "b = resil.Bulkhead('x', 10, shared=region)\n")

_ASYNC_EMITTER = """
import asyncio, resil
# The sender gives the loop a turn after _TURN_SECONDS of continuous work:
# about every 3,000 events natively, but every few dozen under callgrind,
# which runs some 50 times slower. Scaled so the turns come as often per
# event as they do natively (a no-op for a build without turns).
import resil.messaging.emitter
resil.messaging.emitter._TURN_SECONDS = 0.05
async def main(n):
    got = []
    async def sink(event):
        got.append(event)
    em = resil.EventEmitter({sink}, queue_size=4096)
    em.start()
    for i in range(n):
        while not em.emit(i):
            await asyncio.sleep(0)
        if i % 1024 == 1023:
            await asyncio.sleep(0)
    await em.close()
    assert len(got) == n
"""

_ASYNC_BUS = """
import asyncio, resil
async def main(n):
    bus = resil.EventBus(storm_threshold=1 << 24)
    got = []
    bus.subscribe("t", got.append)
    for i in range(n):
        await bus.publish("t", {"i": i})
    assert len(got) == n
"""


def _awaits(setup: str, stmt: str) -> str:
    """A coroutine that runs `stmt` (which awaits) n times, in one event loop."""
    return (f"import asyncio\n{setup}\nasync def main(n):\n    for _ in range(n):\n"
            f"        {stmt}")


def _contended(setup: str) -> str:
    """n tasks, 100 at a time, each `async with lim:` (none when setup
    defines no lim) around one `await asyncio.sleep(0)`: per task."""
    inside = ("    async with lim:\n        await asyncio.sleep(0)" if "lim =" in setup
              else "    await asyncio.sleep(0)")
    return (f"import asyncio\n{setup}\nasync def work():\n{inside}\n"
            "async def main(n):\n    for _ in range(n // 100):\n"
            "        await asyncio.gather(*[work() for _ in range(100)])")


_ASYNC_BREAKER = "import resil\nb = resil.CircuitBreaker('x')\nasync def g(x): return x"

# A breaker in a SharedRegion whose file is removed once mapped.
_SHARED_BREAKER = (
    "import os, tempfile, resil\n"
    "p = os.path.join(tempfile.mkdtemp(), 'r')\n"
    "region = resil.SharedRegion(p)\nos.unlink(p)\n"
    "b = resil.CircuitBreaker('x', shared=region)\n")

# The redis-server that main() starts for the cases marked redis=True: its
# port reaches the program in this environment variable. The server runs
# outside valgrind, started once, so its start-up is in no count.
_REDIS_PORT = "RESIL_BENCH_REDIS_PORT"

# A cluster breaker on that server: a guarded call stays on the local
# breaker; sync_interval is an hour, so no background sync runs while a
# program is counted (under callgrind it runs some 50 times slower). Each
# program has its own key prefix, since the runs go in parallel.
_CLUSTER_BREAKER = (
    "import os, resil, redis\nfrom resil.redis import RedisBackend\n"
    f"client = redis.Redis(host='127.0.0.1', port=int(os.environ[{_REDIS_PORT!r}]))\n"
    "backend = RedisBackend(client, prefix=f'bench{os.getpid()}:', timeout=5.0)\n"
    "b = resil.CircuitBreaker('x', cluster=backend, sync_interval=3600.0, min_hosts=2)\n")

CASES = [
    Case("bare", "loop: `pass`", "", "pass"),
    Case("bare", "call of an empty function `f(1)`", "def f(x): return x", "f(1)"),
    Case("bare", "await of an empty coroutine function `await g(1)`",
         _awaits("async def g(x): return x", "await g(1)"), run="asyncio.run(main(n))"),
    Case("bare", "call through a C wrapper that does nothing else: `functools.partial(f)(1)`",
         "import functools\ndef f(x): return x\np = functools.partial(f)", "p(1)"),
    Case("bare", "a C function's exception, caught: `{}[1]` raising KeyError",
         "d = {}\nE = KeyError\n"
         "def g():\n    try:\n        d[1]\n    except E:\n        pass", "g()"),
    Case("breaker", "resil `@breaker` sync call",
         "import resil\nb = resil.CircuitBreaker('x')\n@b\ndef f(x): return x", "f(1)"),
    Case("breaker", "resil `b.call(f, 1)`",
         "import resil\nb = resil.CircuitBreaker('x')\ndef f(x): return x", "b.call(f, 1)"),
    Case("breaker", "resil rejected call while OPEN",
         "import resil\nb = resil.CircuitBreaker('x')\n@b\ndef f(x): return x\nb.force_open()\n"
         "E = resil.CircuitOpenError\n"
         "def g():\n    try:\n        f(1)\n    except E:\n        pass", "g()"),
    Case("breaker", "(a plain function that raises, caught: `raise ValueError`)",
         "E = ValueError\ndef f(x): raise E\n"
         "def g():\n    try:\n        f(1)\n    except E:\n        pass", "g()"),
    Case("breaker", "resil `@breaker` coroutine function, `await h(1)`",
         _awaits(_ASYNC_BREAKER + "\nh = b(g)", "await h(1)"), run="asyncio.run(main(n))"),
    Case("breaker", "resil `await b.call_async(g, 1)`",
         _awaits(_ASYNC_BREAKER, "await b.call_async(g, 1)"), run="asyncio.run(main(n))"),
    Case("breaker", "resil `async with b: await g(1)`",
         _awaits(_ASYNC_BREAKER, "async with b:\n            await g(1)"),
         run="asyncio.run(main(n))"),
    Case("breaker", "resil shared `@breaker` sync call (`shared=region`)",
         _SHARED_BREAKER + "@b\ndef f(x): return x", "f(1)"),
    Case("breaker", "resil shared rejected call while OPEN (`shared=region`)",
         _SHARED_BREAKER + "@b\ndef f(x): return x\nb.force_open()\n"
         "E = resil.CircuitOpenError\n"
         "def g():\n    try:\n        f(1)\n    except E:\n        pass", "g()"),
    Case("breaker", "resil shared `@breaker` coroutine function, `await h(1)` (`shared=region`)",
         _awaits(_SHARED_BREAKER + "async def g(x): return x\nh = b(g)", "await h(1)"),
         run="asyncio.run(main(n))"),
    Case("breaker", "resil cluster `@breaker` sync call (`cluster=backend`, no sync during the "
         "run)", _CLUSTER_BREAKER + "@b\ndef f(x): return x", "f(1)", needs="redis", redis=True),
    Case("breaker", "pybreaker `@breaker` sync call",
         "import pybreaker\nb = pybreaker.CircuitBreaker()\n@b\ndef f(x): return x", "f(1)",
         needs="pybreaker"),
    Case("breaker", "circuitbreaker `@circuit` sync call",
         "from circuitbreaker import circuit\n@circuit\ndef f(x): return x", "f(1)",
         needs="circuitbreaker"),
    Case("retry", "resil `@retry` sync call, first attempt succeeds",
         "import resil\n@resil.retry(retries=3)\ndef f(x): return x", "f(1)"),
    Case("retry", "tenacity `@retry` sync call, first attempt succeeds",
         "import tenacity\n@tenacity.retry(stop=tenacity.stop_after_attempt(4))\n"
         "def f(x): return x", "f(1)", needs="tenacity"),
    Case("queue", "resil `BoundedQueue` put_nowait + get_nowait",
         "import resil\nq = resil.BoundedQueue(1000)\np, g = q.put_nowait, q.get_nowait",
         "p(1); g()"),
    Case("queue", "resil `BoundedQueue` rejected put_nowait (full)",
         "import resil\nq = resil.BoundedQueue(10, warn_at=1.0, reject_at=1.0)\n"
         "for i in range(10): q.put_nowait(i)\nF = resil.QueueFull\n"
         "def g():\n    try:\n        q.put_nowait(1)\n    except F:\n        pass", "g()"),
    Case("queue", "resil `PartitionedQueue` put_nowait + get_nowait + task_done",
         "import resil\nq = resil.PartitionedQueue(1000)\n"
         "p, g, d = q.put_nowait, q.get_nowait, q.task_done", "p(1, 'k'); g(); d('k')"),
    Case("queue", "asyncio `Queue` put_nowait + get_nowait",
         "import asyncio\nq = asyncio.Queue(1000)\np, g = q.put_nowait, q.get_nowait",
         "p(1); g()"),
    Case("dedup", "resil `Deduplicator.seen`, all new (10**6 capacity)",
         "import resil\nd = resil.Deduplicator(capacity=1 << 20)\ns = d.seen\nimport itertools\n"
         "c = itertools.count()", "s(next(c))"),
    Case("dedup", "resil `Deduplicator.seen(str)`, all new (2**16 capacity)",
         _DEDUP_LOCAL, "s(str(next(c)))"),
    Case("dedup", "resil shared `Deduplicator.seen(str)`, all new (2**16 capacity, "
         "`shared=region`)", _DEDUP_SHARED, "s(str(next(c)))"),
    Case("dedup", "resil `Deduplicator.seen('k')`, a duplicate", _DEDUP_LOCAL + "s('k')",
         "s('k')"),
    Case("dedup", "resil shared `Deduplicator.seen('k')`, a duplicate (`shared=region`)",
         _DEDUP_SHARED + "s('k')", "s('k')"),
    Case("dedup", "cachetools `TTLCache` check + insert",
         "import cachetools, itertools\nd = cachetools.TTLCache(1 << 20, 300)\n"
         "c = itertools.count()\n"
         "def s(k):\n    if k in d:\n        return True\n    d[k] = True\n    return False",
         "s(next(c))", needs="cachetools"),
    Case("dedup", "resil `@idempotent` call, cached result",
         "import asyncio, resil\n@resil.idempotent(key=lambda x: x)\nasync def f(x): return x\n"
         "async def main(n):\n    for i in range(n):\n        await f(1)",
         run="asyncio.run(main(n))"),
    Case("rate", "resil `RateCounter.hit` (threshold 10**6)",
         "import resil\nr = resil.RateCounter(10**6, 1.0)\nh = r.hit", "h()"),
    Case("rate", "resil `RateLimiter.try_acquire()` (admitted)",
         "import resil\nr = resil.RateLimiter(1e12, burst=10**15)\nt = r.try_acquire", "t()"),
    Case("rate", "resil `RateLimiter.try_acquire(key=...)` (admitted)",
         "import resil\nr = resil.RateLimiter(1e12, burst=10**15)\nt = r.try_acquire",
         "t(key='user')"),
    Case("rate", "resil `await RateLimiter.acquire_async()` (admitted)",
         _awaits("import resil\nr = resil.RateLimiter(1e12, burst=10**15)\na = r.acquire_async",
                 "await a()"), run="asyncio.run(main(n))"),
    Case("rate", "resil `RateLimiter.acquire()` (admitted)",
         "import resil\nr = resil.RateLimiter(1e12, burst=10**15)\na = r.acquire", "a()"),
    Case("rate", "resil shared `RateLimiter.try_acquire()` (admitted, `shared=region`)",
         _SHARED_LIMITER, "t()"),
    Case("rate", "resil shared `RateLimiter.try_acquire(key=...)` (admitted, `shared=region`)",
         _SHARED_LIMITER, "t(key='user')"),
    Case("backoff", "resil `Backoff.delay` (full jitter)",
         "import resil\nb = resil.Backoff(jitter='full', seed=1)\nd = b.delay", "d(5)"),
    Case("emitter", "resil `EventEmitter` emit -> async sink, per event",
         _ASYNC_EMITTER.replace("{sink}", "sink"), run="asyncio.run(main(n))"),
    Case("emitter", "resil `EventEmitter` emit -> plain function sink, per event",
         _ASYNC_EMITTER.replace("{sink}", "got.append"), run="asyncio.run(main(n))"),
    Case("bus", "resil `EventBus.publish`, 1 subscriber, per event", _ASYNC_BUS,
         run="asyncio.run(main(n))"),
    Case("bus", "resil `EventBus.publish` with a new idempotency_key, per event",
         _ASYNC_BUS.replace('{"i": i}', '{"i": i}, idempotency_key=str(i)'),
         run="asyncio.run(main(n))"),
    Case("bulkhead", "resil `async with bulkhead:` (a slot free)",
         _awaits("import resil\nb = resil.Bulkhead('x', 10)", "async with b: pass"),
         run="asyncio.run(main(n))"),
    Case("bulkhead", "asyncio `async with Semaphore(10):`",
         _awaits("s = asyncio.Semaphore(10)", "async with s: pass"),
         run="asyncio.run(main(n))"),
    Case("bulkhead", "resil `with bulkhead:` (a slot free)",
         "import resil\nb = resil.Bulkhead('x', 10)\ndef g():\n    with b:\n        pass", "g()"),
    Case("bulkhead", "threading `with BoundedSemaphore(10):`",
         "import threading\ns = threading.BoundedSemaphore(10)\n"
         "def g():\n    with s:\n        pass", "g()"),
    Case("bulkhead", "resil `try_acquire` + `release`",
         "import resil\nb = resil.Bulkhead('x', 10)\nt, r = b.try_acquire, b.release",
         "r(t())"),
    Case("bulkhead", "resil shared `try_acquire` + `release` (`shared=region`)",
         _SHARED_BULKHEAD + "t, r = b.try_acquire, b.release", "r(t())"),
    Case("bulkhead", "resil shared `with bulkhead:` (a slot free, `shared=region`)",
         _SHARED_BULKHEAD + "def g():\n    with b:\n        pass", "g()"),
    Case("bulkhead", "resil `@bulkhead` sync call",
         "import resil\nb = resil.Bulkhead('x', 10)\n@b\ndef f(x): return x", "f(1)"),
    Case("bulkhead", "(100 tasks at a time, no limit: per task)", _contended(""),
         run="asyncio.run(main(n))"),
    Case("bulkhead", "resil `async with bulkhead:`, 100 tasks on 10 slots: per task",
         _contended("import resil\nlim = resil.Bulkhead('x', 10, max_queue=90)"),
         run="asyncio.run(main(n))"),
    Case("bulkhead", "asyncio `async with Semaphore(10):`, 100 tasks: per task",
         _contended("lim = asyncio.Semaphore(10)"), run="asyncio.run(main(n))"),
    Case("adaptive", "resil `AdaptiveLimiter` `try_acquire` + `release` (latency measured)",
         "import resil\nlim = resil.AdaptiveLimiter('gradient')\n"
         "t, r = lim.try_acquire, lim.release\nfor _ in range(10): r(t())", "r(t())"),
    Case("adaptive", "resil `AdaptiveLimiter` `try_acquire` + `release(p, 0.01)`",
         "import resil\nlim = resil.AdaptiveLimiter('vegas')\n"
         "t, r = lim.try_acquire, lim.release\nfor _ in range(10): r(t())", "r(t(), 0.01)"),
    Case("monitor", "resil `Monitor.record`, success",
         "import resil\nm = resil.Monitor()\nr = m.record", "r('db', 'q', 1.5, True)"),
    Case("monitor", "resil `Monitor.record`, failure",
         "import resil\nm = resil.Monitor()\nr = m.record", "r('db', 'q', 1.5, False)"),
    Case("monitor", "resil `Monitor.record_event`",
         "import resil\nm = resil.Monitor()\nr = m.record_event", "r('retry', 'db')"),
    Case("monitor", "resil shared `Monitor.record`, success (`shared=region`)",
         _SHARED_MONITOR, "r('db', 'q', 1.5, True)"),
    Case("monitor", "resil shared `Monitor.record`, failure (`shared=region`)",
         _SHARED_MONITOR, "r('db', 'q', 1.5, False)"),
]

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def _program(case: Case) -> str:
    # The loop runs inside a function, as code in a service does: its names
    # are locals and cached globals. A loop at module level would look each
    # name up in the module's dict on every pass, at a cost that depends on
    # which other names the set-up defined (up to ~50 instructions a name).
    body = case.run if case.run else (f"def _loop(n):\n    for _ in range(n):\n        {case.stmt}"
                                      "\n_loop(n)")
    return f"import sys\nn = int(sys.argv[1])\n{case.setup}\n{body}\n"


REPO = Path(__file__).resolve().parent.parent


_CALLGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]


def _run(python: str, program: str, n: int, path: str | None,
         tool: list[str]) -> subprocess.CompletedProcess[str]:
    """Runs program with n iterations under tool (a command prefix: callgrind,
    or none); raises RuntimeError with its error output unless it exits 0."""
    # The tree to import resil from goes first on sys.path; the run starts
    # in an empty directory, since `python -c` puts the working directory
    # ahead of PYTHONPATH.
    env = dict(os.environ, PYTHONHASHSEED="0")
    env["PYTHONPATH"] = (path or str(REPO)) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as empty:
        out = subprocess.run(
            [*tool, python,
             "-c", program + f"\nassert resil.__file__.startswith({str(Path(path or REPO)) !r})"
             if "import resil" in program else program, str(n)],
            capture_output=True, text=True, env=env, timeout=900, cwd=empty)
    if out.returncode != 0:
        what = "callgrind run" if tool else "run"
        raise RuntimeError(f"{what} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return out


def _instructions(python: str, program: str, n: int, path: str | None) -> int:
    out = _run(python, program, n, path, _CALLGRIND)
    found = _COLLECTED.findall(out.stderr)
    if not found:
        raise RuntimeError(f"no 'Collected' line in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found[-1])


def per_op(case: Case, n1: int, n2: int, path: str | None = None) -> float | None:
    """Instructions per operation of case; None in a ``--smoke`` run, which
    runs its program once with n2 iterations, without valgrind."""
    program = _program(case)
    if _harness.SMOKE:
        _run(sys.executable, program, n2, path, [])
        return None
    i1 = _instructions(sys.executable, program, n1, path)
    i2 = _instructions(sys.executable, program, n2, path)
    return (i2 - i1) / (n2 - n1)


def _available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _redis_case_absent(case: Case) -> str | None:
    """Runs a redis case's set-up here once (with the server main() started):
    None when it works, else what this build lacks (its constructor's
    TypeError for a cluster part it does not have)."""
    ns: dict[str, Any] = {}
    try:
        exec(compile(case.setup, f"<probe {case.name}>", "exec"), ns)
    except TypeError as exc:
        if any(words in str(exc) for words in ("keyword argument", "not available")):
            return str(exc)
        raise
    finally:
        for value in ns.values():
            if type(value).__name__ == "RedisBackend":
                value.close()
    return None


def _compared_per_op(case: Case, n1: int, n2: int, path: str) -> float | None:
    """The compared build's figure, or None when that build predates the
    case's component (its program fails on a name or an argument resil did
    not have, or on an option it refused as not available yet) or in a
    ``--smoke`` run."""
    try:
        return per_op(case, n1, n2, path)
    except RuntimeError as exc:
        if any(words in str(exc) for words in ("has no attribute", "ImportError",
                                                "unexpected keyword argument",
                                                "invalid keyword argument",
                                                "not available yet")):
            return None
        raise


def main(argv: list[str] | None = None) -> int:
    ap = _harness.arg_parser(__doc__)
    ap.add_argument("--n1", type=int, default=None, help="iterations of the short run")
    ap.add_argument("--n2", type=int, default=None, help="iterations of the long run")
    ap.add_argument("--compare", metavar="DIR", default=None,
                    help="also run with DIR first on sys.path (another build of resil)")
    ap.add_argument("--only", metavar="GROUP", action="append", default=None,
                    help="run only this group of cases (repeatable)")
    args = _harness.parse_args(ap, argv)
    if shutil.which("valgrind") is None and not args.smoke:
        _harness.eprint("valgrind is not installed (Debian: apt-get install valgrind)")
        return 2
    # A smoke run's one run per program: 200 iterations, so that the cases of
    # 100 tasks at a time run twice.
    n1 = args.n1 or _harness.by_mode(args, 2_000, 200, 100)
    n2 = args.n2 or _harness.by_mode(args, 22_000, 1_200, 200)
    cases = [c for c in CASES if (not c.needs or _available(c.needs))
             and (args.only is None or c.group in args.only or c.group == "bare")]
    skipped = [c.name for c in CASES if c.needs and not _available(c.needs)]
    server = None
    absent: list[str] = []
    if any(c.redis for c in cases):
        if _redis_server.redis_server_path() is None:
            skipped += [c.name + " (redis-server)" for c in cases if c.redis]
            cases = [c for c in cases if not c.redis]
        else:
            server = _redis_server.LoopbackRedis()
            os.environ[_REDIS_PORT] = str(server.port)
            for c in [c for c in cases if c.redis]:
                why = _redis_case_absent(c)
                if why is not None:
                    _harness.eprint(f"left out {c.name}: {why}")
                    absent.append(c.name)
                    cases.remove(c)
    started = time.monotonic()
    # The extension this interpreter loads (the tree may hold other versions' builds).
    built = REPO / "resil" / ("_resil" + sysconfig.get_config_var("EXT_SUFFIX"))
    ext = built if built.exists() else None
    facts = _harness.machine_facts(["resil", "pybreaker", "circuitbreaker", "tenacity",
                                    "cachetools"])
    if args.smoke:
        facts.append(("tool", "none (--smoke: each program runs once, uncounted)"))
    else:
        facts.append(("tool", subprocess.run(["valgrind", "--version"], capture_output=True,
                                             text=True).stdout.strip() + " --tool=callgrind"))
    if ext is not None:
        facts.append(("resil extension", _harness.file_fact(ext, "built")))
    if args.smoke:
        facts.append(("run", f"N = {n2:,} iterations" + _harness.mode_label(args)))
    else:
        facts.append(("run", f"N1 = {n1:,}, N2 = {n2:,} iterations; instructions per "
                             f"operation = (I(N2) - I(N1)) / (N2 - N1)"
                             + _harness.mode_label(args)))
    _harness.print_facts("Instructions per operation (callgrind)", facts)

    jobs = [(c, None) for c in cases]
    if args.compare:
        jobs += [(c, str(Path(args.compare).resolve())) for c in cases if not c.needs]
    # valgrind is single-threaded: one run per core.
    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            futures = {job: pool.submit(per_op if job[1] is None else _compared_per_op,
                                        job[0], n1, n2, job[1]) for job in jobs}
            results = {job: f.result() for job, f in futures.items()}
    finally:
        if server is not None:
            server.close()

    head = ["group", "operation", "instructions/op"]
    if args.compare:
        head += ["compared build", "this / compared"]
    rows = []
    for c in cases:
        this = results[(c, None)]
        row = [c.group, c.name, "ran, not counted" if this is None else f"{this:,.0f}"]
        if args.compare:
            other = results.get((c, str(Path(args.compare).resolve())))
            row += ([f"{other:,.0f}", f"{this / other:.3f}"] if other and this is not None
                    else ["", ""])
        rows.append(tuple(row))
    right = range(2, len(head))
    print(_harness.text_table("instructions per operation", [], head, rows, right))
    print()
    notes = ("Instruction counts are repeatable for one binary and input, whatever else the "
             "machine runs; they are not time (a cache miss or a branch mispredict costs "
             "more than an instruction). The bare rows are the floor every Python-level "
             "operation pays: the loop, and a Python function call. A program's exit frees what "
             "it made, and that cost grows with N too: a Deduplicator build whose table "
             "clustered sequential int keys (commit ed8bdaf and earlier) spends most of its "
             "dedup row clearing them.")
    if skipped:
        notes += f" Left out (peer not installed): {', '.join(skipped)}."
    if absent:
        notes += f" Left out (not available in this build): {', '.join(absent)}."
    if args.compare:
        rev = subprocess.run(["git", "-C", args.compare, "log", "-1", "--format=%h (%cs)"],
                             capture_output=True, text=True).stdout.strip()
        notes += (f" The compared build is commit {rev or args.compare}, its extension "
                  f"built in place and run by the same interpreter.")
    table = _harness.markdown_table("Instructions per operation", [], head, rows, right)
    _harness.finish(facts, script=__file__, heading="## Instructions per operation "
                    "(bench_instructions.py)", tables=[table], notes=notes,
                    write=args.write_results, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
