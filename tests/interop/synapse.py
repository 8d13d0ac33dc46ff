"""A real Synapse for interop tests: installed from PyPI into a cached venv, run on loopback.

Installing it: tests/interop/synapse_install.py (``ensure_synapse``).

``SynapseServer`` runs ``python -m synapse.app.homeserver`` with SQLite in a directory of
its own: the client API on plain HTTP at ``127.0.0.1:client_port``, federation and the key
API on TLS at ``127.0.0.1:fed_port``, server name ``127.0.0.1:fed_port`` (an IP literal:
no .well-known, no SRV, no DNS). Nothing may leave loopback: ``trusted_key_servers`` is
empty, phone-home stats and URL previews are off, and Synapse's outbound IP block list
covers every address except 127.0.0.0/8 (127.0.0.0/8 must be *absent* from the block
list: for IP literal server names the allow list alone does not help). Rate limits are
off and the federation retry back-off is seconds, not minutes, so tests do not stall.

Spec: the server-server API (content/server-server-api.md); Synapse's admin API
"Shared-Secret Registration" for ``register``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from node.federation.tls import create_self_signed_certificate
from tests.interop.synapse_install import SynapseError, SynapseInstall
from tests.interop.util import (
    LoopbackServer,
    all_answer,
    die_with_parent,
    free_port,
    tail,
)

READY_TIMEOUT = 90.0


# -- the configuration ----------------------------------------------------------------------

_UNLIMITED = {"per_second": 100000, "burst_count": 1000000}

# Outbound block list: every IPv4 address except 127.0.0.0/8, and all of IPv6.
_BLOCK_ALL_BUT_LOOPBACK = [
    "0.0.0.0/2",
    "64.0.0.0/3",
    "96.0.0.0/4",
    "112.0.0.0/5",
    "120.0.0.0/6",
    "124.0.0.0/7",
    "126.0.0.0/8",
    "128.0.0.0/1",
    "::/0",
]


def homeserver_config(
    d: Path,
    client_port: int,
    fed_port: int,
    secret: Mapping[str, str],
    default_room_version: str | None,
) -> dict[str, Any]:
    u = _UNLIMITED
    config: dict[str, Any] = {
        "server_name": f"127.0.0.1:{fed_port}",
        "public_baseurl": f"http://127.0.0.1:{client_port}/",
        "report_stats": False,
        "listeners": [
            {
                "port": client_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            },
            {  # "federation" also serves /_matrix/key/v2 (server keys and the notary)
                "port": fed_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": True,
                "x_forwarded": False,
                "resources": [{"names": ["federation"], "compress": False}],
            },
        ],
        "tls_certificate_path": str(d / "tls.crt"),
        "tls_private_key_path": str(d / "tls.key"),
        "database": {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}},
        "log_config": str(d / "log.config"),
        "media_store_path": str(d / "media_store"),
        "signing_key_path": str(d / "signing.key"),
        "registration_shared_secret": secret["registration"],
        "macaroon_secret_key": secret["macaroon"],
        "form_secret": secret["form"],
        # -- never talk to anything but loopback --
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "url_preview_enabled": False,
        "ip_range_blacklist": _BLOCK_ALL_BUT_LOOPBACK,
        "ip_range_whitelist": ["127.0.0.0/8"],
        "federation_verify_certificates": False,  # peers' certificates are self-signed
        # -- fast to start, nothing a test does not need --
        "enable_metrics": False,
        "enable_media_repo": False,  # pass extra_config={"enable_media_repo": True} for media
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "bcrypt_rounds": 4,  # the default 12 costs ~0.25 s per register or login
        # -- no rate limits --
        "rc_message": u,
        "rc_registration": u,
        "rc_registration_token_validity": u,
        "rc_login": {"address": u, "account": u, "failed_attempts": u},
        "rc_joins": {"local": u, "remote": u},
        "rc_joins_per_room": u,
        "rc_invites": {"per_room": u, "per_user": u, "per_issuer": u},
        "rc_third_party_invite": u,
        "rc_3pid_validation": u,
        "rc_admin_redaction": u,
        "rc_key_requests": u,
        "rc_media_create": u,
        "rc_presence": {"per_user": u},
        "rc_delayed_event_mgmt": u,
        "rc_room_creation": u,
        "rc_reports": u,
        "rc_user_directory": u,
        "rc_profile": u,
        "rc_federation": {
            "window_size": 1000,
            "sleep_limit": 100000,
            "sleep_delay": 1,
            "reject_limit": 1000000,
            "concurrent": 10000,
        },
        "federation_rr_transactions_per_room_per_second": 100000,
        # A peer that was down is normally backed off for 10 min up to days (kept in the
        # database); tests restart peers and need it retried within seconds.
        "federation": {
            "client_timeout": "30s",
            "max_short_retry_delay": "1s",
            "max_long_retry_delay": "5s",
            "destination_min_retry_interval": "2s",
            "destination_max_retry_interval": "15s",
        },
    }
    if default_room_version is not None:
        config["default_room_version"] = default_room_version
    return config


def log_config(d: Path, level: str) -> dict[str, Any]:
    return {
        "version": 1,
        "formatters": {
            "precise": {
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                "%(request)s - %(message)s"
            }
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(d / "homeserver.log"),
                "encoding": "utf8",
            },
        },
        "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
        "root": {"level": level, "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


def write_signing_key(path: Path) -> None:
    """Synapse's key file format: ``ed25519 <version> <unpadded base64 seed>``."""
    import base64

    import nacl.signing

    seed = bytes(nacl.signing.SigningKey.generate())
    version = "a_" + secrets.token_hex(2)
    line = f"ed25519 {version} {base64.b64encode(seed).decode().rstrip('=')}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(line)


# -- the server -----------------------------------------------------------------------------


class SynapseServer(LoopbackServer):
    """One Synapse homeserver in ``directory``; ``start()``, ``stop()``, ``restart()``.

    The directory keeps the database, keys and secrets, so a restart (or a new
    SynapseServer on the same directory and ports) is the same server. The ports cannot
    change: they are part of the server name."""

    def __init__(
        self,
        install: SynapseInstall,
        directory: Path,
        client_port: int | None = None,
        fed_port: int | None = None,
        *,
        default_room_version: str | None = "12",
        extra_config: Mapping[str, Any] | None = None,
        log_level: str = "INFO",
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.install = install
        self.dir = directory.resolve()
        self.client_port = client_port or free_port()
        self.fed_port = fed_port or free_port()
        if self.client_port == self.fed_port:
            raise ValueError("client and federation ports must differ")
        self.default_room_version = default_room_version
        self.extra_config = dict(extra_config or {})
        self.log_level = log_level
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0  # how long the last start took, until both listeners answered

    @property
    def server_name(self) -> str:
        return f"127.0.0.1:{self.fed_port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "homeserver.log"

    def log_tail(self, lines: int = 40) -> str:
        return (
            f"--- {self.dir / 'stdout.log'} ---\n{tail(self.dir / 'stdout.log', lines)}\n"
            f"--- {self.log_path} ---\n{tail(self.log_path, lines)}"
        )

    # -- files --

    def _secrets(self) -> dict[str, str]:
        path = self.dir / "secrets.json"
        if path.exists():
            return dict(json.loads(path.read_text("utf-8")))
        secret = {k: secrets.token_hex(24) for k in ("registration", "macaroon", "form")}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(secret, f)
        return secret

    def write_files(self) -> None:
        """homeserver.yaml, log.config, signing key, certificate (the last two only once)."""
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        (d / "media_store").mkdir(exist_ok=True)
        name_file = d / "server_name"
        if name_file.exists() and name_file.read_text().strip() != self.server_name:
            raise SynapseError(
                f"{d} belongs to {name_file.read_text().strip()}, not {self.server_name}: "
                "Synapse refuses a changed server name; use a fresh directory"
            )
        name_file.write_text(self.server_name + "\n")
        if not (d / "signing.key").exists():
            write_signing_key(d / "signing.key")
        if not (d / "tls.crt").exists() or not (d / "tls.key").exists():
            # The same self-signed certificate `croft init` makes, for 127.0.0.1.
            create_self_signed_certificate("127.0.0.1", d / "tls.crt", d / "tls.key")
        config = homeserver_config(
            d, self.client_port, self.fed_port, self._secrets(), self.default_room_version
        )
        config.update(self.extra_config)  # top-level keys replace the generated ones
        header = "# Written by tests/interop/synapse.py: a loopback-only test homeserver.\n"
        (d / "homeserver.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
        (d / "log.config").write_text(yaml.safe_dump(log_config(d, self.log_level)))

    # -- process --

    def _env(self) -> dict[str, str]:
        # No proxies (outbound must stay on loopback) and none of the SYNAPSE_* knobs of
        # the caller's environment.
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
        return {k: v for k, v in os.environ.items() if k in keep}

    async def start(self) -> SynapseServer:
        if self.running:
            raise SynapseError(f"Synapse in {self.dir} is already running")
        await asyncio.to_thread(self.write_files)
        t0 = time.monotonic()
        stdout = (self.dir / "stdout.log").open("ab")
        try:
            # Popen only forks: it does not wait for the child (ASYNC220 is about run()).
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                [
                    str(self.install.python),
                    "-m",
                    "synapse.app.homeserver",
                    "-c",
                    str(self.dir / "homeserver.yaml"),
                ],
                cwd=self.dir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        finally:
            stdout.close()
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    async def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        urls = [
            f"{self.client_url}/_matrix/client/versions",
            f"{self.federation_url}/_matrix/federation/v1/version",
        ]
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                if self.proc.poll() is not None:
                    raise SynapseError(
                        f"Synapse exited during start-up (status {self.proc.returncode}):\n"
                        + self.log_tail()
                    )
                if await all_answer(http, urls):
                    return
                if time.monotonic() > deadline:
                    raise SynapseError(
                        f"Synapse not ready after {self.ready_timeout:.0f} s:\n" + self.log_tail()
                    )
                await asyncio.sleep(0.1)

    async def restart(self) -> SynapseServer:
        await self.stop()
        return await self.start()

    # -- HTTP --

    async def register(self, user: str, password: str, admin: bool = False) -> tuple[str, str, str]:
        """Create a user with the shared-secret admin API; (user_id, access_token, device_id)."""
        status, body = await self.request("GET", "/_synapse/admin/v1/register")
        if status != 200:
            raise SynapseError(f"register nonce: HTTP {status} {body}")
        nonce = body["nonce"]
        mac = hmac.new(self._secrets()["registration"].encode(), digestmod=hashlib.sha1)
        for part in (nonce, user, password):
            mac.update(part.encode() + b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        status, body = await self.request(
            "POST",
            "/_synapse/admin/v1/register",
            {
                "nonce": nonce,
                "username": user,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        if status != 200:
            raise SynapseError(f"register {user}: HTTP {status} {body}")
        return body["user_id"], body["access_token"], body["device_id"]

    async def login(self, user: str, password: str) -> tuple[str, str, str]:
        """Password login; (user_id, access_token, device_id)."""
        status, body = await self.request(
            "POST",
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user},
                "password": password,
            },
        )
        if status != 200:
            raise SynapseError(f"login {user}: HTTP {status} {body}")
        return body["user_id"], body["access_token"], body["device_id"]
