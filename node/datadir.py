"""The data directory: what `croft init` creates and where `croft run` finds it.

Layout::

    config.toml      documented configuration (see node/config.py)
    signing.key      ed25519 server signing key, mode 0600
    old_verify_keys  public halves of retired signing keys (`croft keys rotate`),
                     published as old_verify_keys; absent until the first rotation
    tls.crt/tls.key  self-signed federation certificate (key 0600)
    croft.db         SQLite database (+ -wal, -shm)
    tui.token        access token of the local TUI's device, mode 0600
    run.json         written while the node runs: pid and listeners (`croft status`)
    run.lock         locked by the running node: one `croft run` per data directory
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.config import (
    CONFIG_FILE,
    DEFAULT_PROFILE,
    ConfigError,
    ListenAddress,
    load_profile,
    render_config_file,
)
from node.ids import InvalidId, ServerName, UserID

SIGNING_KEY_FILE = "signing.key"
OLD_KEYS_FILE = "old_verify_keys"
TUI_TOKEN_FILE = "tui.token"
RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
TUI_DEVICE_ID = "CROFTTUI"


def default_data_dir() -> Path:
    """``$CROFT_HOME``, else the platform's user data directory for croft."""
    home = os.environ.get("CROFT_HOME")
    if home:
        return Path(home).expanduser()
    import platformdirs  # only when no data directory was given

    return Path(platformdirs.user_data_dir("croft", appauthor=False))


def default_server_name() -> str:
    """The mDNS host name of this machine: ``<host>.local``."""
    host = socket.gethostname().split(".")[0].lower()
    host = re.sub(r"[^a-z0-9-]", "-", host).strip("-") or "croft"
    return f"{host}.local"


def default_owner() -> str:
    try:
        import getpass

        name = getpass.getuser().lower()
    except (KeyError, OSError):  # no passwd entry in some containers
        name = ""
    name = re.sub(r"[^a-z0-9._=/+-]", "", name)
    return name if name and name != "root" else "owner"


@dataclass(frozen=True)
class InitResult:
    data_dir: Path
    server_name: str
    user_id: str
    password: str | None  # set when it was generated, to be shown once


def is_initialised(data_dir: Path) -> bool:
    return (data_dir / CONFIG_FILE).exists()


def validate_init_args(
    server_name: str,
    owner: str,
    profile: str,
    client_listen: str | None,
    federation_listen: str | None,
) -> None:
    try:
        ServerName.parse(server_name)
    except InvalidId as e:
        raise ConfigError(
            f"--server-name {server_name!r} is not a valid server name: {e}"
        ) from None
    if not UserID.is_valid_new_localpart(owner):
        raise ConfigError(f"--owner {owner!r} is not a valid user name (use a-z, 0-9 and ._=-/+)")
    load_profile(profile)
    for flag, value in (
        ("--client-listen", client_listen),
        ("--federation-listen", federation_listen),
    ):
        if value is not None:
            try:
                ListenAddress.parse(value)
            except ValueError as e:
                raise ConfigError(f"{flag}: {e}") from None


def init_data_dir(
    data_dir: Path,
    *,
    server_name: str | None = None,
    owner: str | None = None,
    password: str | None = None,
    profile: str = DEFAULT_PROFILE,
    client_listen: str | None = None,
    federation_listen: str | None = None,
) -> InitResult:
    """Create a new data directory with config, keys, certificate, owner and TUI token."""
    from node.accounts import generate_password

    server_name = server_name or default_server_name()
    owner = owner or default_owner()
    if password == "":
        raise ConfigError("--password must not be empty (leave it out to have one generated)")
    validate_init_args(server_name, owner, profile, client_listen, federation_listen)
    if is_initialised(data_dir):
        raise ConfigError(f"{data_dir} is already initialised ({CONFIG_FILE} exists)")
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise ConfigError(f"cannot create data directory {data_dir}: {e.strerror}") from None
    generated = password is None
    password = password or generate_password()

    from node.federation.keys import create_signing_key_file
    from node.federation.tls import create_self_signed_certificate

    key_path = data_dir / SIGNING_KEY_FILE
    if not key_path.exists():
        create_signing_key_file(key_path)
    create_self_signed_certificate(server_name, data_dir / "tls.crt", data_dir / "tls.key")
    user_id, token = asyncio.run(_create_owner(data_dir, server_name, owner, password, profile))
    write_secret(data_dir / TUI_TOKEN_FILE, token + "\n")
    # The config file is written last: its presence marks a complete init.
    (data_dir / CONFIG_FILE).write_text(
        render_config_file(server_name, profile, client_listen, federation_listen), "utf-8"
    )
    return InitResult(data_dir, server_name, user_id, password if generated else None)


async def _create_owner(
    data_dir: Path, server_name: str, owner: str, password: str, profile: str
) -> tuple[str, str]:
    from node.accounts import AccountService
    from node.storage.accounts import AccountStore
    from node.storage.database import Database

    cache = int(load_profile(profile).get("storage", {}).get("sqlite_cache_kib", 8192))
    db_path = data_dir / "croft.db"
    # The database holds the password hash and the messages: create it 0600 (SQLite
    # gives its -wal and -shm files the same mode), whatever the umask.
    os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT, 0o600))
    db = await Database.open(db_path, cache_kib=cache)
    try:
        accounts = AccountService(AccountStore(db), server_name)
        user_id = f"@{owner}:{server_name}"
        if not await accounts.store.account_exists(user_id):
            await accounts.create_owner(owner, password)
        session = await accounts.new_session(user_id, TUI_DEVICE_ID, "Croft TUI")
        return user_id, session.access_token
    finally:
        await db.close()


def write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def lock_data_dir(data_dir: Path) -> int | None:
    """Claim the data directory for this process (one `croft run` at a time).

    Returns the descriptor holding the lock (close it to release; the kernel releases
    it when the process ends, however it ends), or None where ``fcntl`` is missing.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not a POSIX system
        return None
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        run = read_run_file(data_dir) or {}
        pid = f" (pid {run['pid']})" if "pid" in run else ""
        raise ConfigError(f"{data_dir} is in use by another `croft run`{pid}") from None
    return fd


def write_run_file(data_dir: Path, info: dict[str, Any]) -> None:
    tmp = data_dir / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2), "utf-8")
    tmp.replace(data_dir / RUN_FILE)


def read_run_file(data_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((data_dir / RUN_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this ID exists (run.json's pid: the node's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's
    return True


def client_url(run: dict[str, Any]) -> str | None:
    """The URL a local program reaches the node's client API at, from its run.json
    (a wildcard listener is reached on loopback); None when it names none."""
    addr = str(run.get("listeners", {}).get("client", ""))
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        return None
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
    return f"http://{host}:{port}"


class LocalNodeError(Exception):
    """The local node's client API or the owner's token cannot be had; one line for the
    user."""


def owner_token(data_dir: Path) -> str:
    """The owner's access token `croft init` stored in ``DIR/tui.token``, for local
    programs (the TUI, `croft publish`, `croft call`)."""
    token_file = data_dir / TUI_TOKEN_FILE
    try:
        token = token_file.read_text("utf-8").strip()
    except OSError as e:
        raise LocalNodeError(f"cannot read the access token {token_file}: {e.strerror}") from None
    if not token:
        raise LocalNodeError(f"the access token file {token_file} is empty")
    return token


def running_client(data_dir: Path) -> tuple[str, str]:
    """The client API URL of the running node of ``data_dir`` and the owner's token."""
    run = read_run_file(data_dir)
    if run is None or not pid_alive(int(run.get("pid", 0))):
        raise LocalNodeError(f"the node of {data_dir} is not running (start it with `croft run`)")
    url = client_url(run)
    if url is None:
        raise LocalNodeError(f"{data_dir}/run.json names no client listener")
    return url, owner_token(data_dir)


def remove_run_file(data_dir: Path) -> None:
    try:
        (data_dir / RUN_FILE).unlink()
    except FileNotFoundError:
        pass
