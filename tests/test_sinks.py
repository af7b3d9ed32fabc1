"""resil.sinks, end to end with real transports on loopback.

The WebSocket server is the `websockets` library's; the Redis server is a
real redis-server started by the fixture on a free 127.0.0.1 port (the test
command installs it on a fresh machine). No mocks.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

import resil
from resil import sinks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fanout_isolates_errors_and_raises_only_when_all_fail() -> None:
    got: list[tuple[str, int]] = []

    async def good(e: int) -> None:
        got.append(("good", e))

    async def bad(e: int) -> None:
        raise ConnectionError("down")

    async def main() -> None:
        await sinks.fanout(good, bad)(1)
        assert got == [("good", 1)]
        with pytest.raises(sinks.FanoutError) as info:
            await sinks.fanout(bad, bad)(2)
        assert len(info.value.errors) == 2

    asyncio.run(main())
    with pytest.raises(ValueError):
        sinks.fanout()
    with pytest.raises(TypeError):
        sinks.websocket(object())
    with pytest.raises(TypeError):
        sinks.redis_pubsub(object(), "c")
    with pytest.raises(ValueError):
        sinks.redis_stream(type("C", (), {"xadd": lambda *a: None})(), "")


def test_websocket_server_receives_emitted_events_in_order() -> None:
    import websockets
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    received: list[dict] = []
    done = asyncio.Event()

    async def handler(conn) -> None:  # type: ignore[no-untyped-def]
        async for message in conn:
            received.append(json.loads(message))
            if len(received) == 200:
                done.set()

    async def main() -> None:
        port = free_port()
        async with serve(handler, "127.0.0.1", port):
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                async with resil.EventEmitter(sinks.websocket(ws)) as emitter:
                    for i in range(200):
                        assert emitter.emit({"seq": i, "kind": "novelty"})
                    await asyncio.wait_for(done.wait(), 10)
                assert emitter.status()["emitted"] == 200

    asyncio.run(main())
    assert [e["seq"] for e in received] == list(range(200))
    assert websockets.__version__


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (make test installs it)"
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def test_redis_pubsub_and_stream_receive_emitted_events(redis_url: str) -> None:
    import redis.asyncio as aioredis

    async def main() -> None:
        client = aioredis.from_url(redis_url, decode_responses=True)
        listener = aioredis.from_url(redis_url, decode_responses=True)
        pubsub = listener.pubsub()
        await pubsub.subscribe("novelty")
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        try:
            sink = sinks.fanout(sinks.redis_pubsub(client, "novelty"),
                                sinks.redis_stream(client, "novelty-log"))
            async with resil.EventEmitter(sink, queue_size=500) as emitter:
                for i in range(100):
                    emitter.emit({"seq": i})
            published = []
            while len(published) < 100:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                assert msg is not None, f"only {len(published)} messages arrived"
                published.append(json.loads(msg["data"])["seq"])
            assert published == list(range(100))
            entries = await client.xrange("novelty-log")
            assert [json.loads(f["event"])["seq"] for _, f in entries] == list(range(100))
            assert emitter.status()["emitted"] == 100
        finally:
            await pubsub.aclose()
            await listener.aclose()
            await client.aclose()

    asyncio.run(main())
