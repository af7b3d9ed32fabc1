"""Helpers shared by several test files."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def clean_copy(dest: Path) -> Path:
    """Copies what a fresh clone would have: the files git tracks, plus the
    untracked ones it does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@contextlib.contextmanager
def switch_interval(seconds: float) -> Iterator[None]:
    """Runs the block with ``sys.setswitchinterval(seconds)``: threads trade
    the interpreter lock that often, so check-then-act races show up."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def run_threads(target: Callable[[int], None], n: int, *, switch: float = 1e-5) -> None:
    """Runs ``target(i)`` for i in range(n), each in its own thread, under
    switch_interval(switch), and returns once all have ended."""
    with switch_interval(switch):
        threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()


def kill_when_running(ctx: Any, target: Callable[..., object], args: tuple[Any, ...],
                      delay: float) -> None:
    """Runs ``target(*args, ready)`` in a child of ``ctx`` until ``delay``
    seconds after it set the event ``ready``, then kills it with SIGKILL
    (also when the wait failed) and reaps it; RuntimeError unless it got
    ready and died of the signal."""
    ready = ctx.Event()
    proc = ctx.Process(target=target, args=(*args, ready))
    proc.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the child never got ready")
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
    if proc.exitcode != -signal.SIGKILL:
        raise RuntimeError(f"the child ended with {proc.exitcode}, not by SIGKILL")


def kill_at_random_moments(ctx: Any, target: Callable[..., None],
                           args: Callable[[int], tuple[Any, ...]],
                           rounds: int, seed: int) -> Iterator[int]:
    """For each round, kill_when_running(ctx, target, args(round), d) with d
    drawn from 0 to 10 ms; yields the round."""
    rng = random.Random(seed)
    for round_ in range(rounds):
        kill_when_running(ctx, target, args(round_), rng.uniform(0, 0.01))
        yield round_


class FailingClock:
    """A Python clock reading 1.0 s until ``fail`` is set; then ``now()``
    raises ZeroDivisionError("clock")."""

    fail = False

    def now(self) -> float:
        if self.fail:
            raise ZeroDivisionError("clock")
        return 1.0


_LEAK_TAIL = """
import gc, sys, tracemalloc
churn(WARM)
gc.collect()
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
blocks = sys.getallocatedblocks()
churn(ROUNDS)
gc.collect()
grew = tracemalloc.get_traced_memory()[0] - before
print(grew, sys.getallocatedblocks() - blocks)
"""


def leak_growth(churn_src: str, warm: int, rounds: int) -> tuple[int, int]:
    """Runs ``churn_src`` (which defines ``churn(n)``) in a fresh interpreter:
    ``churn(warm)``, then ``churn(rounds)`` measured. Returns the bytes
    tracemalloc saw grow and the allocated blocks added over the measured part."""
    script = (textwrap.dedent(churn_src)
              + _LEAK_TAIL.replace("WARM", str(warm)).replace("ROUNDS", str(rounds)))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    return int(out[0]), int(out[1])
