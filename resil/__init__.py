"""resil: resilience for asyncio and threaded Python, with a C engine.

The public names are re-exported here; ``resil._resil`` (the C extension) is
an implementation detail.
"""

from resil._breaker import BreakerGroup, CircuitBreaker, StateListener
from resil._resil import (
    CircuitOpenError,
    MonotonicClock,
    Permit,
    ResilError,
    State,
    VirtualClock,
)

__version__ = "0.1.0"

__all__ = [
    "BreakerGroup",
    "CircuitBreaker",
    "CircuitOpenError",
    "MonotonicClock",
    "Permit",
    "ResilError",
    "State",
    "StateListener",
    "VirtualClock",
]
