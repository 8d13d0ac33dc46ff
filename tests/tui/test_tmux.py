"""The real ``croft tui`` in a terminal (issue #7, "what it must show"): tmux runs it
against a ``croft run`` node, keys go in with ``send-keys`` and the screen comes back
with ``capture-pane``.

Two real ``croft run`` processes federate on loopback (tests/interop/croft_node.py,
LAN discovery off): the owner's node A, whose data directory ``croft tui`` connects
to, and node B, whose owner is a matrix-nio client. B's owner makes the room and
invites A's owner, who joins over federation (client-server API 10.x room membership)
before the TUI starts. Then the owner types a message that the nio client receives in
its /sync (10.4), and the nio client's message appears on the owner's screen.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import nio
import pytest

from tests.interop.croft_node import CroftProcess
from tests.interop.users import MatrixUser, invited
from tests.interop.util import tail

WITHIN = 20.0  # generous: a loaded 2-core machine
ROOM_NAME = "Tmux Porch"


def croft_command() -> list[str]:
    """The installed ``croft`` next to this Python, else ``python -m node.cli``."""
    script = Path(sys.executable).with_name("croft")
    return [str(script)] if script.exists() else [sys.executable, "-m", "node.cli"]


class Tmux:
    """A tmux server of its own (``-L``, no config file) with one detached session."""

    def __init__(self) -> None:
        self.socket = f"croft-test-{uuid.uuid4().hex[:12]}"
        self.session = "tui"
        self.socket_path = ""

    def run(self, *args: str) -> str:
        cmd = ["tmux", "-L", self.socket, "-f", "/dev/null", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}: {done.stderr.strip()}")
        return done.stdout

    def start(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        # tmux gives the pane its own TERM (default-terminal): set it in the command. The
        # exit status stays on screen, so a crash is readable in capture().
        shell = "TERM=xterm-256color " + " ".join(quote_sh(c) for c in command)
        shell += '; echo "[croft tui exited: $?]"'
        shell += "; sleep 600"
        args = ["new-session", "-d", "-s", self.session, "-x", "120", "-y", "40"]
        args += ["-c", str(cwd), "sh", "-c", shell]
        cmd = ["tmux", "-L", self.socket, "-f", "/dev/null", *args]
        subprocess.run(cmd, env=env, check=True, timeout=10, capture_output=True)
        self.socket_path = self.run("display-message", "-p", "#{socket_path}").strip()

    def capture(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", self.session, *(["-l"] if literal else []), *keys)

    def kill(self) -> None:
        cmd = ["tmux", "-L", self.socket, "kill-server"]
        subprocess.run(cmd, capture_output=True, timeout=10, check=False)
        if self.socket_path:  # the server leaves its socket file behind
            Path(self.socket_path).unlink(missing_ok=True)


def quote_sh(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


async def eventually(
    check: Callable[[], Awaitable[object]], what: str, why: Callable[[], str] = str
) -> object:
    """``await check()`` until it is truthy (its value is returned), within ``WITHIN``."""
    deadline = time.monotonic() + WITHIN
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {WITHIN} s: {what}\n{why()}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[CroftProcess, CroftProcess]]:
    a, b = CroftProcess(tmp_path / "a"), CroftProcess(tmp_path / "b", owner="bea")
    try:
        await asyncio.gather(a.start(), b.start())
        yield a, b
    finally:
        await asyncio.gather(a.stop(), b.stop())


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    server = Tmux()
    yield server
    server.kill()


@pytest.fixture
async def bea(nodes: tuple[CroftProcess, CroftProcess]) -> AsyncIterator[nio.AsyncClient]:
    """Node B's owner, a matrix-nio client (no encryption: the room is not encrypted)."""
    b = nodes[1]
    config = nio.AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False)
    client = nio.AsyncClient(b.client_url, b.user_id, store_path="", config=config)
    login = await client.login(b.password, device_name="tmux test")
    assert isinstance(login, nio.LoginResponse), login
    try:
        yield client
    finally:
        await client.close()


def bodies(response: nio.SyncResponse, room_id: str) -> list[str]:
    joined = response.rooms.join.get(room_id)
    events = joined.timeline.events if joined else []
    return [e.body for e in events if isinstance(e, nio.RoomMessageText)]


async def test_croft_tui_in_tmux_talks_to_a_nio_client(
    nodes: tuple[CroftProcess, CroftProcess], bea: nio.AsyncClient, tmux: Tmux
) -> None:
    a, b = nodes
    async with aiohttp.ClientSession() as http:
        alice = MatrixUser(http, a.client_url, a.user_id, await a.login())
        created = await bea.room_create(name=ROOM_NAME, invite=[a.user_id])
        assert isinstance(created, nio.RoomCreateResponse), created
        room = created.room_id
        await alice.sync_until(invited(room), within=WITHIN)
        await alice.call("POST", f"/join/{quote(room)}?server_name={quote(b.server_name)}", {})
    first = await bea.sync(timeout=0)
    assert isinstance(first, nio.SyncResponse), first

    env = {k: v for k, v in os.environ.items() if not k.startswith("CROFT_")}
    env["CROFT_FEATURES_DISCOVERY"] = "false"  # the TUI starts no node; this is belt and braces
    tmux.start([*croft_command(), "tui", "--data-dir", str(a.data_dir)], env, Path.cwd())

    def screen() -> str:
        return f"--- the screen ---\n{tmux.capture()}\n--- node A ---\n{tail(a.log_path, 15)}"

    async def shows(text: str) -> bool:
        return text in tmux.capture()

    await eventually(lambda: shows(ROOM_NAME), "the room on screen", screen)

    # The owner types; the composer has the focus.
    tmux.keys("hello from the terminal", literal=True)
    tmux.keys("Enter")

    async def bea_received() -> bool:
        response = await bea.sync(timeout=1000, since=bea.next_batch)
        assert isinstance(response, nio.SyncResponse), response
        return "hello from the terminal" in bodies(response, room)

    await eventually(bea_received, "the owner's message in the nio client's /sync", screen)

    sent = await bea.room_send(
        room, "m.room.message", {"msgtype": "m.text", "body": "hello from nio"}
    )
    assert isinstance(sent, nio.RoomSendResponse), sent
    await eventually(lambda: shows("hello from nio"), "nio's message on screen", screen)
    lines = tmux.capture().splitlines()
    assert any("bea" in line and "hello from nio" in line for line in lines), screen()
    assert any("alice" in line and "hello from the terminal" in line for line in lines), screen()
