"""Policies that guard a call: circuit breaker, retry and backoff, timeouts,
adaptive thresholds. The public names are re-exported from ``resil``."""
