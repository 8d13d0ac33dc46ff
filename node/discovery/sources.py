"""Load zeroconf from its Python sources, not from its Cython builds.

python-zeroconf is a pure-Python library. Its binary wheels add an optional Cython
build of its hot modules (built when a compiler is there, left out with SKIP_CYTHON,
absent from its pure-Python wheel) next to the sources of the same modules. Imported,
zeroconf takes ~5.1 MiB resident from its compiled modules (2.6 MiB of them mapped
.so pages) and ~1.9 MiB from its sources; a running node with discovery on is 2.9 MiB
smaller (benchmarks/REPORT.md, "iot-sensor profile: memory"). A node sees a few mDNS
packets a second, so the compiled modules' speed does not matter here.

Python's file finder prefers an extension module to a source file of the same name,
so :class:`SourcesFinder`, placed ahead of it, finds zeroconf's modules among source
and bytecode files only. It takes over only when every compiled module has its source
beside it, and only if zeroconf is not imported yet: a Cython module reaches into the
compiled types of its siblings, so the two kinds must never mix.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery as machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

_LOADERS = (
    (machinery.SourceFileLoader, machinery.SOURCE_SUFFIXES),
    (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES),
)


class SourcesFinder(importlib.abc.MetaPathFinder):
    """Finds ``package`` and its submodules among .py/.pyc files only."""

    def __init__(self, package: str) -> None:
        self.package = package
        self._usable: bool | None = None  # decided on the first look-up

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> machinery.ModuleSpec | None:
        if fullname != self.package and not fullname.startswith(self.package + "."):
            return None
        if self._usable is None:
            self._usable = False  # has_all_sources looks the package up through here too
            self._usable = has_all_sources(self.package)
        if not self._usable:
            return None
        for entry in sys.path if path is None else path:
            spec = machinery.FileFinder(entry or ".", *_LOADERS).find_spec(fullname, target)
            if spec is not None:
                return spec
        return None


def has_all_sources(package: str) -> bool:
    """Whether every extension module of ``package`` has a .py file beside it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    suffixes = sorted(machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    for location in spec.submodule_search_locations:
        for path in Path(location).rglob("*"):
            suffix = next((s for s in suffixes if path.name.endswith(s)), None)
            if (
                suffix is not None
                and not path.with_name(path.name[: -len(suffix)] + ".py").is_file()
            ):
                return False
    return True


def install(package: str) -> None:
    """Put a :class:`SourcesFinder` for ``package`` first in ``sys.meta_path``, unless
    ``package`` is already imported (then nothing changes)."""
    if package in sys.modules:
        return
    if any(isinstance(f, SourcesFinder) and f.package == package for f in sys.meta_path):
        return
    sys.meta_path.insert(0, SourcesFinder(package))
