"""Storage backends: the SQLite store behind dead letters and the event
bus's audit log. The public names are re-exported from ``resil``."""
