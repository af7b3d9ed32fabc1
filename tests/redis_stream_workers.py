"""Worker processes ("hosts") for tests/test_redis_stream.py.

    python redis_stream_workers.py publish PORT HOST STREAM COUNT TOTAL DIR
        subscribes to every type, writes DIR/HOST.ready, waits for DIR/go,
        publishes COUNT events, waits until it received TOTAL, replays, and
        writes DIR/HOST.json: {"received": [[seq, host, i]...], "replayed": [...]}
    python redis_stream_workers.py outage PORT HOST STREAM COUNT DIR
        publishes COUNT events 2 ms apart, each retried with the same
        idempotency key while RedisUnavailable is raised, writes DIR/HOST.done,
        waits for DIR/close, reads the stream to its end; writes DIR/HOST.json:
        {"seqs": [...], "first_raise": i or None, "raised": n,
         "received": [[seq, host, i]...]} after reading back its last event
    python redis_stream_workers.py dlq-hang PORT STREAM NAME CLAIM_AFTER DIR
        reprocess_all with a handler that writes DIR/holding and never returns
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import redis

import resil
from resil.redis import RedisBackend, RedisUnavailable, StreamStore


def _wait_file(path: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} never appeared")
        time.sleep(0.005)


def _write(path: str, doc: object) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.replace(path + ".tmp", path)


async def publish(port: int, host: str, stream: str, count: int, total: int, out: str) -> None:
    backend = RedisBackend(redis.Redis(host="127.0.0.1", port=port), host=host, timeout=1.0)
    store = StreamStore(backend, stream)
    bus = resil.EventBus(store=store, storm_threshold=1 << 24)
    received: list[list[object]] = []
    done = asyncio.Event()

    def seen(event: resil.Event) -> None:
        received.append([event.seq, event.payload["host"], event.payload["i"]])
        if len(received) >= total:
            done.set()
    bus.subscribe("*", seen)
    _write(os.path.join(out, f"{host}.ready"), {})
    await asyncio.get_running_loop().run_in_executor(None, _wait_file, os.path.join(out, "go"))
    for i in range(count):
        await bus.publish(f"load.{i % 3}", {"host": host, "i": i})
    await asyncio.wait_for(done.wait(), 60)
    replayed: list[list[object]] = []
    bus.unsubscribe("*", seen)
    bus.subscribe("*", lambda e: replayed.append([e.seq, e.payload["host"], e.payload["i"]]))
    await bus.replay()
    await bus.aclose()
    _write(os.path.join(out, f"{host}.json"), {"received": received, "replayed": replayed,
                                               "stats": bus.stats()})


async def outage(port: int, host: str, stream: str, count: int, out: str) -> None:
    backend = RedisBackend(redis.Redis(host="127.0.0.1", port=port), host=host, timeout=0.1, cooldown=0.2)
    store = StreamStore(backend, stream)
    bus = resil.EventBus(store=store, storm_threshold=1 << 24)
    received: list[list[object]] = []
    bus.subscribe("*", lambda e: received.append([e.seq, e.payload["host"], e.payload["i"]]))
    seqs: list[int] = []
    raised = 0
    first_raise = None
    modes = set()
    _write(os.path.join(out, f"{host}.ready"), {})
    for i in range(count):
        while True:
            try:
                event = await bus.publish("load", {"host": host, "i": i},
                                          idempotency_key=f"{host}:{i}")
            except RedisUnavailable:
                raised += 1
                modes.add(bus.stats()["backend"])
                if first_raise is None:
                    first_raise = i
                await asyncio.sleep(0.02)
                continue
            assert event is not None
            seqs.append(event.seq)
            break
        await asyncio.sleep(0.002)
    # Every host has published: read the stream to its end, then close.
    _write(os.path.join(out, f"{host}.done"), {})
    await asyncio.get_running_loop().run_in_executor(None, _wait_file,
                                                     os.path.join(out, "close"))
    last = store.last_seq()
    deadline = time.monotonic() + 30
    while bus.stats()["last_seq"] < last and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await bus.aclose(timeout=10.0)
    _write(os.path.join(out, f"{host}.json"), {
        "seqs": seqs, "raised": raised, "first_raise": first_raise, "received": received,
        "modes": sorted(modes)})


async def dlq_hang(port: int, stream: str, name: str, claim_after: float, out: str) -> None:
    backend = RedisBackend(redis.Redis(host="127.0.0.1", port=port), timeout=1.0)
    dlq = resil.DeadLetterQueue(store=StreamStore(backend, stream, claim_after=claim_after),
                                name=name)

    async def hold(item: object) -> None:
        _write(os.path.join(out, "holding"), {"item": item})
        await asyncio.sleep(3600)
    await dlq.reprocess_all(hold)


def main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "publish":
        asyncio.run(publish(int(argv[1]), argv[2], argv[3], int(argv[4]), int(argv[5]), argv[6]))
    elif kind == "outage":
        asyncio.run(outage(int(argv[1]), argv[2], argv[3], int(argv[4]), argv[5]))
    elif kind == "dlq-hang":
        asyncio.run(dlq_hang(int(argv[1]), argv[2], argv[3], float(argv[4]), argv[5]))
    else:
        raise SystemExit(f"unknown worker {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
