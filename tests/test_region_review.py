"""resil.SharedRegion and RateLimiter(shared=...): attaching to a limiter
another thread is using, a damaged key count, a file of zeros left by a
creator killed before it wrote the header, the key table's bounds, and str
values that have no UTF-8."""

from __future__ import annotations

import os
import struct
import sys
import threading
from pathlib import Path

import pytest

import resil

KEYS_FIELD = 64 + 64 + 16  # a limiter's block: its lock, its settings, nsets, max_keys


def _block_offset(path: Path, index: int = 0) -> int:
    with open(path, "rb") as f:
        # the directory entry's block offset: entries of type, name length,
        # name, 20 parameters, offset and size follow the 128-byte header
        f.seek(128 + index * 248 + 232)
        return int(struct.unpack("<Q", f.read(8))[0])


def test_attaching_while_another_thread_adds_keys(tmp_path: Path) -> None:
    region = resil.SharedRegion(tmp_path / "r", 16 << 20)

    def make() -> resil.RateLimiter:
        return resil.RateLimiter(1, per=3600.0, shared=region, name="api", max_keys=200_000)

    limiter = make()
    stop = threading.Event()

    def hammer() -> None:
        i = 0
        while not stop.is_set():
            limiter.try_acquire(key=str(i))
            i += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    thread = threading.Thread(target=hammer)
    thread.start()
    failures = []
    try:
        for _ in range(100):
            try:
                make()
            except resil.RegionError as e:  # pragma: no cover - the defect
                failures.append(str(e))
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old)
    assert failures == []
    assert region.check() == []
    assert limiter.stats()["keys"] > 0


def test_a_wrong_key_count_is_repaired_when_attaching(tmp_path: Path) -> None:
    path = tmp_path / "r"
    region = resil.SharedRegion(path)
    limiter = resil.RateLimiter(1, per=3600.0, name="api", shared=region)
    for key in "abc":
        assert limiter.try_acquire(key=key)
    at = _block_offset(path) + KEYS_FIELD
    fd = os.open(path, os.O_RDWR)
    try:
        keys = struct.unpack("<Q", os.pread(fd, 8, at))[0]
        assert keys == 3
        os.pwrite(fd, struct.pack("<Q", keys + 1), at)  # as a killed worker may leave it
    finally:
        os.close(fd)
    assert region.check() == ["rate limiter: the count of keys differs from the keys held"]
    again = resil.RateLimiter(1, per=3600.0, name="api",
                              shared=resil.SharedRegion(path))
    assert region.check() == []
    assert not again.try_acquire(key="a") and again.try_acquire(key="d")
    assert again.stats()["keys"] == 4


def test_a_file_of_zeros_is_formatted_and_other_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r"
    path.write_bytes(bytes(1 << 17))  # reserved, then its creator was killed
    region = resil.SharedRegion(path, size=1 << 20)
    assert region.size == 1 << 17 and region.check() == []
    assert resil.RateLimiter(5, name="api", shared=region).try_acquire()
    # one byte set anywhere: another program's file, left alone
    for where in (0, 5000, (1 << 17) - 1):
        data = bytearray(1 << 17)
        data[where] = 1
        other = tmp_path / f"other{where}"
        other.write_bytes(bytes(data))
        with pytest.raises(resil.RegionError, match="not a resil region"):
            resil.SharedRegion(other)
        assert other.read_bytes() == bytes(data)
    # zeros too few for a region are not made one
    small = tmp_path / "small"
    small.write_bytes(bytes(4096))
    with pytest.raises(resil.RegionError, match="not a resil region|too small"):
        resil.SharedRegion(small)
    assert small.read_bytes() == bytes(4096)


def test_max_keys_refilling_keys_are_never_forgotten(tmp_path: Path) -> None:
    # max_keys keys whose buckets are all still refilling: each one is kept,
    # whatever its digest (the table has room for twice max_keys in sets of
    # 8, and a key may live in either of two sets)
    for trial in range(4):
        region = resil.SharedRegion(tmp_path / f"r{trial}")
        limiter = resil.RateLimiter(1, per=3600.0, name="k", max_keys=1024, shared=region)
        keys = [f"{trial}-{i}" for i in range(1024)]
        assert all(limiter.try_acquire(key=k) for k in keys)
        assert not any(limiter.try_acquire(key=k) for k in keys)
        assert limiter.stats()["keys"] == 1024
        assert region.check() == []


def test_max_keys_is_rounded_to_the_tables_sets(tmp_path: Path) -> None:
    region = resil.SharedRegion(tmp_path / "r")
    one = resil.RateLimiter(1, per=3600.0, name="one", max_keys=1, shared=region)
    assert one.max_keys == 8
    for i in range(50):
        one.try_acquire(key=str(i))
    assert 8 <= one.stats()["keys"] <= 2 * one.max_keys
    assert region.objects()[0]["parameters"]["max_keys"] == 8
    # another process passing any value that rounds the same is the same limiter
    assert resil.RateLimiter(1, per=3600.0, name="one", max_keys=5, shared=region).max_keys == 8
    assert resil.RateLimiter(1, per=3600.0, name="nine", max_keys=9,
                             shared=region).max_keys == 16
    assert resil.RateLimiter(1, name="local", max_keys=1).max_keys == 1


def test_lone_surrogates_are_value_errors_naming_the_parameter(tmp_path: Path) -> None:
    region = resil.SharedRegion(tmp_path / "r")
    with pytest.raises(ValueError, match="name must be a str encodable as UTF-8"):
        resil.RateLimiter(5, name="a\ud800", shared=region)
    limiter = resil.RateLimiter(5, name="api", shared=region)
    for call in (lambda: limiter.try_acquire(key="\ud800"),
                 lambda: limiter.try_acquire(key="x\udfff", cost=2)):
        with pytest.raises(ValueError, match="key must be a str encodable as UTF-8"):
            call()
    assert limiter.try_acquire(key="\u00e9\U0001f600")
    assert region.check() == []
