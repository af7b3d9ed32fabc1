"""The conventions of every public class, checked for ``resil.redis`` and for
the components in their cluster form (``cluster=`` a RedisBackend, an
EventBus or DeadLetterQueue on a StreamStore), from tables as in
test_conventions: signatures, keyword-only arguments, TypeError for a wrong
type and ValueError for a bad value naming the parameter, exceptions that
are ResilErrors, and stats() as JSON in the one vocabulary with every key
documented. A name added to ``resil.redis.__all__`` and missing from the
tables fails ``test_every_public_name_of_resil_redis_is_in_the_tables``."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import resil
from redis_support import RedisServer, redis_server  # noqa: F401
from resil.redis import RedisBackend, RedisUnavailable, Script, StreamStore
from test_conventions import (NAN, NOTHING, argument_cases, check_stats,
                              expect_argument_error, expect_keyword_only, keyword_cases,
                              resolve)

ECHO = Script("return ARGV[1]")


@pytest.fixture(scope="module")
def backend(redis_server: RedisServer) -> Iterator[RedisBackend]:
    b = RedisBackend(redis_server.client(), prefix="conv:", host="conv")
    yield b
    b.close()


def _client() -> Any:
    """A client of the module's Redis (the tables are built at import time,
    the server started later: a lambda reads it when a case runs)."""
    return _SERVER[0].client()


_SERVER: list[RedisServer] = []


@pytest.fixture(autouse=True)
def _server(redis_server: RedisServer) -> None:
    if not _SERVER:
        _SERVER.append(redis_server)


def _backend() -> RedisBackend:
    return RedisBackend(_client(), prefix="conv:", host="conv")


# ---- names, signatures, keyword-only ------------------------------------------------

#: Public callables of resil.redis that take more positionals than two, and why.
MORE_POSITIONALS = {
    # A script call: the script, then its keys and its arguments, as Redis's
    # EVALSHA takes them.
    "RedisBackend.run": 3,
    "RedisBackend.run_async": 3,
    # Row writers of a bus's store, called by resil with an event's columns.
    "StreamStore.append_event": 8,
    "StreamStore.append_event_async": 8,
}


@pytest.mark.parametrize("path", keyword_cases(resil.redis, skip=(BaseException,)))
def test_signatures_work_and_arguments_after_the_first_two_are_keyword_only(path: str) -> None:
    expect_keyword_only(resolve(path, resil.redis), path, MORE_POSITIONALS)


def test_the_exception_of_resil_redis_is_a_resil_error_exported_from_resil() -> None:
    assert issubclass(RedisUnavailable, resil.ResilError)
    assert resil.RedisUnavailable is RedisUnavailable and "RedisUnavailable" in resil.__all__
    assert inspect.signature(RedisUnavailable).parameters


# ---- TypeError for a wrong type, ValueError for a bad value -------------------------

ARGUMENTS: dict[str, tuple[Callable[..., Any], dict[str, Any], dict[str, tuple[Any, Any]]]] = {
    "RedisBackend": (lambda **kw: RedisBackend(_client(), **kw), {}, {
        "prefix": (1, None), "on_unavailable": (1, "sometimes"), "timeout": ("1", 0.0),
        "cooldown": ("1", NAN), "host": (1, "")}),
    "RedisBackend(client)": (lambda **kw: RedisBackend(**kw), {}, {"client": (NOTHING, None)}),
    "Script": (Script, {}, {"source": (1, " ")}),
    "StreamStore": (lambda **kw: StreamStore(_backend(), **kw), {"stream": "s"}, {
        "stream": (1, ""), "max_events": ("1", 0), "claim_after": ("1", -1.0),
        "idempotency_ttl": ("1", 0.0), "block": ("1", 0.0)}),
    "StreamStore(backend)": (lambda **kw: StreamStore(**kw), {"stream": "s"}, {
        "backend": (NOTHING, None)}),
}

METHOD_ARGUMENTS: dict[str, tuple[Callable[..., Any], dict[str, Any],
                                  dict[str, tuple[Any, Any]]]] = {
    "RedisBackend.key": (lambda **kw: _backend().key(**kw), {"kind": "k", "name": "n"}, {
        "kind": (1, ""), "name": (1, "")}),
    "RedisBackend.every": (lambda **kw: _backend().every(**kw),
                           {"interval": 1.0, "fn": lambda: None}, {
        "interval": ("1", 0.0), "fn": (NOTHING, None)}),
    "RedisBackend.on_restore": (lambda **kw: _backend().on_restore(**kw), {}, {
        "listener": (NOTHING, None)}),
    "RedisBackend.blocking_client": (lambda **kw: _backend().blocking_client(**kw), {}, {
        "timeout": ("1", -1.0)}),
    "RedisBackend.run": (lambda **kw: _backend().run(**kw), {"script": ECHO, "keys": [],
                                                               "args": ["a"]}, {
        "script": ("return 1", None), "keys": (NOTHING, None), "args": (NOTHING, None)}),
    "RedisBackend.run_async": (lambda **kw: _backend().run_async(**kw),
                               {"script": ECHO, "keys": [], "args": ["a"]}, {
        "script": ("return 1", None), "keys": (NOTHING, None), "args": (NOTHING, None)}),
    "StreamStore.events": (lambda **kw: list(StreamStore(_backend(), "s").events(**kw)), {}, {
        "from_seq": ("1", 2**63), "to_seq": (1.5, -2**64), "since": ("1", NAN),
        "event_type": (1, None)}),
    "StreamStore.follow": (lambda **kw: StreamStore(_backend(), "s").follow(**kw), {}, {
        "deliver": (NOTHING, None), "position": (1, None)}),
    "StreamStore.dead_letter_backend": (
        lambda **kw: StreamStore(_backend(), "s").dead_letter_backend(**kw), {}, {
            "name": (1, "")}),
}


def _construct(make: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    obj = make(**kwargs)
    close = getattr(obj, "close", None)
    if callable(close):
        close()


def _call(make: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    async def run() -> None:
        result = make(**kwargs)
        if inspect.isawaitable(result):
            await result
    asyncio.run(run())


@pytest.mark.parametrize("owner, param, kind", argument_cases(ARGUMENTS, set()))
def test_a_wrong_type_raises_type_error_and_a_bad_value_value_error(
        owner: str, param: str, kind: str) -> None:
    expect_argument_error(ARGUMENTS, owner, param, kind, _construct)


@pytest.mark.parametrize("owner, param, kind", argument_cases(METHOD_ARGUMENTS, set()))
def test_methods_raise_type_error_for_a_wrong_type_and_value_error_for_a_bad_value(
        owner: str, param: str, kind: str) -> None:
    expect_argument_error(METHOD_ARGUMENTS, owner, param, kind, _call)


def test_every_public_name_of_resil_redis_is_in_the_tables() -> None:
    for name in resil.redis.__all__:
        obj = getattr(resil.redis, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            continue
        listed = {p for key, (_, _, params) in ARGUMENTS.items()
                  if key.split("(")[0] == name for p in params}
        sig = inspect.signature(obj)
        assert {p.name for p in sig.parameters.values()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)} <= listed, name
        for attr, member in vars(obj).items():
            if attr.startswith("_") or not inspect.isfunction(member):
                continue
            params = {p.name for p in inspect.signature(member).parameters.values()
                      if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)} - {"self"}
            path = f"{name}.{attr}"
            if params:
                assert path in METHOD_ARGUMENTS or path in ROW_WRITERS, path
            if path in METHOD_ARGUMENTS:
                assert params <= set(METHOD_ARGUMENTS[path][2]), (path, params)


#: Methods resil calls itself with the columns of an event it built: their
#: arguments are checked where the event is made (EventBus.publish).
ROW_WRITERS = {"StreamStore.append_event", "StreamStore.append_event_async"}


# ---- stats() ------------------------------------------------------------------------

def _stats_factories() -> dict[str, Callable[[RedisBackend], tuple[Any, dict[str, Any]]]]:
    """Each component in its cluster form: (the object whose class documents
    stats(), its stats())."""
    def breaker(b: RedisBackend) -> tuple[Any, dict[str, Any]]:
        cb = resil.CircuitBreaker("conv-b", cluster=b)
        return cb, cb.stats()

    def limiter(b: RedisBackend) -> tuple[Any, dict[str, Any]]:
        rl = resil.RateLimiter(5, name="conv-l", cluster=b)
        rl.try_acquire()
        return rl, rl.stats()

    def dedup(b: RedisBackend) -> tuple[Any, dict[str, Any]]:
        d = resil.Deduplicator(name="conv-d", cluster=b)
        d.seen("k")
        return d, d.stats()

    def idempotent(b: RedisBackend) -> tuple[Any, dict[str, Any]]:
        @resil.idempotent(key=lambda x: x, cluster=b, name="conv-i")
        async def double(x: int) -> int:
            return 2 * x
        asyncio.run(double(2))
        return resil.idempotent, double.stats()  # type: ignore[attr-defined]

    def bus(b: RedisBackend) -> tuple[Any, dict[str, Any]]:
        async def main() -> dict[str, Any]:
            bus = resil.EventBus(store=StreamStore(b, "conv-bus"))
            bus.subscribe("t", lambda e: None)
            await bus.publish("t", {"n": 1})
            try:
                return bus.stats()
            finally:
                await bus.aclose()
        return resil.EventBus, asyncio.run(main())

    def dlq(b: RedisBackend) -> tuple[Any, dict[str, Any]]:
        q = resil.DeadLetterQueue(store=StreamStore(b, "conv-dlq"), name="conv-q")
        q.put({"n": 1}, "boom")
        return q, q.stats()

    def store(b: RedisBackend) -> tuple[Any, dict[str, Any]]:
        s = StreamStore(b, "conv-s")
        return s, s.stats()

    def backend(b: RedisBackend) -> tuple[Any, dict[str, Any]]:
        b.run(ECHO, [], ["x"])
        return b, b.stats()

    return {"CircuitBreaker(cluster=)": breaker, "RateLimiter(cluster=)": limiter,
            "Deduplicator(cluster=)": dedup, "idempotent(cluster=)": idempotent,
            "EventBus(store=StreamStore)": bus, "DeadLetterQueue(store=StreamStore)": dlq,
            "StreamStore": store, "RedisBackend": backend}


STATS = _stats_factories()


@pytest.mark.parametrize("name", sorted(STATS))
def test_stats_is_json_and_speaks_the_one_vocabulary(name: str, backend: RedisBackend) -> None:
    obj, stats = STATS[name](backend)
    if obj is resil.idempotent:  # a wrapper's stats(): the decorator documents it
        doc = obj.__doc__
    else:
        doc = (obj if isinstance(obj, type) else type(obj)).stats.__doc__
    check_stats(name, stats, doc)
    assert stats.get("backend", backend.mode) == "redis", stats


def test_every_public_class_of_resil_redis_with_stats_is_in_the_table() -> None:
    for name in resil.redis.__all__:
        if hasattr(getattr(resil.redis, name), "stats"):
            assert name in STATS, name
