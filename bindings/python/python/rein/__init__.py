"""Rein for Python."""
from rein._native import __version__

__all__ = ["__version__"]
