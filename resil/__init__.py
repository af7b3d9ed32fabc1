"""resil: resilience for asyncio and threaded Python, with a C engine.

The public names are re-exported here; ``resil._resil`` (the C extension) is
an implementation detail.

resil logs on the ``resil`` logger tree (``resil.breaker``, ``resil.bus``,
...), which carries a ``NullHandler``: an application that configured no
logging sees no output from resil.
"""

import logging
from typing import Any

from resil.policies.breaker import BreakerGroup, CircuitBreaker, StateListener
from resil.policies.adaptive import AdaptiveLimiter, LimiterPermit
from resil.policies.bulkhead import Bulkhead, BulkheadPermit
from resil.messaging.bus import (ContractViolation, DeliveryCancelled, Event, EventBus, EventStormError,
                        HandlerDisabled, TypeCircuitOpenError)
from resil.messaging.dedup import idempotent
from resil.messaging.dlq import DeadLetter, DeadLetterQueue, DeadLetterSink
from resil.messaging.emitter import EmitterClosed, EventEmitter
from resil.errors import (BulkheadFull, LimitExceeded, OperationTimeout, RateLimited,
                          RedisUnavailable, RetryError)
from resil.policies.interval import AdaptiveInterval, TimeScale
from resil.policies.ratelimit import RateLimiter
from resil.observe.memory import MemoryTracker
from resil.observe.monitor import Monitor
from resil.messaging.queues import BoundedQueue, PartitionedQueue
from resil._resil import (
    Backoff,
    CircuitOpenError,
    Deduplicator,
    Histogram,
    MonotonicClock,
    Permit,
    QueueFull,
    RateCounter,
    ResilError,
    RetryBudget,
    State,
    VirtualClock,
    WindowedCounter,
    WindowedHistogram,
)
from resil.policies.retry import RetryPolicy, retry
from resil.policies.pipeline import Pipeline, fallback, hedge, timeout
from resil.messaging.scheduler import AdaptiveScheduler
from resil.storage.region import RegionError, SharedRegion
from resil.storage.sqlite import SQLiteStore, StoreError
from resil.tasks import CancellationToken, Outcome, Supervisor, shutdown_task
from resil.policies.timeout import Operation, TimeoutManager
from resil.testing.virtual import VirtualEventLoop, run_virtual
from resil import sinks
from resil.sinks import FanoutError

logging.getLogger("resil").addHandler(logging.NullHandler())

__version__ = "0.1.0"

# Submodules reachable as attributes without importing them up front: each
# may need an optional dependency, imported only when the module is used.
_LAZY_SUBMODULES = frozenset({"chaos", "otel", "prometheus", "redis"})


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        import importlib

        module = importlib.import_module(f"resil.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'resil' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY_SUBMODULES)

__all__ = [
    "AdaptiveInterval",
    "AdaptiveLimiter",
    "AdaptiveScheduler",
    "Backoff",
    "BoundedQueue",
    "BreakerGroup",
    "Bulkhead",
    "BulkheadFull",
    "BulkheadPermit",
    "CancellationToken",
    "CircuitBreaker",
    "CircuitOpenError",
    "ContractViolation",
    "DeadLetter",
    "DeadLetterQueue",
    "DeadLetterSink",
    "DeliveryCancelled",
    "Deduplicator",
    "EmitterClosed",
    "FanoutError",
    "Event",
    "EventBus",
    "EventEmitter",
    "EventStormError",
    "HandlerDisabled",
    "LimitExceeded",
    "LimiterPermit",
    "Histogram",
    "MemoryTracker",
    "Monitor",
    "MonotonicClock",
    "Operation",
    "OperationTimeout",
    "Outcome",
    "PartitionedQueue",
    "Pipeline",
    "Permit",
    "QueueFull",
    "RateCounter",
    "RateLimited",
    "RedisUnavailable",
    "RateLimiter",
    "RegionError",
    "ResilError",
    "RetryBudget",
    "RetryError",
    "RetryPolicy",
    "SQLiteStore",
    "SharedRegion",
    "State",
    "StateListener",
    "StoreError",
    "Supervisor",
    "TimeScale",
    "TimeoutManager",
    "TypeCircuitOpenError",
    "VirtualClock",
    "VirtualEventLoop",
    "WindowedCounter",
    "WindowedHistogram",
    "fallback",
    "hedge",
    "idempotent",
    "retry",
    "run_virtual",
    "shutdown_task",
    "sinks",
    "timeout",
]
