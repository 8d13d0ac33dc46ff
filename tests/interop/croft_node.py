"""A real ``croft run`` process for interop tests: against Synapse, or Croft against Croft.

The data directory is made by ``node.datadir.init_data_dir`` with the server name
``127.0.0.1:<fed_port>`` (an IP literal, so peers need no DNS), the federation listener
(TLS, self-signed) on that port and the client API on ``127.0.0.1:<client_port>``, both
chosen free before init. The node runs as ``python -m node.cli run --data-dir DIR`` with
the caller's environment minus every ``CROFT_*`` variable, plus the ``env`` given (e.g.
``{"CROFT_FEDERATION_VERIFY_CERTIFICATES": "false"}``). stdout and stderr go to
``DIR/croft-run.log``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from tests.interop.util import LoopbackServer, die_with_parent, free_port, tail

OWNER = "alice"
PASSWORD = "correct horse battery staple"
READY_TIMEOUT = 60.0

# Never advertise on the machine's real interfaces (../shared/LAB.md); a test that
# wants LAN discovery runs nodes in network namespaces and passes its own value.
DEFAULT_ENV = {"CROFT_FEATURES_DISCOVERY": "false"}


class CroftError(Exception):
    """The croft process could not be started or used."""


class CroftProcess(LoopbackServer):
    """``croft run`` on its own data directory; ``start``, ``stop``, ``kill``, ``restart``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        client_port: int | None = None,
        fed_port: int | None = None,
        owner: str = OWNER,
        password: str = PASSWORD,
        profile: str = "laptop",
        env: Mapping[str, str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.client_port = client_port or free_port()
        self.fed_port = fed_port or free_port()
        self.owner = owner
        self.password = password
        self.profile = profile
        self.env = {**DEFAULT_ENV, **(env or {})}
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0

    @property
    def server_name(self) -> str:
        return f"127.0.0.1:{self.fed_port}"

    @property
    def user_id(self) -> str:
        return f"@{self.owner}:{self.server_name}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "croft-run.log"

    @property
    def tui_token(self) -> str:
        """The access token ``croft init`` stored for the TUI: usable without a login."""
        return (self.data_dir / "tui.token").read_text("utf-8").strip()

    def init(self) -> None:
        """Create the data directory (once). Blocking: call it from a thread in async code,
        since init_data_dir runs its own event loop."""
        from node.datadir import init_data_dir, is_initialised

        if is_initialised(self.data_dir):
            return
        init_data_dir(
            self.data_dir,
            server_name=self.server_name,
            owner=self.owner,
            password=self.password,
            profile=self.profile,
            client_listen=f"127.0.0.1:{self.client_port}",
            federation_listen=f"127.0.0.1:{self.fed_port}",
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CROFT_")}
        env.update(self.env)
        return env

    async def start(self) -> CroftProcess:
        if self.running:
            raise CroftError(f"croft in {self.data_dir} is already running")
        await asyncio.to_thread(self.init)
        (self.data_dir / "run.json").unlink(missing_ok=True)
        t0 = time.monotonic()
        with self.log_path.open("ab") as log:
            # Popen only forks: it does not wait for the child (ASYNC220 is about run()).
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "node.cli", "run", "--data-dir", str(self.data_dir)],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        try:
            await self._wait_ready()
        except BaseException:
            await self.kill()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    async def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        url = f"{self.client_url}/_matrix/client/versions"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                if self.proc.poll() is not None:
                    raise CroftError(
                        f"croft run exited during start-up (status {self.proc.returncode}):\n"
                        + tail(self.log_path)
                    )
                try:
                    async with http.get(url) as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise CroftError(
                        f"croft run not ready after {self.ready_timeout:.0f} s:\n"
                        + tail(self.log_path)
                    )
                await asyncio.sleep(0.05)

    async def restart(self, *, crash: bool = False) -> CroftProcess:
        await (self.kill() if crash else self.stop())
        return await self.start()

    # -- HTTP --

    async def login(self, device_id: str | None = None) -> str:
        """Log the owner in with the password; returns the access token."""
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": self.owner},
            "password": self.password,
        }
        if device_id is not None:
            body["device_id"] = device_id
        status, data = await self.request("POST", "/_matrix/client/v3/login", body)
        if status != 200:
            raise CroftError(f"owner login: HTTP {status} {data}")
        return str(data["access_token"])
