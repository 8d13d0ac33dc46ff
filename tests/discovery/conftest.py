"""The lab fixture: three hosts on a bridge, torn down whatever happens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.discovery.lab import Lab, unavailable


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    lab = Lab(3)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
