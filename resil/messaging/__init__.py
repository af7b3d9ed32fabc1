"""Moving events and work: bounded and partitioned queues, deduplication,
the event emitter, the adaptive scheduler, the event bus and dead letters.
The public names are re-exported from ``resil``."""
