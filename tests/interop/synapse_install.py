"""Installing Synapse for the interop tests: once, from PyPI, into a cached venv.

``ensure_synapse()`` installs ``SYNAPSE_PIP_SPEC`` into ``~/.cache/croft-tests/synapse-venv``
(env ``CROFT_SYNAPSE_VENV`` overrides; ``CROFT_SYNAPSE_PYTHON`` picks the interpreter that
makes the venv) under a file lock, so parallel pytest sessions wait for one install
instead of racing. pip's output goes to ``<venv>/pip-install.log``; a line of progress is
printed every 10 s. ``croft-synapse.json`` is written last and marks a complete install
of that spec; a venv without it (interrupted) or with another spec is made again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tests.interop.util import tail

# The version the interop tests were written against (the current release when written).
SYNAPSE_PIP_SPEC = "matrix-synapse==1.163.2"
DEFAULT_VENV = Path("~/.cache/croft-tests/synapse-venv")
VENV_ENV = "CROFT_SYNAPSE_VENV"
MARKER_FILE = "croft-synapse.json"
INSTALL_LOG = "pip-install.log"

# pip output that means "the package index could not be reached" (not a broken package).
_NETWORK_ERRORS = (
    "NewConnectionError",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Failed to establish a new connection",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ProxyError",
    "Could not fetch URL",
)
# Without retries pip only says it found nothing; Synapse is on PyPI, so an index that
# offers no version of it at all is one that could not be reached (or a bare mirror).
_NOTHING_FOUND = re.compile(r"requirement matrix-synapse\S* \(from versions: none\)")


class SynapseError(Exception):
    """Synapse could not be installed, started or used."""


class SynapseUnavailable(SynapseError):
    """Synapse is not installed and the package index cannot be reached."""


@dataclass(frozen=True)
class SynapseInstall:
    venv: Path
    version: str
    install_seconds: float  # how long the install took (0 when it was already cached)

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def venv_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get(VENV_ENV) or DEFAULT_VENV).expanduser().resolve()


def installed(venv: Path, spec: str = SYNAPSE_PIP_SPEC) -> SynapseInstall | None:
    """The complete install of ``spec`` in ``venv``, or None."""
    try:
        marker = json.loads((venv / MARKER_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if marker.get("spec") != spec or not (venv / "bin" / "python").exists():
        return None
    return SynapseInstall(venv, str(marker["version"]), 0.0)


@contextlib.contextmanager
def _install_lock(venv: Path) -> Iterator[None]:
    venv.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(venv.parent / f"{venv.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another session installing: wait for it
        yield
    finally:
        os.close(fd)


def ensure_synapse(
    venv: Path | None = None,
    *,
    spec: str = SYNAPSE_PIP_SPEC,
    progress: TextIO | None = None,
) -> SynapseInstall:
    """Install ``spec`` into ``venv`` unless it is there already; returns the install.

    Raises SynapseUnavailable when pip cannot reach the package index, SynapseError
    when the install fails for another reason (the message names the log)."""
    venv = venv_path() if venv is None else venv
    out = progress or sys.stderr
    found = installed(venv, spec)
    if found:
        return found
    with _install_lock(venv):
        found = installed(venv, spec)  # done by another session while we waited
        if found:
            return found
        return _install(venv, spec, out)


def _install(venv: Path, spec: str, out: TextIO) -> SynapseInstall:
    def say(msg: str) -> None:
        print(f"[synapse-install] {msg}", file=out, flush=True)

    t0 = time.monotonic()
    if venv.exists():  # a partial or different install: start clean
        if not (venv / "pyvenv.cfg").exists() and any(venv.iterdir()):
            raise SynapseError(f"{venv} is not a venv; not deleting it (set {VENV_ENV})")
        shutil.rmtree(venv)
    base_python = os.environ.get("CROFT_SYNAPSE_PYTHON") or sys.executable
    say(f"installing {spec} into {venv}, once (~20 s from a local mirror, more from PyPI)")
    say(f"log: {venv / INSTALL_LOG}")
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    log_path = venv / INSTALL_LOG
    python = venv / "bin" / "python"
    cmd = [str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check", spec]
    with log_path.open("w", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        done = threading.Event()

        def report() -> None:  # one line every 10 s: the latest thing pip did
            while not done.wait(10):
                last = tail(log_path, 1).strip()[:100]
                say(f"... {time.monotonic() - t0:.0f} s: {last}")

        reporter = threading.Thread(target=report, daemon=True)
        reporter.start()
        try:
            status = proc.wait()
        finally:
            done.set()
            reporter.join()
    if status != 0:
        text = log_path.read_text("utf-8", errors="replace")
        msg = f"pip install {spec} failed (exit {status}); see {log_path}:\n{tail(log_path, 15)}"
        if any(marker in text for marker in _NETWORK_ERRORS) or _NOTHING_FOUND.search(text):
            raise SynapseUnavailable(msg)
        raise SynapseError(msg)
    check = subprocess.run(
        [str(python), "-c", "import synapse; print(synapse.__version__)"],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        raise SynapseError(f"synapse not importable after install:\n{check.stderr}")
    version = check.stdout.strip()
    seconds = time.monotonic() - t0
    marker = {"spec": spec, "version": version, "install_seconds": round(seconds, 1)}
    (venv / MARKER_FILE).write_text(json.dumps(marker), "utf-8")
    say(f"matrix-synapse {version} installed in {seconds:.0f} s")
    return SynapseInstall(venv, version, seconds)
