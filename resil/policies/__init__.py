"""Policies that guard a call: circuit breaker, retry and backoff, timeouts,
adaptive thresholds, hedging, fallback, and the pipeline that composes them.
The public names are re-exported from ``resil``."""
