"""Testing aids: an event loop on virtual time, driven by a
``resil.VirtualClock``. The public names are re-exported from ``resil``."""
