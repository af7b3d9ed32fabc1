"""What the event stores share: reading their log of events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from resil import _check


class EventLog:
    """The reading side of an event store (:class:`resil.SQLiteStore`,
    :class:`resil.redis.StreamStore`): :meth:`events` checks its bounds when
    called and reads through the store's ``_events_from``."""

    def events(self, from_seq: int | None = None, *, to_seq: int | None = None,
               since: float | None = None, event_type: str | None = None
               ) -> Iterator[dict[str, Any]]:
        """The stored events in number order, bounds inclusive, as dicts with
        the log's column names (``payload`` still JSON text), read in pages
        as they are consumed (the store is not locked, nor Redis held, while
        the caller works on a page). Raises TypeError or ValueError at the
        call for a bound that is not None or: an int (``from_seq``,
        ``to_seq``), a finite Unix time (``since``), a non-empty str UTF-8
        can encode (``event_type``); a StreamStore raises
        :exc:`resil.RedisUnavailable` when Redis does not answer."""
        since = _check.event_bounds(from_seq, to_seq, since, event_type)
        return self._events_from(from_seq, to_seq, since, event_type)

    def _events_from(self, from_seq: int | None, to_seq: int | None, since: float | None,
                     event_type: str | None) -> Iterator[dict[str, Any]]:
        """The store's read of checked bounds, lazily."""
        raise NotImplementedError
