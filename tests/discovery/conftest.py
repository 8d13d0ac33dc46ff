"""Lab fixtures: three (``lab``) or four (``lab4``) hosts on a bridge, torn down
whatever happens; skipped where network namespaces are unavailable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.discovery.lab import Lab, lab_up


def _lab(size: int) -> Iterator[Lab]:
    with lab_up(size) as lab:
        yield lab


@pytest.fixture
def lab() -> Iterator[Lab]:
    yield from _lab(3)


@pytest.fixture
def lab4() -> Iterator[Lab]:
    yield from _lab(4)
