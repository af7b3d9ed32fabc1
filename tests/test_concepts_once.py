"""Each concept once: the Python layer uses what the C engine has instead of
keeping a copy (time-scale presets, windowed counts, TTL maps, the breaker
families of the exposition)."""

from __future__ import annotations

import resil
from resil import _resil


# ---- TimeScale presets -----------------------------------------------------------

def test_timescale_presets_come_from_the_engine_table() -> None:
    assert {s.name for s in resil.TimeScale} == set(_resil.TIMESCALES)
    for scale in resil.TimeScale:
        assert scale.value == _resil.TIMESCALES[scale.name]
        assert (scale.base, scale.min, scale.max, scale.threshold) == scale.value
    iv = resil.TimeScale.MESO.interval()
    assert (iv.base, iv.min, iv.max, iv.threshold) == (10.0, 5.0, 30.0, 0.3)
