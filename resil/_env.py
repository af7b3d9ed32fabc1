"""Settings read from environment variables, shared by every ``from_env``.

A setting has a plain variable name (``TIMEOUT_GRACE_PERIOD``) and the same
name under the ``RESIL_`` prefix (``RESIL_TIMEOUT_GRACE_PERIOD``), which wins
when both are set. Values are stripped of surrounding whitespace; an empty
value counts as unset. A value that does not parse raises ``ValueError``
naming the variable and the value; so does one the component's constructor
refuses (see :func:`build`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from resil import _check

T = TypeVar("T")

PREFIX = "RESIL_"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def environment(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    """``environ``, or ``os.environ`` (read now, when None)."""
    if environ is None:
        return os.environ
    if not isinstance(environ, Mapping):
        raise TypeError(f"environ must be a mapping of str to str (such as os.environ) or None, "
                        f"not {type(environ).__name__}")
    return environ


def raw(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(the variable read, its stripped value) for setting ``name``: the
    ``RESIL_`` variable when it is set and not empty, else the plain one;
    None when neither is."""
    for variable in (PREFIX + name, name):
        value = environ.get(variable)
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"environ[{variable!r}] must be a str, not {type(value).__name__}")
        value = value.strip()
        if value:
            return variable, value
    return None


def _refuse(variable: str, value: str, accepts: str) -> ValueError:
    return ValueError(f"environment variable {variable}={value!r}: expected {accepts}")


def flag(variable: str, value: str) -> bool:
    """A boolean: 1/0, true/false, yes/no, on/off, in any case."""
    word = value.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise _refuse(variable, value, "a boolean (1/0, true/false, yes/no, on/off)")


def integer(variable: str, value: str) -> int:
    """A whole number written in decimal."""
    try:
        return int(value, 10)
    except ValueError:
        raise _refuse(variable, value, "a whole number") from None


def number(scale: float = 1.0) -> Callable[[str, str], float]:
    """A finite decimal number, multiplied by ``scale`` (a unit conversion)."""
    def parse(variable: str, value: str) -> float:
        try:
            n = float(value)
        except ValueError:
            n = math.nan
        if not math.isfinite(n):
            raise _refuse(variable, value, "a finite number")
        return n * scale
    return parse


def text(variable: str, value: str) -> str:
    """Any non-empty text."""
    return value


@dataclass(frozen=True)
class Setting:
    """One environment setting: the variable's plain ``name``, the
    constructor ``parameter`` it gives, and how its text is parsed."""
    name: str
    parameter: str
    parse: Callable[[str, str], Any]


@dataclass(frozen=True)
class Found:
    """A setting read from the environment."""
    variable: str
    text: str
    value: Any


def read(environ: Mapping[str, str] | None, settings: Iterable[Setting],
         overrides: Mapping[str, Any]) -> dict[str, Found]:
    """{parameter: Found} for each setting that is set and whose parameter
    is not in ``overrides`` (an override wins, and its variable is not even
    parsed). ValueError naming the variable for a value that does not parse."""
    env = environment(environ)
    found: dict[str, Found] = {}
    for s in settings:
        if s.parameter in overrides:
            continue
        hit = raw(env, s.name)
        if hit is not None:
            found[s.parameter] = Found(hit[0], hit[1], s.parse(*hit))
    return found


def build(make: Callable[..., T], found: Mapping[str, Found], overrides: Mapping[str, Any],
          extra: Mapping[str, Any] | None = None) -> T:
    """``make(**values, **overrides)``, with ``values`` the settings found
    (and ``extra``, keyword arguments derived from them). When the
    constructor refuses: its own TypeError or ValueError when ``overrides``
    alone are refused (an unknown or bad keyword argument); else a
    ValueError naming the variable whose value it refused, and its value."""
    values = {p: f.value for p, f in found.items()}
    values.update(extra or {})
    try:
        return make(**values, **overrides)
    except (TypeError, ValueError) as exc:
        if not found:
            raise
        refused = exc
    make(**overrides)  # raises the constructor's own error for a bad override
    culprits = [f for p, f in found.items() if not _accepts(make, {p: f.value}, overrides)]
    if not culprits:  # only together (a rule between two settings)
        culprits = list(found.values())
    shown = ", ".join(f"{f.variable}={f.text!r}" for f in culprits)
    raise ValueError(f"environment variable{'s' if len(culprits) > 1 else ''} {shown}: "
                     f"{refused}") from refused


def _accepts(make: Callable[..., Any], values: Mapping[str, Any],
             overrides: Mapping[str, Any]) -> bool:
    try:
        make(**values, **overrides)
    except (TypeError, ValueError):
        return False
    return True


def positive_seconds(variable: str, value: str) -> float:
    """A number of seconds > 0."""
    seconds = number()(variable, value)
    try:
        return _check.seconds(seconds, variable)
    except ValueError:
        raise _refuse(variable, value, "a number of seconds > 0") from None
