"""Three `croft run` nodes on one LAN find each other (issue #5, must-show 1).

The lab (../shared/LAB.md): a ``lab`` namespace holding a bridge, and one namespace
per node joined to it by a veth pair; no namespace has a default route, so no packet
can leave the machine, and mDNS never touches the machine's real interfaces. The
driver makes no network traffic at all: it reads each node's peer registry from its
SQLite file; the final `croft peers --json` runs inside the lab namespace.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.discovery.registry import ALIVE, read_peers

ROOT = Path(__file__).resolve().parents[2]
HOSTS = 3
WAIT_S = 30.0  # give up after this; the bound checked is the 5 s below
BOUND_S = 5.0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _lab_available() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 `ip` is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True)
    if probe.returncode != 0:
        return "`ip netns` is unavailable"
    return None


class Lab:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.lab = f"lab-{tag}"
        self.hosts = [f"h{i}-{tag}" for i in range(1, HOSTS + 1)]
        self.made: list[str] = []

    def address(self, i: int) -> str:
        return f"10.99.0.{i + 1}"

    def up(self) -> None:
        _ip("netns", "add", self.lab)
        self.made.append(self.lab)
        _ip("-n", self.lab, "link", "set", "lo", "up")
        _ip("-n", self.lab, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.lab, "link", "set", "br0", "up")
        _ip("-n", self.lab, "addr", "add", "10.99.0.254/24", "dev", "br0")
        for i, host in enumerate(self.hosts):
            _ip("netns", "add", host)
            self.made.append(host)
            veth, port = f"veth{i}", f"port{i}"
            _ip("link", "add", veth, "netns", host, "type", "veth", "peer", "name", port,
                "netns", self.lab)  # fmt: skip
            _ip("-n", self.lab, "link", "set", port, "master", "br0")
            _ip("-n", self.lab, "link", "set", port, "up")
            _ip("-n", host, "link", "set", "lo", "up")
            _ip("-n", host, "addr", "add", f"{self.address(i)}/24", "dev", veth)
            _ip("-n", host, "link", "set", veth, "up")

    def down(self) -> None:
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.made.clear()


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = _lab_available()
    if reason is not None:
        pytest.skip(reason)
    lab = Lab()
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROFT_")}
    env.update(extra)
    return env


def _croft(*args: str) -> list[str]:
    return [sys.executable, "-m", "node.cli", *args]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_each_node_lists_the_other_two(lab: Lab, tmp_path: Path) -> None:
    names = [f"host{i + 1}.local" for i in range(HOSTS)]
    dirs = [tmp_path / f"node{i + 1}" for i in range(HOSTS)]
    for name, d in zip(names, dirs, strict=True):
        subprocess.run(
            _croft(
                "init",
                "--data-dir",
                str(d),
                "--server-name",
                name,
                "--owner",
                "alice",
                "--password",
                "pw",
                "--client-listen",
                "127.0.0.1:8008",
                "--federation-listen",
                "0.0.0.0:8448",
            ),
            check=True,
            capture_output=True,
            cwd=ROOT,
            env=_env(),
        )
    procs: list[subprocess.Popen[bytes]] = []
    logs = [(d / "run.log").open("wb") for d in dirs]
    try:
        for i, (host, d) in enumerate(zip(lab.hosts, dirs, strict=True)):
            env = _env(
                CROFT_FEATURES_DISCOVERY="true",
                CROFT_DISCOVERY_INTERFACES=lab.address(i),
                CROFT_LOGGING_LEVEL="debug",
            )
            procs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", host, *_croft("run", "--data-dir", str(d))],
                    cwd=ROOT,
                    env=env,
                    stdout=logs[i],
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + WAIT_S
        seen: list[set[str]] = [set() for _ in dirs]
        while time.monotonic() < deadline:
            for i, d in enumerate(dirs):
                assert procs[i].poll() is None, (d / "run.log").read_text()
                if (d / "croft.db").exists():
                    peers, _ = read_peers(d / "croft.db")
                    seen[i] = {p.server_name for p in peers if p.state == ALIVE}
            if all(seen[i] == set(names) - {names[i]} for i in range(HOSTS)):
                break
            time.sleep(0.1)
        assert seen == [set(names) - {n} for n in names], [
            (d / "run.log").read_text()[-3000:] for d in dirs
        ]
        # The nodes' own clocks: first check of each peer against the node's start.
        for i, d in enumerate(dirs):
            started = json.loads((d / "run.json").read_text())["started_at"]
            out = subprocess.run(
                ["ip", "netns", "exec", lab.lab, *_croft("peers", "--json", "--data-dir", str(d))],
                check=True,
                capture_output=True,
                cwd=ROOT,
                env=_env(),
            )
            listed = json.loads(out.stdout)
            assert listed["refused"] == []
            by_name = {p["server_name"]: p for p in listed["peers"]}
            assert set(by_name) == set(names) - {names[i]}
            for peer in by_name.values():
                j = names.index(peer["server_name"])
                assert peer["addresses"] == [lab.address(j)]
                assert peer["port"] == 8448
                took = peer["first_seen_ts"] / 1000 - started
                print(f"{names[i]} found {peer['server_name']} {took:.2f} s after start")
                assert took <= BOUND_S
    finally:
        _stop(procs)
        for f in logs:
            f.close()
