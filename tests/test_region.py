"""resil.SharedRegion: creating and opening a region file, its checks of a
foreign, truncated, damaged or other-version file (each a RegionError
naming the path, never a crash), full regions and directories, the
argument checks, and locks whose holder was killed (the next process
recovers and nothing hangs). Real processes (forkserver) share the file.
"""

from __future__ import annotations

import os
import pickle
import random
import signal
import struct
import time
from pathlib import Path
from typing import Any

import pytest

import resil

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    import region_workers
except ModuleNotFoundError:  # pragma: no cover - tests/ made a package
    from tests import region_workers  # type: ignore[no-redef]

HEADER = 31872  # bytes of the header and directory (the first object's offset)




def _new(tmp_path: Path, name: str = "r", **kw: Any) -> resil.SharedRegion:
    return resil.SharedRegion(tmp_path / name, **kw)


# ---- creating and opening ------------------------------------------------------

def test_a_new_region_and_a_second_handle_on_it(tmp_path: Path) -> None:
    region = _new(tmp_path, size=1 << 16, lease=2.5)
    assert region.stats() == {"path": str(tmp_path / "r"), "bytes": 1 << 16,
                              "used_bytes": HEADER, "objects": 0, "lease": 2.5}
    assert os.path.getsize(tmp_path / "r") == 1 << 16
    assert oct(os.stat(tmp_path / "r").st_mode & 0o777) == "0o600"
    resil.RateLimiter(5, name="api", max_keys=512, shared=region)
    # opening it again: the file's size and lease, whatever is passed
    again = resil.SharedRegion(str(tmp_path / "r"), size=1 << 20, lease=9.0)
    assert again.size == 1 << 16 and again.lease == 2.5
    assert again.objects() == [{"type": "RateLimiter", "name": "api", "parameters": {
        "rate": 5.0, "per": 1.0, "burst": 5, "max_keys": 512}}]
    assert again.stats()["objects"] == 1
    assert again.stats()["used_bytes"] > HEADER
    assert region.check() == [] and again.check() == []
    assert "objects=1" in repr(again) and str(tmp_path / "r") in repr(again)


def test_close_and_the_context_manager(tmp_path: Path) -> None:
    with _new(tmp_path) as region:
        limiter = resil.RateLimiter(5, name="api", shared=region)
        assert limiter.try_acquire()
        assert not region.closed
    assert region.closed and "closed" in repr(region)
    region.close()  # twice: nothing
    for call in (limiter.try_acquire, limiter.stats, lambda: limiter.try_acquire(key="k"),
                 lambda: limiter.retry_after(key="k"), region.stats, region.objects,
                 region.check, lambda: resil.RateLimiter(5, name="api", shared=region)):
        with pytest.raises(resil.RegionError, match="closed"):
            call()
    with pytest.raises(resil.RegionError, match="closed"):
        with region:
            pass


def test_pickling_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="open the same path"):
        pickle.dumps(_new(tmp_path))


def test_region_error_is_a_resil_error() -> None:
    assert issubclass(resil.RegionError, resil.ResilError)
    assert resil.RegionError.__module__ == "resil"


@pytest.mark.parametrize("kwargs, error, words", [
    ({"path": 3}, TypeError, "path must be"),
    ({"path": None}, TypeError, "path must be"),
    ({"size": 1.5}, TypeError, "size"),
    ({"size": True}, TypeError, "size"),
    ({"size": "1"}, TypeError, "size"),
    ({"size": 65535}, ValueError, "size"),
    ({"size": 2**40 + 1}, ValueError, "size"),
    ({"size": 10**400}, ValueError, "size"),
    ({"size": -1}, ValueError, "size"),
    ({"lease": 0}, ValueError, "lease"),
    ({"lease": 1e-12}, ValueError, r"lease must be .* in \[1e-9, "),  # rounds to 0 ns
    ({"lease": -1.0}, ValueError, "lease"),
    ({"lease": float("nan")}, ValueError, "lease"),
    ({"lease": float("inf")}, ValueError, "lease"),
    ({"lease": True}, TypeError, "lease"),
    ({"lease": "1"}, TypeError, "lease"),
])
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], error: type, words: str) -> None:
    kwargs.setdefault("path", tmp_path / "r")
    with pytest.raises(error, match=words):
        resil.SharedRegion(**kwargs)
    assert not (tmp_path / "r").exists()


def test_paths_as_bytes_and_pathlike(tmp_path: Path) -> None:
    resil.SharedRegion(os.fsencode(tmp_path / "r")).close()
    assert resil.SharedRegion(tmp_path / "r").path == str(tmp_path / "r")
    with pytest.raises(ValueError, match="null"):
        resil.SharedRegion(str(tmp_path / "a\0b"))


def test_a_missing_directory_is_a_region_error(tmp_path: Path) -> None:
    with pytest.raises(resil.RegionError, match="open failed"):
        resil.SharedRegion(tmp_path / "no" / "r")


# ---- files that are not sound regions ------------------------------------------------

def _sound(tmp_path: Path) -> bytes:
    region = _new(tmp_path, "sound", size=1 << 17, lease=0.2)
    resil.RateLimiter(5, name="a", shared=region)
    resil.RateLimiter(3, burst=7, name="b", max_keys=16, shared=region)
    region.close()
    return (tmp_path / "sound").read_bytes()


def _refused(path: Path, data: bytes, words: str) -> None:
    path.write_bytes(data)
    with pytest.raises(resil.RegionError, match=words) as info:
        resil.SharedRegion(path)
    assert str(path) in str(info.value)


def test_foreign_truncated_and_other_version_files(tmp_path: Path) -> None:
    good = _sound(tmp_path)
    bad = tmp_path / "bad"
    _refused(bad, os.urandom(100_000), "not a resil region")
    _refused(bad, b"PK\x03\x04" + bytes(70_000), "not a resil region")
    _refused(bad, b"#!/bin/sh\n", "not a resil region")
    _refused(bad, b"RESIL", "truncated or too small")
    other = bytearray(good)
    other[8:12] = struct.pack("<I", struct.unpack("<I", good[8:12])[0] + 1)
    _refused(bad, bytes(other), "another layout version")
    # truncated at every 4 KiB boundary
    for end in range(4096, len(good), 4096):
        _refused(bad, good[:end], "truncated|not a resil region")
    # grown past what the header says
    _refused(bad, good + bytes(4096), "corrupt")
    # a directory entry pointing outside the region
    broken = bytearray(good)
    entry = 128  # the first directory entry
    offset = entry + 4 + 4 + 64 + 20 * 8  # after its type, name and 20 parameters
    broken[offset: offset + 8] = struct.pack("<Q", 2**63)
    _refused(bad, bytes(broken), "corrupt")


def test_an_empty_file_becomes_a_region_and_an_unfinished_one_is_made_again(
        tmp_path: Path) -> None:
    path = tmp_path / "r"
    path.write_bytes(b"")
    resil.SharedRegion(path, size=1 << 16).close()
    data = bytearray(path.read_bytes())
    data[60:64] = bytes(4)  # "ready" not set: its creator died before the end
    path.write_bytes(bytes(data))
    region = resil.SharedRegion(path)
    assert region.check() == [] and region.size == 1 << 16


def test_bit_flips_end_in_a_region_error_or_a_usable_region(tmp_path: Path) -> None:
    good = _sound(tmp_path)
    rng = random.Random(7)
    used = HEADER + 2 * 64 * 20  # the header and both objects' first lines
    outcomes: dict[str, int] = {}
    path = tmp_path / "flipped"
    for _ in range(150):
        data = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            bit = rng.randrange(used * 8)
            data[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(data))
        try:
            region = resil.SharedRegion(path)
        except resil.RegionError:
            outcomes["refused"] = outcomes.get("refused", 0) + 1
            continue
        try:
            region.check()
            limiter = resil.RateLimiter(5, name="a", shared=region)
            limiter.try_acquire()
            limiter.try_acquire(key="k")
            limiter.stats()
            region.objects()
            outcomes["usable"] = outcomes.get("usable", 0) + 1
        except (resil.RegionError, ValueError):
            outcomes["refused"] = outcomes.get("refused", 0) + 1
        finally:
            region.close()
    assert outcomes.get("refused", 0) > 0 and outcomes.get("usable", 0) > 0, outcomes


# ---- full --------------------------------------------------------------------------

def test_a_full_region_names_size(tmp_path: Path) -> None:
    region = _new(tmp_path, size=1 << 16)
    with pytest.raises(resil.RegionError, match=r"full.*size=65536"):
        resil.RateLimiter(5, name="big", max_keys=10_000, shared=region)
    assert region.objects() == [] and region.check() == []
    made = 0
    with pytest.raises(resil.RegionError, match="full"):
        for i in range(200):
            resil.RateLimiter(5, name=f"n{i}", max_keys=1, shared=region)
            made += 1
    assert made == len(region.objects()) and region.check() == []


def test_a_full_directory(tmp_path: Path) -> None:
    region = _new(tmp_path, size=1 << 20)
    for i in range(128):
        resil.RateLimiter(5, name=f"n{i}", max_keys=1, shared=region)
    with pytest.raises(resil.RegionError, match="directory is full"):
        resil.RateLimiter(5, name="one more", max_keys=1, shared=region)
    assert resil.RateLimiter(5, name="n7", max_keys=1, shared=region).try_acquire()


def test_names(tmp_path: Path) -> None:
    region = _new(tmp_path)
    resil.RateLimiter(5, name="é" * 31 + "x", shared=region)  # 63 bytes of UTF-8
    with pytest.raises(ValueError, match="name must be at most 63 bytes"):
        resil.RateLimiter(5, name="é" * 32, shared=region)
    with pytest.raises(ValueError, match="name must be at most 63 bytes"):
        resil.RateLimiter(5, name="a\0b", shared=region)
    assert [o["name"] for o in region.objects()] == ["é" * 31 + "x"]


# ---- processes -------------------------------------------------------------------


def test_processes_creating_one_region_at_once_share_it(tmp_path: Path) -> None:
    ctx = region_workers.context()
    start, out = ctx.Event(), ctx.Queue()
    path = str(tmp_path / "r")
    procs = [ctx.Process(target=region_workers.create_and_take, args=(path, start, out))
             for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    taken = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sum(taken) == 4, taken
    region = resil.SharedRegion(path)
    assert len(region.objects()) == 1 and region.check() == []



@pytest.mark.parametrize("name", [None, "api"])
def test_a_lock_whose_holder_was_killed_is_recovered(tmp_path: Path, name: str | None) -> None:
    ctx = region_workers.context()
    path = str(tmp_path / "r")
    ready = ctx.Event()
    proc = ctx.Process(target=region_workers.hold_and_die, args=(path, name, ready))
    proc.start()
    assert ready.wait(30)
    region = resil.SharedRegion(path, lease=30.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    t0 = time.monotonic()
    limiter = resil.RateLimiter(5, name="api", shared=region)  # the directory lock
    assert limiter.try_acquire()  # the object's lock
    resil.RateLimiter(5, name="other", shared=region)
    assert time.monotonic() - t0 < 5
    assert region.check() == []


def test_a_lock_held_past_the_lease_by_a_live_process_is_a_region_error(
        tmp_path: Path) -> None:
    ctx = region_workers.context()
    path = str(tmp_path / "r")
    resil.SharedRegion(path, lease=0.3).close()
    ready = ctx.Event()
    proc = ctx.Process(target=region_workers.hold_and_die, args=(path, "api", ready))
    proc.start()
    try:
        assert ready.wait(30)
        limiter = resil.RateLimiter(5, name="api", shared=resil.SharedRegion(path))
        t0 = time.monotonic()
        with pytest.raises(resil.RegionError, match="held longer than the lease"):
            limiter.try_acquire()
        assert 0.25 < time.monotonic() - t0 < 5
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
    assert limiter.try_acquire()


def test_closing_while_a_thread_waits_for_a_lock(tmp_path: Path) -> None:
    import threading

    ctx = region_workers.context()
    path = str(tmp_path / "r")
    ready = ctx.Event()
    proc = ctx.Process(target=region_workers.hold_and_die, args=(path, "api", ready))
    proc.start()
    assert ready.wait(30)
    region = resil.SharedRegion(path)
    limiter = resil.RateLimiter(5, name="api", shared=region)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            limiter.try_acquire()
        except BaseException as e:  # noqa: BLE001 - the test looks at it
            errors.append(e)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)  # the waiter is in the lock, the GIL released
    region.close()  # the mapping stays until the waiter is out
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], resil.RegionError)
    assert "closed" in str(errors[0])
    assert resil.SharedRegion(path).check() == []


def test_process_identity_is_pid_and_start_time() -> None:
    me = resil.SharedRegion._process(os.getpid())
    assert me is not None
    start, _ = me
    assert resil.SharedRegion._process(os.getpid(), start) == (start, True)
    assert resil.SharedRegion._process(os.getpid(), start + 1) == (start, False)  # pid reused
    ctx = region_workers.context()
    proc = ctx.Process(target=time.sleep, args=(0,))
    proc.start()
    proc.join(timeout=30)
    assert resil.SharedRegion._process(proc.pid, 1) in (None, (0, False)) or \
        resil.SharedRegion._process(proc.pid, 1)[1] is False  # type: ignore[index]


def test_a_holder_of_another_pid_namespace_is_never_found_dead() -> None:
    """A pid means a process only within its pid namespace (two containers
    sharing /dev/shm may each run a process 42): a holder recorded by
    another namespace is never taken for dead from this one's /proc."""
    ns = os.stat("/proc/self/ns/pid").st_ino & 0xFFFFFFFF
    start, _ = resil.SharedRegion._process(os.getpid())  # type: ignore[misc]
    assert resil.SharedRegion._process(os.getpid(), start + 1, ns) == (start, False)
    # the same pid and a wrong start time, from another namespace: unknown, so alive
    assert resil.SharedRegion._process(os.getpid(), start + 1, ns ^ 1) == (start, True)
