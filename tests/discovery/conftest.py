"""Lab fixtures: three (``lab``) or four (``lab4``) hosts on a bridge, torn down
whatever happens; skipped where network namespaces are unavailable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.discovery.lab import Lab, unavailable


def _lab(size: int) -> Iterator[Lab]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    lab = Lab(size)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


@pytest.fixture
def lab() -> Iterator[Lab]:
    yield from _lab(3)


@pytest.fixture
def lab4() -> Iterator[Lab]:
    yield from _lab(4)
