"""Import the standard library's ``html`` without its table of character references.

aiohttp imports ``html`` for ``html.escape`` alone, and ``html`` imports
``html.entities`` at once for ``html.unescape``: 2,231 named references in a dict, and
a few hundred more names in the interpreter's table of interned strings. `croft run`
never unescapes HTML, and these stayed resident for the life of the process: ~0.8 MiB
of idle RSS on x86-64 (benchmarks/REPORT.md, "One CPU for the loop and the writer").

:func:`import_html_without_entities` imports ``html`` with a stand-in for
``html.entities`` whose ``html5`` loads the real table on first use, so
``html.unescape`` still answers exactly as before. The stand-in leaves ``sys.modules``
as soon as ``html`` is imported: an ``import html.entities`` anywhere later loads the
real module, as always. Until then it stays the package's ``entities`` attribute, and
any other name asked of it comes from the real module.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any


class _LoadedOnUse(Mapping[str, str]):
    """``html.entities.html5``, loaded on its first use."""

    def __init__(self) -> None:
        self._table: dict[str, str] | None = None

    def _real(self) -> dict[str, str]:
        if self._table is None:
            self._table = importlib.import_module("html.entities").html5
        return self._table

    def __getitem__(self, name: str) -> str:
        return self._real()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._real()

    def __iter__(self) -> Iterator[str]:
        return iter(self._real())

    def __len__(self) -> int:
        return len(self._real())


def import_html_without_entities() -> None:
    """Import ``html`` (see the module's doc); nothing to do if it is imported."""
    if "html" in sys.modules:
        return
    stand_in = types.ModuleType("html.entities")
    stand_in.html5 = _LoadedOnUse()  # type: ignore[attr-defined]

    def real_attribute(name: str) -> Any:  # html.entities.<anything else>: the real one
        if name.startswith("__"):  # what the import system asks of a module
            raise AttributeError(name)
        return getattr(importlib.import_module("html.entities"), name)

    stand_in.__getattr__ = real_attribute  # type: ignore[method-assign]
    sys.modules["html.entities"] = stand_in
    try:
        import html
    finally:
        if sys.modules.get("html.entities") is stand_in:
            del sys.modules["html.entities"]
    # As after a real import: ``html.entities`` is an attribute of the package (until
    # the real module is imported and takes its place).
    html.entities = stand_in  # type: ignore[attr-defined]
