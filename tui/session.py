"""Where `croft tui` connects: the local node (token from `croft init`) or any
homeserver with a password.

Imports neither textual nor nio: the CLI validates the arguments before loading them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from node.datadir import (
    TUI_DEVICE_ID,
    LocalNodeError,
    is_initialised,
    running_client,
)

TUI_STORE_DIR = "tui-store"  # in the node's data directory


class SessionError(Exception):
    """The TUI cannot connect; the message is one line for the user."""


@dataclass(frozen=True)
class Connection:
    """How to reach a homeserver: an access token, or a password to log in with.

    ``user_id`` may be empty with a token: the app asks ``/account/whoami``.
    """

    homeserver: str
    user_id: str = ""
    token: str | None = None
    password: str | None = None
    device_id: str = ""
    store_dir: Path | None = None
    """The encryption store (Olm account, sessions); None: ``user_store_dir``."""
    data_dir: Path | None = None  # the local node's: its LAN peers (F4) are readable


def local_connection(data_dir: Path) -> Connection:
    """The running node of ``data_dir``, with the token `croft init` stored."""
    if not is_initialised(data_dir):
        raise SessionError(f"no data directory at {data_dir} (create it with `croft init`)")
    try:
        url, token = running_client(data_dir)
    except LocalNodeError as e:
        raise SessionError(str(e)) from None
    return Connection(
        url,
        token=token,
        device_id=TUI_DEVICE_ID,
        data_dir=data_dir,
        store_dir=data_dir / TUI_STORE_DIR,
    )


def user_store_dir(user_id: str, environ: Mapping[str, str] = os.environ) -> Path:
    """The encryption store of ``user_id`` on another homeserver:
    ``$XDG_DATA_HOME/croft/tui/<user ID>`` (``~/.local/share`` without XDG_DATA_HOME)."""
    base = Path(environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "croft" / "tui" / quote(user_id, safe="@:.-_")
