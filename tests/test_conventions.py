"""The conventions every public class of resil keeps, checked from tables.

Each table lists every public class (or method) with what the convention
needs to know about it; a class in ``resil.__all__`` that is missing from a
table fails ``test_every_public_class_is_in_the_tables``, so a new component
is checked as soon as it is exported.

- Exceptions: every exception resil raises on its own account is a
  ``resil.ResilError`` and exported.
- Signatures: ``inspect.signature`` works on every public class and function.
- Keyword-only arguments after the first one or two obvious positionals.
- Arguments: a wrong type raises TypeError, a bad value ValueError, and
  both name the parameter.
- Time limits (``inf``: no limit) go through one check with one meaning.
- ``clock=`` is honoured by every time-dependent component.
- ``stats()`` on every component, JSON-serialisable, in one vocabulary.
"""

from __future__ import annotations

import ast
import asyncio
import enum
import importlib
import inspect
import json
import math
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import resil

C_BINDING = "C binding field tables"


def c_xfail(*values: Any, why: str = "") -> Any:
    """A case that fails because of the C binding, which another change reworks."""
    reason = f"{C_BINDING}: {why}" if why else C_BINDING
    return pytest.param(*values, marks=pytest.mark.xfail(strict=True, reason=reason))


def public_classes() -> dict[str, type]:
    return {name: obj for name, obj in vars(resil).items()
            if name in resil.__all__ and isinstance(obj, type)}


# ---- exceptions -------------------------------------------------------------------

#: Builtin exceptions resil raises for misuse, as the standard library does:
#: a wrong argument (TypeError, ValueError), a missing key (KeyError), a
#: read-only attribute (AttributeError), an empty queue (asyncio.QueueEmpty),
#: an async API used outside a task (RuntimeError, as asyncio does).
BUILTIN_MISUSE = {"TypeError", "ValueError", "KeyError", "AttributeError", "RuntimeError",
                  "asyncio.QueueEmpty"}


def test_every_exception_resil_raises_is_a_resil_error_or_a_misuse_error() -> None:
    """Every ``raise SomeClass(...)`` in resil's own modules (the demo's
    simulated outage aside) raises a ResilError, exported from resil, or
    one of the builtin misuse errors."""
    root = Path(resil.__file__).parent
    checked = set()
    for path in sorted(root.rglob("*.py")):
        if path.parts[-2:] in (("cli", "demo.py"),):
            continue
        module_name = "resil." + ".".join(path.relative_to(root).with_suffix("").parts)
        module = importlib.import_module(module_name.removesuffix(".__init__"))
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            name = ast.unparse(node.exc.func)
            if name in BUILTIN_MISUSE:
                continue
            obj: Any = module
            for part in name.split("."):
                obj = getattr(obj, part, None)
            if not isinstance(obj, type):
                continue  # a helper that builds the error: its class is checked where it is raised
            if name.startswith("_"):
                # A private control-flow exception caught inside resil.
                continue
            checked.add(name)
            where = f"{path.relative_to(root)}:{node.lineno}"
            assert issubclass(obj, resil.ResilError), where
            assert getattr(resil, obj.__name__, None) is obj and obj.__name__ in resil.__all__, where
    assert {"EmitterClosed", "EventStormError", "OperationTimeout", "StoreError"} <= checked


def test_every_exception_class_of_the_c_module_is_a_resil_error_and_exported() -> None:
    from resil import _resil

    for name, obj in vars(_resil).items():
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, resil.ResilError), name
            assert getattr(resil, name) is obj and name in resil.__all__, name


def test_every_exported_exception_is_a_resil_error() -> None:
    for name, cls in public_classes().items():
        if issubclass(cls, BaseException):
            assert issubclass(cls, resil.ResilError), name


# ---- signatures -------------------------------------------------------------------

SIGNATURE_CASES = [
    c_xfail(name, why="no text signature in the type's doc") if name in ("ResilError", "QueueFull")
    else name
    for name in resil.__all__
    if isinstance(getattr(resil, name), type) or inspect.isfunction(getattr(resil, name))
]


@pytest.mark.parametrize("name", SIGNATURE_CASES)
def test_inspect_signature_works_on_every_public_class_and_function(name: str) -> None:
    obj = getattr(resil, name)
    sig = inspect.signature(obj)
    if isinstance(obj, type) and issubclass(obj, BaseException):
        # An exception made from its message alone takes it positionally.
        assert sig.parameters, name


@pytest.mark.parametrize("name", ["EmitterClosed", "ContractViolation", "HandlerDisabled",
                                  "DeliveryCancelled", "OperationTimeout"])
def test_message_errors_take_their_message_and_pickle(name: str) -> None:
    import pickle

    cls = getattr(resil, name)
    assert list(inspect.signature(cls).parameters) == ["message"]
    err = pickle.loads(pickle.dumps(cls("it broke")))
    assert type(err) is cls and str(err) == "it broke"


# ---- keyword-only arguments -------------------------------------------------------

#: Callables that take more positionals than the first two, and why.
MORE_POSITIONALS = {
    # The interval's range and threshold are one rule, written in order.
    "AdaptiveInterval": 6,
    # A measurement: all four are required.
    "Monitor.record": 4,
    # fn's own positional arguments follow, so the deadline comes before them.
    "TimeoutManager.run": 3,
    "TimeoutManager.run_with_breaker": 4,
    # Row writers of the storage backend, called by resil with a row's columns.
    "SQLiteStore.append_event": 8,
    "SQLiteStore.dlq_put": 9,
    "SQLiteStore.dlq_update": 5,
}
#: Value records built from their fields and enums: not constructors with options.
RECORDS = (BaseException, enum.Enum, tuple)
C_KEYWORDS = {"Backoff", "RetryBudget"}


def keyword_cases() -> list[Any]:
    cases: list[Any] = []
    for name, cls in public_classes().items():
        if issubclass(cls, RECORDS) or name in ("DeadLetter", "Event"):
            continue
        cases.append(c_xfail(name) if name in C_KEYWORDS else name)
        for attr, member in vars(cls).items():
            if not attr.startswith("_") and inspect.isfunction(member):
                cases.append(f"{name}.{attr}")
    cases += [name for name in resil.__all__ if inspect.isfunction(getattr(resil, name))]
    return cases


def _resolve(path: str) -> Any:
    obj: Any = resil
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("path", keyword_cases())
def test_arguments_after_the_first_two_are_keyword_only(path: str) -> None:
    sig = inspect.signature(_resolve(path))
    positional = [p.name for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.name not in ("self", "cls")]
    assert len(positional) <= MORE_POSITIONALS.get(path, 2), (path, positional)
