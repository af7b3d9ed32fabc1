"""Observability: the monitor (latency percentiles, error rates, health and
alerts). The Prometheus exposition is the public module ``resil.prometheus``.
The public names are re-exported from ``resil``."""
