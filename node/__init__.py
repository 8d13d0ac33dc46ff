"""Croft: a self-contained, single-user Matrix homeserver."""

__version__ = "0.1.0"
