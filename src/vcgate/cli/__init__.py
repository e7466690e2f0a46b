"""The ``vcgate`` command (being split into one module per command group)."""

from .base import cli, main

__all__ = ["cli", "main"]
