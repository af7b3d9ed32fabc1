"""Event sinks for resil.EventEmitter.

A sink is a callable ``sink(event)``, a plain function or an async one
(its result is awaited when it is awaitable). The transports are
duck-typed, so resil needs none of their libraries: ``websocket(ws)`` works
with any object with ``await ws.send(text)``, the Redis sinks with any
client with ``await client.publish(channel, data)`` or ``await
client.xadd(stream, fields)`` (redis-py's asyncio client, for example).
Events are sent as JSON text; ``encode=`` replaces that.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from resil._resil import ResilError

__all__ = ["fanout", "websocket", "redis_pubsub", "redis_stream", "FanoutError"]

Sink = Callable[[Any], Any]  # a plain function or an async one
AsyncSink = Callable[[Any], Awaitable[None]]
Encoder = Callable[[Any], str]


def _json(event: Any) -> str:
    return json.dumps(event, separators=(",", ":"), default=str)


class FanoutError(ResilError):
    """Every sink of a fanout failed; ``.errors`` holds their exceptions."""

    def __init__(self, errors: list[BaseException]) -> None:
        super().__init__(f"all {len(errors)} sinks failed: "
                         + "; ".join(f"{type(e).__name__}: {e}" for e in errors))
        self.errors = errors

    def __reduce__(self) -> tuple[Any, ...]:
        return (FanoutError, (self.errors,))


async def _call(sink: Sink, event: Any) -> Any:
    result = sink(event)
    if inspect.isawaitable(result):
        return await result
    return result


def fanout(*sinks: Sink) -> AsyncSink:
    """Sends each event to every sink concurrently; plain and async sinks
    alike. A failing sink does not stop the others. Raises
    :class:`FanoutError` only when every sink failed (so a breaker or retry
    around the fanout sees a failure only then)."""
    if not sinks:
        raise ValueError("fanout needs at least one sink")
    for i, s in enumerate(sinks):
        if not callable(s):
            raise TypeError(f"sinks must be functions or async functions; sink {i} is "
                            f"{type(s).__name__}")

    async def send(event: Any) -> None:
        results = await asyncio.gather(*(_call(s, event) for s in sinks), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for r in errors:
            if not isinstance(r, Exception):  # cancellation and the like: not isolated
                raise r
        if len(errors) == len(sinks):
            raise FanoutError(errors)

    return send


def websocket(ws: Any, encode: Encoder = _json) -> AsyncSink:
    """Sends each event as a text message with ``await ws.send(...)``."""
    if not callable(getattr(ws, "send", None)):
        raise TypeError("websocket() needs an object with an async send() method")

    async def send(event: Any) -> None:
        await ws.send(encode(event))

    return send


def redis_pubsub(client: Any, channel: str, encode: Encoder = _json) -> AsyncSink:
    """Publishes each event on a Redis channel with ``await client.publish``."""
    if not callable(getattr(client, "publish", None)):
        raise TypeError("redis_pubsub() needs a client with an async publish() method")
    if not isinstance(channel, str) or not channel:
        raise ValueError("channel must be a non-empty str")

    async def send(event: Any) -> None:
        await client.publish(channel, encode(event))

    return send


def redis_stream(client: Any, stream: str, encode: Encoder = _json,
                 maxlen: int | None = None) -> AsyncSink:
    """Appends each event to a Redis stream as ``{"event": <json>}`` with
    ``await client.xadd`` (``maxlen`` trims the stream approximately)."""
    if not callable(getattr(client, "xadd", None)):
        raise TypeError("redis_stream() needs a client with an async xadd() method")
    if not isinstance(stream, str) or not stream:
        raise ValueError("stream must be a non-empty str")

    async def send(event: Any) -> None:
        if maxlen is None:
            await client.xadd(stream, {"event": encode(event)})
        else:
            await client.xadd(stream, {"event": encode(event)}, maxlen=maxlen, approximate=True)

    return send
