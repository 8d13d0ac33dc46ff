"""Small helpers shared by the interop harness: loopback ports, child processes, HTTP."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

_handed_out: set[int] = set()


# Below Linux's ephemeral range (32768-60999 by default): a port handed out here is
# never taken meanwhile as the source port of some outgoing connection, as one the
# kernel picked for bind(0) can be before the node binds it.
PORT_RANGE = (20000, 32000)
_ports = random.Random()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (never the same one twice per process)."""
    for _ in range(200):
        port = _ports.randrange(*PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError("no free loopback port found")


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the thread that started it ends.

    pytest-timeout ends a hung run with os._exit, which skips fixture teardown; without
    this a Synapse or croft process would outlive the run and keep its ports. (Start
    children from the event loop's thread, not from a short-lived worker thread.)"""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> int:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit status. Blocking."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (for error messages)."""
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:])


async def http_json(
    method: str, url: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    """One request (certificates not checked: test servers are self-signed); returns
    (status, the JSON body or None)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.request(method, url, json=body, headers=headers, ssl=False) as r:
            try:
                data = await r.json(content_type=None)
            except ValueError:
                data = None
            return r.status, data


async def all_answer(http: aiohttp.ClientSession, urls: list[str]) -> bool:
    """Whether every URL answers 200 now."""
    for url in urls:
        try:
            async with http.get(url, ssl=False) as r:
                if r.status != 200:
                    return False
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
    return True


class LoopbackServer:
    """What the harness's server processes (Croft, Synapse) share: a child process, a
    client port and a federation port on 127.0.0.1, stopping, killing, requests.
    Subclasses set ``proc``, ``client_port`` and ``fed_port``."""

    proc: subprocess.Popen[bytes] | None
    client_port: int
    fed_port: int

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def federation_url(self) -> str:
        return f"https://127.0.0.1:{self.fed_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL after ``grace`` s; the exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        return await asyncio.to_thread(stop_process, proc, grace)

    async def kill(self) -> int | None:
        """SIGKILL: a crash, or a power cut as far as the server can tell."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        return await asyncio.to_thread(proc.wait)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        *,
        federation: bool = False,
    ) -> tuple[int, Any]:
        """One request to the client API (or, with ``federation``, the TLS federation
        listener); returns (status, JSON body or None)."""
        base = self.federation_url if federation else self.client_url
        return await http_json(method, base + path, body, token)
