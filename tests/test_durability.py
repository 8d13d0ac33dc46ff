"""An acknowledged write is durable: a `croft run` process killed with SIGKILL while
8 clients send as fast as they can has, after a restart, every event (and every
login) it acknowledged, byte for byte valid."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from node.datadir import read_run_file
from tests.conftest import OWNER, PASSWORD

LOAD_SECONDS = 2.0
SENDERS = 8


def croft_command() -> list[str]:
    script = Path(sys.executable).parent / "croft"
    return [str(script)] if script.exists() else [sys.executable, "-m", "node.cli"]


async def start_node(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROFT_")}
    env["CROFT_FEATURES_DISCOVERY"] = "false"  # never announce from the host's namespace
    (data_dir / "run.json").unlink(missing_ok=True)
    proc = subprocess.Popen(  # noqa: ASYNC220 (spawning does not block; we never wait here)
        [*croft_command(), "run", "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            run = read_run_file(data_dir)
            if run and run.get("pid") == proc.pid:
                url = f"http://{run['listeners']['client']}"
                try:
                    async with http.get(f"{url}/_matrix/client/versions") as r:
                        if r.status == 200:
                            return proc, url
                except aiohttp.ClientError:
                    pass
            await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("croft run did not come up within 30 s")


async def login(http: aiohttp.ClientSession, url: str) -> str:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OWNER},
        "password": PASSWORD,
    }
    async with http.post(f"{url}/_matrix/client/v3/login", json=body) as r:
        assert r.status == 200
        return str((await r.json())["access_token"])


async def test_sigkill_under_load_loses_nothing_acknowledged(data_dir: Path) -> None:
    proc, url = await start_node(data_dir)
    acked: dict[str, dict[str, Any]] = {}
    acked_tokens: list[str] = []
    try:
        async with aiohttp.ClientSession() as http:
            token = await login(http, url)
            auth = {"Authorization": f"Bearer {token}"}
            async with http.post(f"{url}/_matrix/client/v3/createRoom", json={}, headers=auth) as r:
                room_id = (await r.json())["room_id"]
            stop_at = time.monotonic() + LOAD_SECONDS

            async def sender(n: int) -> None:
                i = 0
                while time.monotonic() < stop_at:
                    content = {"msgtype": "m.text", "body": f"sender {n} message {i}"}
                    try:
                        async with http.put(
                            f"{url}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/s{n}-{i}",
                            json=content,
                            headers=auth,
                        ) as r:
                            if r.status == 200:
                                acked[(await r.json())["event_id"]] = content
                    except aiohttp.ClientError:
                        return  # the node died under us: what was acked is what counts
                    i += 1

            async def logger_in() -> None:
                while time.monotonic() < stop_at:
                    try:
                        acked_tokens.append(await login(http, url))
                    except (aiohttp.ClientError, AssertionError):
                        return

            async def killer() -> None:
                # Kill mid-load, without warning, while requests are in flight.
                await asyncio.sleep(LOAD_SECONDS * 0.75)
                os.kill(proc.pid, signal.SIGKILL)

            await asyncio.gather(*(sender(n) for n in range(SENDERS)), logger_in(), killer())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    print(f"acknowledged before SIGKILL: {len(acked)} events, {len(acked_tokens)} logins")
    assert len(acked) > 50, f"too little load to mean anything: {len(acked)} events"

    proc, url = await start_node(data_dir)
    try:
        async with aiohttp.ClientSession() as http:
            token = await login(http, url)
            auth = {"Authorization": f"Bearer {token}"}
            missing = []
            for event_id, content in acked.items():
                async with http.get(
                    f"{url}/_matrix/client/v3/rooms/{room_id}/event/{event_id}", headers=auth
                ) as r:
                    if r.status != 200 or (await r.json())["content"] != content:
                        missing.append(event_id)
            assert not missing, f"{len(missing)} of {len(acked)} acknowledged events lost"
            for t in acked_tokens:
                async with http.get(
                    f"{url}/_matrix/client/v3/account/whoami",
                    headers={"Authorization": f"Bearer {t}"},
                ) as r:
                    assert r.status == 200, "an acknowledged login was lost"
            # The room still works after the crash: a new event builds on the stored head.
            async with http.put(
                f"{url}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/after-crash",
                json={"msgtype": "m.text", "body": "still here"},
                headers=auth,
            ) as r:
                assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode == 0
