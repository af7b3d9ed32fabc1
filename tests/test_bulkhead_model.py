"""The C bulkhead engine (resil._resil.BulkheadCore) and the reference
model in tests/model/bulkhead.py, driven in lockstep by Hypothesis: every
operation, misuse included, gives the same answer on both, and their stats
agree after each step."""

from __future__ import annotations

import os
from typing import Any, Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from resil._resil import BulkheadCore

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from model import bulkhead as mdl
except ImportError:  # pragma: no cover - run from the repository root
    from tests.model import bulkhead as mdl  # type: ignore[no-redef]

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")


def outcome(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", fn())
    except ValueError:
        return ("ValueError", None)


class BulkheadMachine(RuleBasedStateMachine):
    core: BulkheadCore
    model: mdl.BulkheadModel

    @initialize(max_concurrent=st.integers(1, 4), max_queue=st.integers(0, 4))
    def make(self, max_concurrent: int, max_queue: int) -> None:
        self.core = BulkheadCore(max_concurrent, max_queue=max_queue)
        self.model = mdl.BulkheadModel(max_concurrent, max_queue)
        self.permits: list[Any] = []   # from try_acquire, released or not
        self.released: list[bool] = []

    @rule()
    def try_enter(self) -> None:
        assert self.core.try_enter() == self.model.try_enter()

    @rule()
    def acquire(self) -> None:
        assert self.core.acquire() == self.model.acquire()

    @rule()
    def try_acquire(self) -> None:
        permit = self.core.try_acquire()
        assert (permit is not None) == self.model.try_acquire()
        if permit is not None:
            assert permit.released is False
            self.permits.append(permit)
            self.released.append(False)

    @rule(data=st.data())
    def release_permit(self, data: st.DataObject) -> None:
        if not self.permits:
            return
        i = data.draw(st.integers(0, len(self.permits) - 1))
        if self.released[i]:  # a second release is refused and frees nothing
            assert outcome(lambda: self.core.release(self.permits[i]))[0] == "ValueError"
            return
        got = outcome(lambda: self.core.release(self.permits[i]))
        assert got == outcome(lambda: self.model.release(False))
        if got[0] == "ValueError":  # every slot was given back without its permit
            assert self.permits[i].released is False
            return
        if got[1] == mdl.WAITERS:  # the slot is still taken: passed on to the first waiter
            assert self.core.hand_off() == self.model.release(True) == mdl.HANDED
        self.released[i] = True
        assert self.permits[i].released is True

    @rule()
    def exit(self) -> None:
        assert outcome(self.core.exit) == outcome(lambda: self.model.release(False))

    @rule()
    def hand_off(self) -> None:
        assert outcome(self.core.hand_off) == outcome(lambda: self.model.release(True))

    @rule()
    def start(self) -> None:
        assert outcome(self.core.start) == outcome(self.model.start)

    @rule()
    def decline(self) -> None:
        assert outcome(self.core.decline) == outcome(self.model.decline)

    @rule(timed_out=st.booleans())
    def leave(self, timed_out: bool) -> None:
        assert outcome(lambda: self.core.leave(timed_out)) == \
            outcome(lambda: self.model.leave(timed_out))

    @invariant()
    def same_numbers(self) -> None:
        if hasattr(self, "core"):
            assert self.core.stats() == self.model.stats()
            assert self.core.handed == self.model.reserved
            assert self.core.active <= self.core.max_concurrent


TestBulkheadModel = BulkheadMachine.TestCase
TestBulkheadModel.settings = settings(
    settings.get_profile(PROFILE), stateful_step_count=60,
    suppress_health_check=[HealthCheck.too_slow])
