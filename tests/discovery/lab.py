"""The network lab (../shared/LAB.md): nodes in network namespaces on one bridge.

A ``lab-<tag>`` namespace holds the bridge ``br0`` (10.99.0.254) and the test driver;
each node gets a namespace ``h<i>-<tag>`` joined to the bridge by a veth pair, with the
address 10.99.0.<i+1>. No namespace has a default route, so a stray address fails with
"network unreachable" instead of leaving the machine, and mDNS never touches the
machine's real interfaces.

The driver runs in the lab namespace *in this process*: :func:`run_in_netns` runs a
coroutine on an event loop in a thread that has joined the lab namespace with setns(2)
(network namespaces are per thread on Linux; threads it starts inherit it), after
checking that it really is there. Nodes are real ``croft run`` processes started with
``ip netns exec``.

Each node also has a control link to the lab namespace (10.98.<i>.1 on the node's
side, 10.98.<i>.2 on the lab's, a /30 of its own): the driver reaches the node's client
API through it whatever happens to the bridge. The lab namespace does not forward, so
nodes never reach each other through it, and discovery is bound to the bridge address.

Links: :meth:`Lab.cut` takes a node's bridge port down (it hears nobody, mDNS
included) and :meth:`Lab.heal` brings it back; :meth:`Lab.block` cuts the unicast path
between two nodes only (a ``prohibit`` route on each side; multicast still flows).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from tests.interop.users import MatrixUser
from tests.interop.util import die_with_parent, tail

ROOT = Path(__file__).resolve().parents[2]
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
OWNER = "alice"
PASSWORD = "lab password"
CLIENT_PORT = 8008
FEDERATION_PORT = 8448

T = TypeVar("T")


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def unavailable() -> str | None:
    """Why the lab cannot run here, or None."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 `ip` is not installed"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` is unavailable"
    return None


def _netns_inode(path: str) -> int:
    return os.stat(path).st_ino


def run_in_netns(netns: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on a fresh event loop in a thread inside the namespace ``netns``;
    returns its result or raises its exception."""
    box: dict[str, Any] = {}

    def thread() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            # Never run the driver anywhere else: its traffic to 10.99.0.x would leave
            # the machine through the default route of the host's namespace.
            if _netns_inode("/proc/thread-self/ns/net") != _netns_inode(str(NETNS_DIR / netns)):
                raise RuntimeError(f"the driver thread is not in {netns}")
            box["value"] = asyncio.run(main())
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=thread, name=f"lab-driver-{netns}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class Lab:
    """``size`` hosts on one bridge; :meth:`up`, :meth:`down` (always, in a finally)."""

    def __init__(self, size: int) -> None:
        self.tag = secrets.token_hex(3)
        self.name = f"lab-{self.tag}"
        self.hosts = [f"h{i + 1}-{self.tag}" for i in range(size)]
        self.made: list[str] = []
        self.blocked: set[tuple[int, int]] = set()

    def address(self, i: int) -> str:
        return f"10.99.0.{i + 1}"

    def control_address(self, i: int) -> str:
        return f"10.98.{i}.1"

    def _port(self, i: int) -> str:
        return f"p{i}-{self.tag}"

    def up(self) -> None:
        _ip("netns", "add", self.name)
        self.made.append(self.name)
        _ip("-n", self.name, "link", "set", "lo", "up")
        _ip("-n", self.name, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.name, "link", "set", "br0", "up")
        _ip("-n", self.name, "addr", "add", "10.99.0.254/24", "dev", "br0")
        for i, host in enumerate(self.hosts):
            _ip("netns", "add", host)
            self.made.append(host)
            veth = f"v{i}-{self.tag}"
            _ip("link", "add", veth, "netns", host, "type", "veth", "peer", "name",
                self._port(i), "netns", self.name)  # fmt: skip
            _ip("-n", self.name, "link", "set", self._port(i), "master", "br0")
            _ip("-n", self.name, "link", "set", self._port(i), "up")
            _ip("-n", host, "link", "set", "lo", "up")
            _ip("-n", host, "addr", "add", f"{self.address(i)}/24", "dev", veth)
            _ip("-n", host, "link", "set", veth, "up")
            ctl, ctl_peer = f"c{i}-{self.tag}", f"k{i}-{self.tag}"
            _ip("link", "add", ctl, "netns", host, "type", "veth", "peer", "name", ctl_peer,
                "netns", self.name)  # fmt: skip
            _ip("-n", host, "addr", "add", f"10.98.{i}.1/30", "dev", ctl)
            _ip("-n", host, "link", "set", ctl, "up")
            _ip("-n", self.name, "addr", "add", f"10.98.{i}.2/30", "dev", ctl_peer)
            _ip("-n", self.name, "link", "set", ctl_peer, "up")

    def down(self) -> None:
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.made.clear()

    def cut(self, i: int) -> None:
        """Node ``i`` loses its link: nothing reaches it or leaves it."""
        _ip("-n", self.name, "link", "set", self._port(i), "down")

    def heal(self, i: int) -> None:
        _ip("-n", self.name, "link", "set", self._port(i), "up")

    def block(self, i: int, j: int) -> None:
        """Nodes ``i`` and ``j`` can no longer reach each other by unicast."""
        i, j = min(i, j), max(i, j)
        _ip("-n", self.hosts[i], "route", "add", "prohibit", f"{self.address(j)}/32")
        _ip("-n", self.hosts[j], "route", "add", "prohibit", f"{self.address(i)}/32")
        self.blocked.add((i, j))

    def unblock(self, i: int, j: int) -> None:
        i, j = min(i, j), max(i, j)
        _ip("-n", self.hosts[i], "route", "del", "prohibit", f"{self.address(j)}/32")
        _ip("-n", self.hosts[j], "route", "del", "prohibit", f"{self.address(i)}/32")
        self.blocked.discard((i, j))


def lab_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CROFT_") and not k.lower().endswith("_proxy")
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def croft_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "node.cli", *args]


class LabNode:
    """``croft run`` in host namespace ``i`` of ``lab``, server name ``host<i+1>.local``,
    client API on 0.0.0.0:8008 (the driver uses the control link) and federation on
    0.0.0.0:8448 of that namespace, LAN discovery on (on its bridge address only)."""

    def __init__(self, lab: Lab, i: int, data_dir: Path, **env: str) -> None:
        self.lab = lab
        self.i = i
        self.data_dir = data_dir
        self.server_name = f"host{i + 1}.local"
        self.user_id = f"@{OWNER}:{self.server_name}"
        self.address = lab.address(i)
        self.client_url = f"http://{lab.control_address(i)}:{CLIENT_PORT}"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def log_path(self) -> Path:
        return self.data_dir / "run.log"

    @property
    def database(self) -> Path:
        return self.data_dir / "croft.db"

    def init(self) -> None:
        if (self.data_dir / "config.toml").exists():
            return
        args = {
            "--data-dir": str(self.data_dir),
            "--server-name": self.server_name,
            "--owner": OWNER,
            "--password": PASSWORD,
            "--client-listen": f"0.0.0.0:{CLIENT_PORT}",
            "--federation-listen": f"0.0.0.0:{FEDERATION_PORT}",
        }
        subprocess.run(
            croft_command("init", *(x for pair in args.items() for x in pair)),
            check=True,
            capture_output=True,
            cwd=ROOT,
            env=lab_env(),
        )

    def start(self) -> None:
        """Start the process (from the thread that will outlive it: the child dies with
        the thread that started it)."""
        self.init()
        defaults = {
            "CROFT_FEATURES_DISCOVERY": "true",
            "CROFT_DISCOVERY_INTERFACES": self.address,
            "CROFT_LOGGING_LEVEL": "debug",
        }
        env = lab_env(**{**defaults, **self.env})
        log = self.log_path.open("ab")
        try:
            self.started_at = time.time()
            run = croft_command("run", "--data-dir", str(self.data_dir))
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.lab.hosts[self.i], *run],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def tail(self, lines: int = 60) -> str:
        return f"--- {self.server_name} ---\n" + tail(self.log_path, lines)

    async def wait_ready(self, http: aiohttp.ClientSession, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while True:
            if not self.running:
                raise AssertionError(f"{self.server_name} exited:\n{self.tail()}")
            try:
                async with http.get(f"{self.client_url}/_matrix/client/versions") as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.server_name} not ready:\n{self.tail()}")
            await asyncio.sleep(0.05)

    async def login(self, http: aiohttp.ClientSession) -> MatrixUser:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": OWNER},
            "password": PASSWORD,
        }
        url = f"{self.client_url}/_matrix/client/v3/login"
        async with http.post(url, json=body) as r:
            data = await r.json()
            assert r.status == 200, data
        return MatrixUser(http, self.client_url, data["user_id"], data["access_token"])


@contextmanager
def lab_up(size: int, purpose: str = "") -> Iterator[Lab]:
    """A lab of ``size`` hosts, up, torn down whatever happens; the test is skipped
    (saying why, and what for) where network namespaces are unavailable."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"{purpose} needs the network lab: {reason}" if purpose else reason)
    lab = Lab(size)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
