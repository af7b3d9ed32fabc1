"""The server of tests/test_region_e2e.py: an ASGI app written by hand (no
framework) that uvicorn runs in several worker processes.

``GET /call`` takes a token from a rate limiter (429 when refused), then
calls the dependency through a circuit breaker: 200 when it answered 200,
502 when it failed (a failure for the breaker), 503 when the breaker
rejected the call. ``GET /stats`` gives the limiter's and the breaker's
``stats()`` as JSON, ``GET /metrics`` the Prometheus exposition of the
region (of the worker's own objects without one). Every response names the
worker's pid in an ``x-worker`` header (a JSON one in its body too), and
the dependency is told the same pid, so the test knows which worker did
what.

Configured from the environment, read once per worker:
``E2E_REGION`` the region file, or empty for objects of the worker's own;
``E2E_DEPENDENCY`` the dependency as host:port; ``E2E_RATE`` and
``E2E_BURST`` the limiter's rate per second and burst; ``E2E_THRESHOLD``,
``E2E_PROBES`` and ``E2E_COOLDOWN`` the breaker's failure_threshold,
half_open_probes and cooldown (seconds).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import resil
import resil.prometheus

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PID = os.getpid()
DEPENDENCY_TIMEOUT = 20.0  # seconds; the test kills a worker stuck longer than it runs


class DependencyFailed(Exception):
    """The dependency answered something other than 200."""


def _env_float(name: str) -> float:
    return float(os.environ[name])


def build() -> tuple[resil.RateLimiter, resil.CircuitBreaker, resil.SharedRegion | None]:
    """The limiter and the breaker this worker uses: in the region named by
    E2E_REGION (one of each for the whole host), or the worker's own."""
    path = os.environ.get("E2E_REGION", "")
    region = resil.SharedRegion(path) if path else None
    limiter = resil.RateLimiter(_env_float("E2E_RATE"), burst=int(os.environ["E2E_BURST"]),
                                name="api", shared=region)
    breaker = resil.CircuitBreaker(
        "dependency", failure_threshold=int(os.environ["E2E_THRESHOLD"]),
        half_open_probes=int(os.environ["E2E_PROBES"]), cooldown=_env_float("E2E_COOLDOWN"),
        cooldown_multiplier=1.0, adaptive=False, shared=region)
    return limiter, breaker, region


LIMITER, BREAKER, REGION = build()
_HOST, _, _PORT = os.environ["E2E_DEPENDENCY"].rpartition(":")


async def call_dependency() -> None:
    """One GET to the dependency; raises DependencyFailed unless it answers 200."""
    reader, writer = await asyncio.open_connection(_HOST, int(_PORT))
    try:
        writer.write(f"GET /dependency HTTP/1.1\r\nHost: {_HOST}\r\nx-worker: {PID}\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    status = response.split(b" ", 2)[1] if response.count(b" ") >= 2 else b"?"
    if status != b"200":
        raise DependencyFailed(f"the dependency answered {status.decode(errors='replace')}")


async def handle_call() -> tuple[int, dict[str, Any]]:
    if not LIMITER.try_acquire():
        return 429, {"outcome": "limited"}
    try:
        async with BREAKER:
            await asyncio.wait_for(call_dependency(), DEPENDENCY_TIMEOUT)
    except resil.CircuitOpenError:
        return 503, {"outcome": "rejected"}
    except (DependencyFailed, OSError, asyncio.TimeoutError):
        return 502, {"outcome": "failed"}
    return 200, {"outcome": "ok"}


def _plain(stats: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(stats, default=str))  # type: ignore[no-any-return]


async def respond(send: Send, status: int, body: dict[str, Any] | str) -> None:
    """A JSON body (with this worker's pid added) or a text one."""
    if isinstance(body, str):
        data, kind = body.encode(), b"text/plain; version=0.0.4; charset=utf-8"
    else:
        body["worker"] = PID
        data, kind = json.dumps(body).encode(), b"application/json"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind),
                            (b"content-length", str(len(data)).encode()),
                            (b"x-worker", str(PID).encode())]})
    await send({"type": "http.response.body", "body": data})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    body: dict[str, Any] | str
    if path == "/call":
        status, body = await handle_call()
    elif path == "/metrics":
        # The region's objects, host-wide, from whichever worker answers.
        sources = (REGION,) if REGION is not None else (LIMITER, BREAKER)
        status, body = 200, resil.prometheus.exposition(*sources)
    elif path == "/stats":
        status, body = 200, {"limiter": _plain(LIMITER.stats()),
                             "breaker": _plain(BREAKER.stats())}
    else:
        status, body = 404, {"outcome": "no such path"}
    await respond(send, status, body)
