"""The ``python -m resil`` commands."""
