"""Every public callable of the C extension's types has a real signature.

inspect.signature works for every public method and constructor of every C
type reachable from resil (resil.__all__, the names of resil._resil, and the
helper objects their methods return), and each signature is the one the C
code parses: what it marks positional-only is refused by keyword, what it
allows by keyword is accepted by keyword, more positional arguments than it
lists and a keyword it does not list are refused, and fewer than it requires
too. Each signature also has the parameter names and kinds of the method in
resil/_resil.pyi."""

from __future__ import annotations

import ast
import asyncio
import inspect
import itertools
import os
import pathlib
import tempfile
import types
from collections.abc import Callable
from typing import Any

import pytest

import resil
from resil import _resil

P = inspect.Parameter
C_CALLABLES = (types.MethodDescriptorType, types.ClassMethodDescriptorType,
               types.BuiltinMethodType)
STUB = pathlib.Path(_resil.__file__).with_name("_resil.pyi")
if not STUB.exists():  # an installed build keeps the stub beside the package's sources
    STUB = pathlib.Path(resil.__file__).with_name("_resil.pyi")


def _is_c_type(t: type) -> bool:
    """A class of the extension: one of resil's whose source inspect cannot
    find (a class statement in resil's Python files has one)."""
    if not t.__module__.startswith("resil"):
        return False
    try:
        inspect.getsource(t)
    except (OSError, TypeError):
        return True
    return False


async def _coro() -> int:
    return 1


def _returned_helpers() -> dict[str, Any]:
    """Objects C methods return that users call, each made once."""
    breaker = resil.CircuitBreaker("sig-helpers", clock=resil.VirtualClock())
    permit = breaker.acquire()
    breaker.release(permit)
    awaitable = breaker.call_async(_coro)
    awaitable.close()  # never awaited: closed, so it does not warn
    breaker.__aenter__()
    finished = breaker.__aexit__(None, None, None)
    core = _core()
    return {"Permit": permit, "GuardedAwaitable": awaitable, "Finished": finished,
            "RetryCall": core.begin(0.0, None), "Retrying": core.wrap(len)}


def _core_kwargs() -> dict[str, Any]:
    return {"retries": 2, "backoff": resil.Backoff(), "retry_on": (OSError,),
            "retry_if_result": None, "deadline": None, "breaker": None, "budget": None,
            "retry_after": lambda exc: None, "on_retry": None, "clock": resil.VirtualClock(),
            "sleep": lambda s: None, "retry_error": resil.RetryError, "name": "kw"}


def _core() -> Any:
    return _resil.RetryCore(**_core_kwargs())


def c_types() -> dict[str, type]:
    found: dict[str, type] = {}
    candidates: list[type] = []
    for name in resil.__all__:
        obj = getattr(resil, name)
        if isinstance(obj, type):
            candidates.extend(obj.__mro__)
    candidates.extend(v for k, v in vars(_resil).items()
                      if isinstance(v, type) and not k.startswith("_"))
    candidates.extend(type(o) for o in _returned_helpers().values())
    for t in candidates:
        if _is_c_type(t):
            found[t.__name__] = t
    return found


TYPES = c_types()


def test_the_walk_finds_the_c_types() -> None:
    # A guard on the walk itself: if it found nothing, every test below would pass.
    assert {"Breaker", "Ring", "Backoff", "Histogram", "WindowedHistogram", "VirtualClock",
            "MonotonicClock", "Deduplicator", "RateCounter", "RetryBudget", "WindowedCounter",
            "AdaptiveInterval", "EjectionPool", "RetryCore", "RetryCall", "Retrying",
            "Guarded", "GuardedAwaitable", "Finished", "Permit", "CircuitOpenError",
            "ResilError", "QueueFull"} <= set(TYPES)
    assert not {"CircuitBreaker", "BoundedQueue", "RetryPolicy"} & set(TYPES)


def _public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


METHODS = sorted((tname, name) for tname, t in TYPES.items() for name, attr in vars(t).items()
                 if isinstance(attr, C_CALLABLES) and _public(name) and name != "__new__")
FUNCTIONS = sorted(name for name, f in vars(_resil).items()
                   if isinstance(f, types.BuiltinFunctionType) and _public(name))
# The types a user makes by calling the class (one that defines its own
# constructor or initialiser in C).
CONSTRUCTORS = sorted(tname for tname, t in TYPES.items()
                      if isinstance(vars(t).get("__new__"), types.BuiltinMethodType)
                      or isinstance(vars(t).get("__init__"), types.WrapperDescriptorType))
# Breaker's failure_on and ignore default to exception classes, which a text
# signature cannot hold; the public class built on it, resil.CircuitBreaker,
# carries the whole signature, so that is the one checked.
SIGNED_BY = {"Breaker": resil.CircuitBreaker}


def test_every_method_and_function_is_walked() -> None:
    assert len(METHODS) >= 60
    assert ("Breaker", "acquire") in METHODS and ("Breaker", "__exit__") in METHODS
    assert ("GuardedAwaitable", "throw") in METHODS and ("Finished", "send") in METHODS
    assert FUNCTIONS == ["breaker_exposition", "breaker_families"]
    assert {"Ring", "RetryCore", "Guarded", "Backoff", "CircuitOpenError"} <= set(CONSTRUCTORS)


def _callable_of(tname: str, name: str) -> Any:
    return getattr(TYPES[tname], name)


@pytest.mark.parametrize("tname,name", METHODS)
def test_every_method_has_a_signature(tname: str, name: str) -> None:
    sig = inspect.signature(_callable_of(tname, name))
    first = next(iter(sig.parameters.values()))
    assert first.name == "self" and first.kind is P.POSITIONAL_ONLY, sig
    doc = _callable_of(tname, name).__doc__
    assert doc and doc.strip(), "the documentation after the signature line is kept"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_module_function_has_a_signature(name: str) -> None:
    inspect.signature(getattr(_resil, name))


@pytest.mark.parametrize("tname", CONSTRUCTORS)
def test_every_constructor_has_a_signature(tname: str) -> None:
    inspect.signature(SIGNED_BY.get(tname, TYPES[tname]))


# ---- the signatures against what the C code parses -------------------------------

def _vclock() -> resil.VirtualClock:
    return resil.VirtualClock()


_REGIONS = tempfile.TemporaryDirectory(prefix="resil-sig-")


def _region_path() -> str:
    return os.path.join(_REGIONS.name, f"r{next(_REGION_IDS)}")


_REGION_IDS = itertools.count()


# A fresh object of each type with methods, made through the public API where there is one.
FACTORIES: dict[str, Callable[[], Any]] = {
    "AdaptiveInterval": lambda: resil.AdaptiveInterval(1.0, 0.5, 2.0, 10.0),
    "Backoff": lambda: resil.Backoff(seed=1),
    "Breaker": lambda: resil.CircuitBreaker("sig", clock=_vclock()),
    "BulkheadCore": lambda: _resil.BulkheadCore(2, max_queue=1),
    "AdaptiveCore": lambda: _resil.AdaptiveCore("vegas", clock=_vclock()),
    "CircuitOpenError": lambda: resil.CircuitOpenError("sig", resil.State.OPEN, 1.0),
    "Deduplicator": lambda: resil.Deduplicator(clock=_vclock()),
    "EjectionPool": lambda: _resil.EjectionPool(50),
    "Finished": lambda: _returned_helpers()["Finished"],
    "GuardedAwaitable": lambda: _returned_helpers()["GuardedAwaitable"],
    "Histogram": lambda: resil.Histogram(),
    "MonotonicClock": lambda: resil.MonotonicClock(),
    "RateCounter": lambda: resil.RateCounter(5, 1.0, clock=_vclock()),
    "Region": lambda: resil.SharedRegion(_region_path()),
    "MonitorBlock": lambda: _resil.MonitorBlock(resil.SharedRegion(_region_path()), "m", 60.0, 2,
                                                5.0, 5000.0, 1, 4, clock=_vclock()),
    "Gcra": lambda: resil._resil.Gcra(5, clock=_vclock()),
    "RetryBudget": lambda: resil.RetryBudget(clock=_vclock()),
    "RetryCall": lambda: _core().begin(0.0, None),
    "RetryCore": _core,
    "Ring": lambda: _resil.Ring(10, clock=_vclock()),
    "VirtualClock": _vclock,
    "WindowedCounter": lambda: resil.WindowedCounter(1.0, clock=_vclock()),
    "WindowedHistogram": lambda: resil.WindowedHistogram(clock=_vclock()),
}


def _breaker_samples() -> dict[str, Any]:
    breaker = resil.CircuitBreaker("sig-sample", clock=_vclock())
    return {"permit": breaker.acquire(), "latency_ms": 1.0}


# Valid values for every parameter that may be passed by keyword, to call
# with all of them by keyword on a fresh object (a factory: values may be
# used up). What is named here and what the signature allows by keyword must
# be the same names.
KEYWORD_SAMPLES: dict[tuple[str, str], Callable[[Any], dict[str, Any]]] = {
    ("Backoff", "delay"): lambda obj: {"attempt": 2, "prev": 1.0},
    ("Breaker", "record_success"): lambda obj: {"permit": obj.acquire(), "latency_ms": 1.0},
    ("Breaker", "record_failure"): lambda obj: {"permit": obj.acquire(), "latency_ms": 1.0},
    ("WindowedCounter", "add"): lambda obj: {"n": 2},
    ("AdaptiveCore", "release"): lambda obj: {"permit": obj.try_acquire(), "latency": 0.01,
                                              "dropped": True},
    ("Gcra", "try_acquire"): lambda obj: {"cost": 2, "key": "k"},
    ("Gcra", "retry_after"): lambda obj: {"cost": 2, "key": "k"},
    ("Gcra", "acquire"): lambda obj: {"cost": 2, "key": "k", "timeout": 0.0},
    ("Gcra", "acquire_async"): lambda obj: {"cost": 2, "key": "k", "timeout": 0.0},
}
CONSTRUCTOR_SAMPLES: dict[str, Callable[[], dict[str, Any]]] = {
    "AdaptiveInterval": lambda: {"base": 1.0, "min": 0.5, "max": 2.0, "threshold": 10.0,
                                 "speedup": 0.9, "slowdown": 1.1},
    "Backoff": lambda: {"base": 0.5, "multiplier": 3.0, "max_delay": 10.0, "jitter": "full",
                        "seed": 7},
    "Breaker": lambda: {"name": "kw", "failure_threshold": 3, "failure_rate_threshold": 0.5,
                        "slow_call_duration": 1.0, "slow_call_rate_threshold": 0.9,
                        "window_size": 20, "window_duration": None, "minimum_calls": 5,
                        "cooldown": 2.0, "cooldown_multiplier": 1.5, "cooldown_max": 9.0,
                        "half_open_probes": 2, "half_open_max_wait": 5.0, "adaptive": False,
                        "ewma_alpha": 0.2, "sensitivity": 1.5, "min_health_score": 0.2,
                        "latency_window": 10, "failure_on": (ValueError,),
                        "ignore": (KeyError,), "failure_if": None, "result_failure": None,
                        "clock": _vclock(), "shared": None, "cluster": None,
                        "sync_interval": 0.5, "min_hosts": 3},
    "BulkheadCore": lambda: {"max_concurrent": 3, "max_queue": 2, "queue_timeout": 1.0,
                             "name": "n", "shared": None},
    "AdaptiveCore": lambda: {"algorithm": "aimd", "initial_limit": 5, "min_limit": 2,
                             "max_limit": 9, "clock": _vclock(), "name": "n"},
    "CircuitOpenError": lambda: {"name": "x", "state": resil.State.OPEN, "remaining": 1.0},
    "Deduplicator": lambda: {"ttl": 5.0, "capacity": 10, "clock": _vclock(), "shared": None,
                             "name": "n", "cluster": None},
    "EjectionPool": lambda: {"max_ejection_percent": 50},
    "Guarded": lambda: {"breaker": resil.CircuitBreaker("g", clock=_vclock()), "fn": len,
                        "is_async": False},
    "Histogram": lambda: {"sub_bits": 5, "max_bits": 30},
    "RateCounter": lambda: {"threshold": 3, "window": 1.0, "clock": _vclock()},
    "Region": lambda: {"path": _region_path(), "size": 65536, "lease": 1.0},
    "MonitorBlock": lambda: {"region": resil.SharedRegion(_region_path()), "name": "m",
                             "retention": 60.0, "slots": 2, "alert_error_rate": 5.0,
                             "alert_response_ms": 5000.0, "max_components": 1,
                             "max_series": 4, "clock": _vclock()},
    "Gcra": lambda: {"rate": 3, "per": 2.0, "burst": 4, "name": "n", "max_keys": 10,
                     "clock": _vclock(), "shared": None, "cluster": None},
    "RetryBudget": lambda: {"ratio": 0.5, "min_per_second": 1.0, "window": 5.0,
                            "clock": _vclock()},
    "RetryCore": _core_kwargs,
    "Ring": lambda: {"maxsize": 5, "warn_at": 0.5, "reject_at": 0.9, "clock": _vclock()},
    "VirtualClock": lambda: {"start": 3.0},
    "WindowedCounter": lambda: {"window": 1.0, "slots": 4, "clock": _vclock()},
    "WindowedHistogram": lambda: {"retention": 60.0, "slots": 4, "sub_bits": 5,
                                  "max_bits": 30, "clock": _vclock()},
}
FUNCTION_SAMPLES: dict[str, Callable[[], dict[str, Any]]] = {
    "breaker_exposition": lambda: {"breakers": [], "prefix": "p", "label": "l"},
    "breaker_families": lambda: {"breakers": [], "prefix": "p"},
}


def _keyword_names(sig: inspect.Signature) -> set[str]:
    return {p.name for p in sig.parameters.values()
            if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)}


def _check_parsing(fn: Callable[..., Any], sig: inspect.Signature,
                   sample: Callable[[], dict[str, Any]] | None) -> None:
    """Calls fn in ways the parser must refuse before doing anything, then
    (sample given) with every keyword-capable parameter by keyword."""
    params = [p for p in sig.parameters.values() if p.name != "self"]
    kinds = {p.kind for p in params}
    positional = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is P.empty]
    for p in params:
        if p.kind is P.POSITIONAL_ONLY:
            # Refused by keyword; with **kwargs the name is just another
            # keyword, and the positional argument is then missing.
            with pytest.raises(TypeError, match=None if P.VAR_KEYWORD in kinds else "keyword"):
                fn(**{p.name: None})
    if P.VAR_POSITIONAL not in kinds:
        with pytest.raises(TypeError):
            fn(*[None] * (len(positional) + 1))
    if P.VAR_KEYWORD not in kinds:
        with pytest.raises(TypeError):
            fn(**{"no_such_parameter": None})
    if required:
        with pytest.raises(TypeError):
            fn(*[None] * (len(required) - 1))
    names = _keyword_names(sig)
    if names:
        assert sample is not None, f"no keyword sample for {sig}"
        kwargs = sample()
        assert set(kwargs) == names, sig
        fn(**kwargs)
    else:
        assert sample is None, "a sample for a signature without keyword parameters"


@pytest.mark.parametrize("tname,name", METHODS)
def test_each_method_parses_as_its_signature_says(tname: str, name: str) -> None:
    assert tname in FACTORIES, f"no factory for {tname}"
    # The refused calls change nothing, so the keyword call that follows
    # still finds a fresh object.
    obj = FACTORIES[tname]()
    sig = inspect.signature(getattr(obj, name))
    make = KEYWORD_SAMPLES.get((tname, name))
    _check_parsing(getattr(obj, name), sig, None if make is None else (lambda: make(obj)))
    if tname == "GuardedAwaitable":
        obj.close()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_module_function_parses_as_its_signature_says(name: str) -> None:
    fn = getattr(_resil, name)
    _check_parsing(fn, inspect.signature(fn), FUNCTION_SAMPLES.get(name))


@pytest.mark.parametrize("tname", CONSTRUCTORS)
def test_each_constructor_parses_as_its_signature_says(tname: str) -> None:
    cls = SIGNED_BY.get(tname, TYPES[tname])
    _check_parsing(cls, inspect.signature(cls), CONSTRUCTOR_SAMPLES.get(tname))


def test_the_samples_name_only_walked_callables() -> None:
    assert set(KEYWORD_SAMPLES) <= set(METHODS)
    assert set(CONSTRUCTOR_SAMPLES) <= set(CONSTRUCTORS)


# ---- the stub ---------------------------------------------------------------------

def _stub_classes() -> dict[str, dict[str, list[ast.arguments]]]:
    tree = ast.parse(STUB.read_text())
    out: dict[str, dict[str, list[ast.arguments]]] = {"": {}}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[""].setdefault(node.name, []).append(node.args)
        elif isinstance(node, ast.ClassDef):
            methods: dict[str, list[ast.arguments]] = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    methods.setdefault(item.name, []).append(item.args)
            out[node.name] = methods
    return out


STUBS = _stub_classes()


def _stub_shape(args: ast.arguments) -> list[tuple[str, Any, bool]]:
    """(name, kind, has a default) per parameter, self left out."""
    positional = [(a, P.POSITIONAL_ONLY) for a in args.posonlyargs]
    positional += [(a, P.POSITIONAL_OR_KEYWORD) for a in args.args]
    defaults = [False] * (len(positional) - len(args.defaults)) + [True] * len(args.defaults)
    shape = [(a.arg, kind, d) for (a, kind), d in zip(positional, defaults)]
    if args.vararg:
        shape.append((args.vararg.arg, P.VAR_POSITIONAL, False))
    shape += [(a.arg, P.KEYWORD_ONLY, d is not None)
              for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        shape.append((args.kwarg.arg, P.VAR_KEYWORD, False))
    return [s for s in shape if s[0] != "self"]


def _c_shape(sig: inspect.Signature) -> list[tuple[str, Any, bool]]:
    return [(p.name, p.kind, p.default is not P.empty)
            for p in sig.parameters.values() if p.name != "self"]


def _agree(c: list[tuple[str, Any, bool]], stub: list[tuple[str, Any, bool]]) -> bool:
    if c == stub:
        return True
    # configure($self, /, **changes): the stub names the changes it accepts,
    # each keyword-only and optional.
    if c and c[-1][1] is P.VAR_KEYWORD:
        named = [s for s in stub if s[1] is P.KEYWORD_ONLY]
        return (c[:-1] == [s for s in stub if s[1] is not P.KEYWORD_ONLY]
                and all(has_default for _, _, has_default in named))
    return False


STUBBED_METHODS = [(t, n) for t, n in METHODS if t in vars(_resil)]


@pytest.mark.parametrize("tname,name", STUBBED_METHODS)
def test_each_method_agrees_with_the_stub(tname: str, name: str) -> None:
    assert tname in STUBS, f"{tname} is not in {STUB.name}"
    assert name in STUBS[tname], f"{tname}.{name} is not in {STUB.name}"
    c = _c_shape(inspect.signature(_callable_of(tname, name)))
    for args in STUBS[tname][name]:
        assert _agree(c, _stub_shape(args)), (c, _stub_shape(args))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_module_function_agrees_with_the_stub(name: str) -> None:
    c = _c_shape(inspect.signature(getattr(_resil, name)))
    for args in STUBS[""][name]:
        assert _agree(c, _stub_shape(args)), (c, _stub_shape(args))


@pytest.mark.parametrize("tname", [t for t in CONSTRUCTORS if t in vars(_resil)])
def test_each_constructor_agrees_with_the_stub(tname: str) -> None:
    c = _c_shape(inspect.signature(SIGNED_BY.get(tname, TYPES[tname])))
    for args in STUBS[tname]["__init__"]:
        assert _agree(c, _stub_shape(args)), (c, _stub_shape(args))


def test_configure_accepts_each_change_the_stub_names() -> None:
    for tname, obj in [("Breaker", FACTORIES["Breaker"]()), ("Ring", FACTORIES["Ring"]()),
                       ("Deduplicator", FACTORIES["Deduplicator"]())]:
        (args,) = STUBS[tname]["configure"]
        for a in args.kwonlyargs:
            if hasattr(obj, a.arg):
                obj.configure(**{a.arg: getattr(obj, a.arg)})
        with pytest.raises(TypeError):
            obj.configure(no_such_parameter=1)


def test_a_guarded_awaitable_still_runs_after_the_walk() -> None:
    # The walk closes what it opens; a guarded call still works end to end.
    breaker = resil.CircuitBreaker("sig-run", clock=_vclock())
    assert asyncio.run(breaker.call_async(_coro)) == 1
