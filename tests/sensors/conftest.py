"""The sensor tests that run real `croft run` processes use tests/test_cli.py's fixtures:
a data directory made once by `croft init` and copied per test, and `start`."""

from tests.test_cli import data_dir, pristine, start

__all__ = ["data_dir", "pristine", "start"]
