"""Adaptive intervals: resil.AdaptiveInterval (C) and resil.TimeScale."""

from __future__ import annotations

import enum

from resil._resil import TIMESCALES, AdaptiveInterval

__all__ = ["AdaptiveInterval", "TimeScale"]


class TimeScale(enum.Enum):
    """Interval presets (seconds): base, min, max and activity threshold.
    MICRO is (0.1, 0.05, 1.0, 0.5), MESO (10.0, 5.0, 30.0, 0.3), MACRO
    (300.0, 60.0, 600.0, 0.2); the values come from the C engine's table."""

    MICRO = TIMESCALES["MICRO"]
    MESO = TIMESCALES["MESO"]
    MACRO = TIMESCALES["MACRO"]

    @property
    def base(self) -> float:
        return self.value[0]

    @property
    def min(self) -> float:
        return self.value[1]

    @property
    def max(self) -> float:
        return self.value[2]

    @property
    def threshold(self) -> float:
        return self.value[3]

    def interval(self, speedup: float = 0.8, slowdown: float = 1.2) -> AdaptiveInterval:
        """A fresh :class:`AdaptiveInterval` with this preset."""
        return AdaptiveInterval(self.base, self.min, self.max, self.threshold, speedup, slowdown)
