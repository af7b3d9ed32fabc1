"""End to end: a real multi-worker server (uvicorn --workers 4, running the
hand-written ASGI app in tests/e2e_app.py on a free 127.0.0.1 port) calls
a dependency the test controls (a small HTTP server in a thread of the test
process, told to succeed, fail or hang, counting the calls it receives)
through a circuit breaker and a rate limiter kept in a SharedRegion, so the
four workers behave as one service:

- a dependency that starts failing is called failure_threshold times by
  the whole host before the breaker trips, and then at most
  half_open_probes times per HALF_OPEN episode; with objects of each
  worker's own (E2E_REGION empty) it is called about that many times by
  every worker;
- the requests the host admits stay within the shared limit's GCRA bound,
  where objects of each worker's own admit more than the bound;
- a worker killed with SIGKILL mid-load loses no count, and a probe permit
  held by a killed worker comes back after the region's lease.

``python -m resil shared`` (resil/cli/shared.py), the demo of the same
sharing between worker processes, is run here too.

Loopback only; every server is started in its own process group and that
group is killed when the test ends, however it ends.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import resil
from resil.cli import shared as shared_demo

HERE = Path(__file__).resolve().parent
WORKERS = 4
HOST = "127.0.0.1"
START_TIMEOUT = 30.0     # seconds for uvicorn and its workers to come up
REQUEST_TIMEOUT = 10.0   # seconds for one request to the server

# The objects' parameters (the app reads them from its environment).
THRESHOLD, PROBES, COOLDOWN = 5, 2, 2.0
LEASE = 1.0  # the region's lease: a dead worker's probe comes back after it


# -- the dependency ---------------------------------------------------------

class Dependency:
    """An HTTP server on a free loopback port, in a thread of the test
    process: every request counts as a call, recorded with the pid of the
    worker that made it (its x-worker header); ``mode`` says how it answers:
    "ok" (200), "fail" (500) or "hang" (no answer until ``release()``,
    then 500)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls: list[tuple[float, int, str]] = []  # (time, worker pid, mode)
        self.lock = threading.Lock()
        self.hanging = threading.Event()  # set: a call is hanging now
        self._release = threading.Event()
        dependency = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with dependency.lock:
                    mode = dependency.mode
                    dependency.calls.append(
                        (time.monotonic(), int(self.headers.get("x-worker", "0")), mode))
                if mode == "hang":
                    dependency.hanging.set()
                    dependency._release.wait(30.0)
                status = 200 if mode == "ok" else 500
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.address = f"{HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def set(self, mode: str) -> None:
        with self.lock:
            self.mode = mode

    def count(self, since: float = 0.0) -> int:
        with self.lock:
            return sum(1 for t, _, _ in self.calls if t >= since)

    def by_worker(self, since: float = 0.0) -> Counter[int]:
        with self.lock:
            return Counter(pid for t, pid, _ in self.calls if t >= since)

    def release(self) -> None:
        self._release.set()

    def __enter__(self) -> Dependency:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


# -- the server -------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes, from /proc."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    found += [int(p) for p in f.read().split()]
    return found


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


@dataclass
class Server:
    """uvicorn --workers 4 running tests/e2e_app.py on ``port``."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def workers(self) -> list[int]:
        """The live worker processes: the master's children that run a
        multiprocessing spawn (not its resource tracker, if any)."""
        return sorted(pid for pid in children(self.process.pid)
                      if b"spawn_main" in cmdline(pid))

    def get(self, path: str, timeout: float = REQUEST_TIMEOUT) -> tuple[int, dict[str, Any]]:
        """One request on a new connection (so the workers' accept loops
        share the requests): the status and the JSON body."""
        status, _, body = self.get_raw(path, timeout)
        return status, json.loads(body)

    def get_raw(self, path: str, timeout: float = REQUEST_TIMEOUT) -> tuple[int, int, bytes]:
        """One request on a new connection: the status, the pid of the
        worker that answered and the body."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, int(response.getheader("x-worker", "0")), response.read()
        finally:
            conn.close()

    def scrape(self, least: int = 2, tries: int = 100) -> dict[int, str]:
        """/metrics as answered by each worker, asked until ``least``
        different workers have answered (or ``tries`` requests)."""
        pages: dict[int, str] = {}
        for _ in range(tries):
            status, worker, body = self.get_raw("/metrics")
            assert status == 200
            pages[worker] = body.decode()
            if len(pages) >= least:
                break
        return pages


@contextlib.contextmanager
def serve(tmp_path: Path, dependency: Dependency, region: Path | None, *,
          rate: float = 1e9, burst: int = 10**9) -> Iterator[Server]:
    """Starts uvicorn with WORKERS workers in a new process group, waits
    until every worker has started its application, yields, and kills the
    group however the block ends."""
    env = dict(os.environ, E2E_REGION=str(region or ""), E2E_DEPENDENCY=dependency.address,
               E2E_RATE=str(rate), E2E_BURST=str(burst), E2E_THRESHOLD=str(THRESHOLD),
               E2E_PROBES=str(PROBES), E2E_COOLDOWN=str(COOLDOWN))
    for attempt in range(3):  # a free port taken by someone else before uvicorn binds it
        port = free_port()
        log = tmp_path / f"uvicorn-{port}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "e2e_app:app", "--app-dir", str(HERE),
                 "--host", HOST, "--port", str(port), "--workers", str(WORKERS),
                 "--no-access-log", "--log-level", "info", "--timeout-graceful-shutdown", "1"],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            server = Server(process, port, log)
            if _wait_started(server):
                yield server
                return
        finally:
            _kill_group(process)
        if b"address already in use" not in log.read_bytes().lower():
            break
    pytest.fail("uvicorn did not start; its log:\n" + log.read_text(errors="replace"))


def _wait_started(server: Server) -> bool:
    """True once every worker logged that its application started and the
    port answers; False if uvicorn exited first."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        if server.log.read_bytes().count(b"Application startup complete") >= WORKERS:
            with contextlib.suppress(OSError):
                server.get("/stats", timeout=2.0)
                return True
        time.sleep(0.05)
    raise AssertionError(f"uvicorn did not start {WORKERS} workers in {START_TIMEOUT:g} s; "
                         "its log:\n" + server.log.read_text(errors="replace"))


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def new_region(tmp_path: Path, name: str) -> tuple[Path, resil.SharedRegion]:
    path = tmp_path / name
    return path, resil.SharedRegion(path, lease=LEASE)


# -- load -------------------------------------------------------------------

@dataclass
class Load:
    """What clients saw: statuses and the workers that answered."""

    statuses: Counter[int] = field(default_factory=Counter)
    workers: Counter[int] = field(default_factory=Counter)   # answered /call, by pid
    admitted_by: Counter[int] = field(default_factory=Counter)  # past the limiter, by pid
    errors: int = 0      # requests with no answer (their worker was killed)
    started: float = 0.0
    ended: float = 0.0

    @property
    def admitted(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 429)


def hammer(server: Server, seconds: float, clients: int,
           during: Callable[[], None] | None = None) -> Load:
    """``clients`` threads send /call requests back to back for ``seconds``;
    ``during`` runs in this thread half way through."""
    load = Load()
    lock = threading.Lock()
    load.started = time.monotonic()
    end = load.started + seconds

    def client(_: int) -> None:
        while time.monotonic() < end:
            try:
                status, body = server.get("/call")
            except (OSError, http.client.HTTPException):
                with lock:
                    load.errors += 1
                continue
            with lock:
                load.statuses[status] += 1
                load.workers[body["worker"]] += 1
                if status != 429:
                    load.admitted_by[body["worker"]] += 1

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, i) for i in range(clients)]
        if during is not None:
            time.sleep(seconds / 2)
            during()
        for f in futures:
            f.result()
    load.ended = time.monotonic()
    return load


def metric(page: str, series: str) -> float:
    """The value of ``series`` (name and labels, as written) in an exposition."""
    values = [float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
              if line.startswith(series + " ")]
    assert len(values) == 1, (series, page)
    return values[0]


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Prints a figure past pytest's capture, so a run shows it."""
    with capsys.disabled():
        print("\n" + text, flush=True)


# -- the tests --------------------------------------------------------------

RATE, BURST, SECONDS = 50.0, 10, 2.0


def test_the_host_admits_within_the_shared_limit(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path, region = new_region(tmp_path, "limit")
    limiter = resil.RateLimiter(RATE, burst=BURST, name="api", shared=region)
    with Dependency() as dependency:
        with serve(tmp_path, dependency, path, rate=RATE, burst=BURST) as server:
            shared = hammer(server, SECONDS, clients=8)
            pages = server.scrape()
        with serve(tmp_path, dependency, None, rate=RATE, burst=BURST) as server:
            own = hammer(server, SECONDS, clients=8)
    # The clients' span holds the server's: the bound over it is the larger.
    bound = BURST + RATE * (shared.ended - shared.started)
    report(capsys, f"rate limit {RATE:g}/s, burst {BURST}, {SECONDS:g} s of load from 8 clients: "
                   f"shared: {shared.admitted} admitted of {sum(shared.statuses.values())} "
                   f"(bound {bound:.0f}), by worker {sorted(shared.admitted_by.values())}; "
                   f"each worker its own: {own.admitted} admitted, by worker "
                   f"{sorted(own.admitted_by.values())}")
    assert shared.errors == 0 and own.errors == 0
    assert len(shared.admitted_by) >= 2  # several workers admitted requests...
    assert shared.admitted <= bound      # ...and all of them together kept the bound
    assert shared.statuses[429] > 0      # the clients asked for more than the limit
    # The region's counts are exactly what the clients were told.
    s = limiter.stats()
    assert (s["admitted"], s["rejected"]) == (shared.admitted, shared.statuses[429])
    assert s["admitted"] == shared.statuses[200]  # the dependency answered every one
    # Any worker's /metrics shows the host's totals, not its own.
    assert len(pages) >= 2
    for page in pages.values():
        assert metric(page, 'resil_rate_limiter_decisions_total{limiter="api",'
                            'outcome="admitted"}') == shared.admitted
        assert metric(page, 'resil_rate_limiter_decisions_total{limiter="api",'
                            'outcome="rejected"}') == shared.statuses[429]
    assert max(shared.admitted_by.values()) < shared.admitted
    # Without the region each worker has the whole limit: more than the bound.
    own_bound = BURST + RATE * (own.ended - own.started)
    assert len(own.admitted_by) >= 2 and own.admitted > own_bound


def test_a_worker_killed_mid_load_loses_no_count(tmp_path: Path) -> None:
    path, region = new_region(tmp_path, "kill")
    limiter = resil.RateLimiter(RATE, burst=BURST, name="api", shared=region)
    breaker = host_breaker(region)
    killed: list[int] = []
    with Dependency() as dependency:
        with serve(tmp_path, dependency, path, rate=RATE, burst=BURST) as server:
            before = server.workers()
            assert len(before) == WORKERS

            def kill() -> None:
                victim = before[0]
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

            load = hammer(server, SECONDS, clients=8, during=kill)
            # uvicorn starts a worker in the dead one's place; it serves from
            # the same region.
            deadline = time.monotonic() + START_TIMEOUT
            while server.log.read_bytes().count(b"Application startup complete") <= WORKERS:
                assert time.monotonic() < deadline, "uvicorn did not replace the killed worker"
                time.sleep(0.05)
            assert killed[0] not in server.workers() and len(server.workers()) == WORKERS
            after = hammer(server, 1.0, clients=4)
            assert set(after.workers) - set(before)  # the new worker answered too
        called = dependency.count()
    s = limiter.stats()
    assert region.check() == []
    admitted = load.admitted + after.admitted
    rejected = load.statuses[429] + after.statuses[429]
    # Every answer the clients got is counted; a request cut off by the kill
    # may or may not have been decided before it died, and nothing else.
    assert s["admitted"] >= admitted and s["rejected"] >= rejected
    assert s["admitted"] + s["rejected"] <= admitted + rejected + load.errors + after.errors
    assert after.errors == 0
    # The host's bound held across the kill and the restart.
    assert s["admitted"] <= BURST + RATE * (time.monotonic() - load.started)
    # The breaker counted every success a client saw, and the dependency
    # saw those calls; a call cut off by the kill may have reached it
    # without its outcome being recorded, and nothing else.
    b = breaker.stats()
    ok = load.statuses[200] + after.statuses[200]
    assert ok == admitted  # the dependency was healthy throughout
    assert ok <= b["successes"] <= ok + load.errors
    assert b["successes"] <= called <= b["successes"] + load.errors
    assert b["failures"] == 0 and b["state"] == resil.State.CLOSED


def host_breaker(region: resil.SharedRegion) -> resil.CircuitBreaker:
    """The test's handle on the breaker the workers share."""
    return resil.CircuitBreaker("dependency", failure_threshold=THRESHOLD,
                                half_open_probes=PROBES, cooldown=COOLDOWN,
                                cooldown_multiplier=1.0, adaptive=False, shared=region)


@dataclass
class Episode:
    """What the dependency received once it started failing."""

    tripping: Counter[int]   # calls by worker pid while the requests came one at a time
    probing: Counter[int]    # calls by worker pid while 4 clients sent requests at once
    served_one: Counter[int]  # requests answered one at a time, by worker pid
    served: Counter[int]     # requests answered in all, by worker pid

    @property
    def calls(self) -> int:
        return sum(self.tripping.values()) + sum(self.probing.values())


def failing_episode(server: Server, dependency: Dependency, clients: int = 1) -> Episode:
    """The dependency fails from now on. First requests until the breakers
    trip: 8 per worker one at a time (clients=1), or `clients` at once for a
    quarter of a cooldown; then 4 clients at once until 1.5 cooldowns have
    passed: one HALF_OPEN episode after the trip, whose probes fail."""
    dependency.set("fail")
    since = time.monotonic()
    served: Counter[int] = Counter()
    if clients > 1:  # several at once: on an idle host one worker may take every connection
        trip = hammer(server, 0.25 * COOLDOWN, clients=clients)
        assert trip.errors == 0 and set(trip.statuses) <= {502, 503}
        served = trip.workers
    for i in range(8 * WORKERS if clients == 1 else 0):
        status, body = server.get("/call")
        assert status in (502, 503), body
        served[body["worker"]] += 1
    middle = time.monotonic()
    assert middle - since < COOLDOWN, "too slow: a HALF_OPEN came before the load"
    load = hammer(server, since + 1.5 * COOLDOWN - middle, clients=4)
    assert load.errors == 0 and set(load.statuses) <= {502, 503}
    tripping = dependency.by_worker(since) - dependency.by_worker(middle)
    return Episode(tripping, dependency.by_worker(middle), served, served + load.workers)


def test_a_failing_dependency_is_called_threshold_plus_probes_times_by_the_host(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, region = new_region(tmp_path, "breaker")
    breaker = host_breaker(region)
    with Dependency() as dependency:
        with serve(tmp_path, dependency, path) as server:
            shared = failing_episode(server, dependency)
            s = breaker.stats()
            pages = server.scrape()
            # The dependency is back: after the cooldown, PROBES probes close it.
            dependency.set("ok")
            deadline = time.monotonic() + 3 * COOLDOWN
            while breaker.state != resil.State.CLOSED:
                assert time.monotonic() < deadline, breaker.stats()
                server.get("/call")
                time.sleep(0.02)
        with serve(tmp_path, dependency, None) as server:
            own = failing_episode(server, dependency, clients=4)
    episodes = s["transitions"]["HALF_OPEN"]
    report(capsys, f"a failing dependency, failure_threshold={THRESHOLD}, half_open_probes="
                   f"{PROBES}: shared breaker: {shared.calls} calls from the host "
                   f"({sum(shared.tripping.values())} to trip, {sum(shared.probing.values())} "
                   f"probes in {episodes} HALF_OPEN episode(s)), by worker "
                   f"{sorted((shared.tripping + shared.probing).values())}; a breaker per "
                   f"worker: {own.calls} calls ({sum(own.tripping.values())} to trip, "
                   f"{sum(own.probing.values())} probes), by worker "
                   f"{sorted((own.tripping + own.probing).values())}")
    # Several workers served the failing requests (on an idle host the kernel
    # may hand every sequential connection to one worker; the 4 clients at
    # once reach the others), and none of them called the dependency past
    # the host's bound below: a breaker per worker would have let each of
    # them call it THRESHOLD times...
    assert len(shared.served) >= 2
    # ...and all of them together tripped one breaker after THRESHOLD failures,
    assert sum(shared.tripping.values()) == THRESHOLD
    assert s["transitions"]["OPEN"] == 1 + episodes and s["failures"] == shared.calls
    # then let at most PROBES probes through per HALF_OPEN episode.
    assert episodes >= 1
    assert sum(shared.probing.values()) <= PROBES * episodes
    assert shared.calls <= THRESHOLD + PROBES * episodes
    # Any worker's /metrics shows the host's breaker.
    assert len(pages) >= 2
    for page in pages.values():
        assert metric(page, 'resil_circuit_breaker_failures_total{endpoint="dependency"}') \
            == shared.calls
        assert metric(page, 'resil_circuit_breaker_state{endpoint="dependency"}') \
            == resil.State.OPEN
    # A breaker per worker: each worker called the dependency for each of
    # the first THRESHOLD failing requests it served, before its own trip,
    # and for at most 3 more already in flight (4 clients at once).
    for pid, n in own.served_one.items():
        assert min(n, THRESHOLD) <= own.tripping[pid] <= min(n, THRESHOLD + 3), (pid, n, own)
    assert sum(1 for n in own.served_one.values() if n >= THRESHOLD) >= 2
    assert sum(own.tripping.values()) > THRESHOLD and own.calls > shared.calls


def test_a_probe_held_by_a_killed_worker_comes_back_after_the_lease(tmp_path: Path) -> None:
    path, region = new_region(tmp_path, "probe")
    breaker = host_breaker(region)
    with Dependency() as dependency, ThreadPoolExecutor(PROBES) as pool:
        with serve(tmp_path, dependency, path) as server:
            dependency.set("fail")
            deadline = time.monotonic() + 5.0
            while breaker.state != resil.State.OPEN:
                assert time.monotonic() < deadline, breaker.stats()
                server.get("/call")
            # The dependency hangs: after the cooldown, the first PROBES
            # requests take the probes and wait on it; the next is rejected.
            dependency.set("hang")
            time.sleep(COOLDOWN)
            since = time.monotonic()
            stuck = [pool.submit(server.get, "/call") for _ in range(PROBES)]
            deadline = time.monotonic() + 5.0
            while dependency.count(since) < PROBES:
                assert time.monotonic() < deadline, "the probes did not reach the dependency"
                time.sleep(0.01)
            assert breaker.stats()["half_open_probes_granted"] == PROBES
            assert server.get("/call")[0] == 503
            # Kill the workers that hold them.
            holders = set(dependency.by_worker(since))
            assert holders <= set(server.workers())
            for pid in holders:
                os.kill(pid, signal.SIGKILL)
            for f in stuck:
                with pytest.raises((OSError, http.client.HTTPException)):
                    f.result()
            # Once the lease has passed, the probes are taken back: the
            # dependency (healthy again) is probed and the breaker closes.
            dependency.set("ok")
            deadline = since + LEASE + 10.0
            while breaker.state != resil.State.CLOSED:
                assert time.monotonic() < deadline, breaker.stats()
                with contextlib.suppress(OSError, http.client.HTTPException):
                    server.get("/call")
                time.sleep(0.05)
            assert time.monotonic() - since >= LEASE  # not before: its holder might live
            assert server.get("/call")[0] == 200
    assert region.check() == []


def test_python_m_resil_shared_shows_one_breaker_in_every_worker() -> None:
    workers = 3
    proc = subprocess.run([sys.executable, "-m", "resil", "shared", "--workers", str(workers)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 100 for line in lines)
    lead = "the code behind this output: "
    assert lines[-1].startswith(lead)
    assert os.path.samefile(lines[-1][len(lead):], shared_demo.__file__)
    # The table: a row a second, a "calls:rejected" cell per worker.
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["time", "phase"])
    names = lines[head].split()
    assert names[2:2 + workers] == [f"w{i + 1}" for i in range(workers)]
    end = lines.index("", head)
    rows = [dict(zip(names, line.split())) for line in lines[head + 1:end]]
    assert [int(r["time"]) for r in rows] == list(range(1, shared_demo.SECONDS + 1))
    open_rows = [r for r in rows if r["state"] == "OPEN"]
    assert open_rows, "the breaker never opened"
    # An open breaker rejects in every worker...
    for i in range(1, workers + 1):
        assert sum(int(r[f"w{i}"].split(":")[1]) for r in open_rows) > 0
    # ...and the host's counts add up: every failure of every worker counted
    # once, THRESHOLD of them to trip and at most the probes after.
    last = rows[-1]
    threshold = shared_demo.BREAKER["failure_threshold"]
    probes = shared_demo.BREAKER["half_open_probes"]
    trips = int(last["trips"])
    assert trips >= 1 and last["state"] == "CLOSED"
    assert threshold < int(last["fails"]) <= threshold + probes * trips
    summary = " ".join(lines[end:])
    assert f"the whole host called it {last['fails']} times" in summary
    assert sum(int(r["adm/s"]) for r in rows) <= (shared_demo.LIMIT["burst"]
                                                 + shared_demo.LIMIT["rate"] * len(rows))


@pytest.mark.parametrize("argv", [["--workers", "0"], ["--workers", "6"], ["--workers", "x"]])
def test_python_m_resil_shared_refuses_bad_options(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        shared_demo.main(argv)
    assert exit_.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_python_m_resil_help_lists_the_shared_command(capsys: pytest.CaptureFixture[str]) -> None:
    from resil import __main__ as cli

    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert f"  shared  {shared_demo.SUMMARY}\n" in text
    assert "options: [--workers N]" in text
    assert "--workers N" in shared_demo.build_parser().format_help()


def test_python_m_resil_shared_ends_on_ctrl_c_and_leaves_nothing_behind() -> None:
    # `python -m resil shared --workers 2` as started from a terminal, where
    # Ctrl-C interrupts it, even when this test runs as a background job
    # (which ignores SIGINT, and so would its children).
    command = ("import runpy, signal, sys;"
               " signal.signal(signal.SIGINT, signal.default_int_handler);"
               " sys.argv = ['resil', 'shared', '--workers', '2'];"
               " runpy.run_module('resil', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or lines[-1].split()[:1] != ["1"]:  # the first row: workers running
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line.rstrip("\n"))
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == 130 and err.strip() == "interrupted", err
    region = next(line.split()[-1] for line in lines if "region file" in line)
    assert not os.path.exists(region) and not os.path.exists(os.path.dirname(region))
    deadline = time.monotonic() + 5.0
    while True:  # the workers, in the command's process group, ended too
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "a worker outlived the command"
        time.sleep(0.05)
