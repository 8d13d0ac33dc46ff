"""The call agent's own Matrix client: the few client-server API calls a headless call
needs, on aiohttp (no matrix-nio, no Textual: `croft call` stays small on a sensor
board).

Spec sections (client-server API): 5.x ``GET /account/whoami``; 10.4 ``/sync`` with an
inline filter (only ``m.call.*`` timeline events and membership); 10.6 ``PUT
/rooms/{roomId}/send/{eventType}/{txnId}``; 10.x ``GET /directory/room/{roomAlias}``;
13.3 "Voice over IP", ``GET /voip/turnServer``.

The agent is a device of the owner of its own: ``CROFTCALL``, its access token minted
once into ``DATA_DIR/call.token`` straight in the node's database (the same way `croft
init` mints the TUI's), so its ``party_id`` and its sync position are its own.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

CALL_DEVICE_ID = "CROFTCALL"
CALL_TOKEN_FILE = "call.token"
CALL_TYPES = [
    "m.call.invite",
    "m.call.candidates",
    "m.call.answer",
    "m.call.select_answer",
    "m.call.negotiate",
    "m.call.reject",
    "m.call.hangup",
]
SYNC_FILTER = {
    "presence": {"types": []},
    "account_data": {"types": []},
    "room": {
        "timeline": {"types": CALL_TYPES, "limit": 50},
        "state": {"types": ["m.room.member"], "lazy_load_members": True},
        "ephemeral": {"types": []},
        "account_data": {"types": []},
    },
}
REQUEST_TIMEOUT_S = 60.0


class CallClientError(Exception):
    """The homeserver refused or could not be reached; one line for the user."""


@dataclass(frozen=True)
class Whoami:
    user_id: str
    device_id: str


class CallClient:
    """The client-server API calls of a call, with one access token."""

    def __init__(self, base_url: str, token: str, http: aiohttp.ClientSession) -> None:
        self.base = base_url.rstrip("/") + "/_matrix/client/v3"
        self.token = token
        self.http = http

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with self.http.request(
                method,
                self.base + path,
                json=body,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as r:
                try:
                    data = await r.json(content_type=None)
                except ValueError:
                    data = None
                if r.status != 200:
                    data = data if isinstance(data, dict) else {}
                    code = data.get("errcode", f"HTTP {r.status}")
                    raise CallClientError(f"{method} {path}: {code}: {data.get('error', '')}")
                return data
        except (aiohttp.ClientError, TimeoutError) as e:
            raise CallClientError(f"{method} {path}: {e or type(e).__name__}") from None

    async def whoami(self) -> Whoami:
        data = await self._call("GET", "/account/whoami")
        return Whoami(str(data.get("user_id", "")), str(data.get("device_id") or ""))

    async def turn_servers(self) -> dict[str, Any]:
        """``/voip/turnServer``: ``{}`` when the homeserver has none (the only ICE
        servers a call uses: never a public STUN server)."""
        data = await self._call("GET", "/voip/turnServer")
        return data if isinstance(data, dict) else {}

    async def resolve_room(self, room: str) -> str:
        """A room ID for ``room`` (an ID, or an alias the directory knows)."""
        if room.startswith("!"):
            return room
        if not room.startswith("#"):
            raise CallClientError(f"not a room ID or alias: {room!r}")
        data = await self._call("GET", f"/directory/room/{quote(room, safe='')}")
        room_id = data.get("room_id") if isinstance(data, dict) else None
        if not isinstance(room_id, str):
            raise CallClientError(f"the directory has no room {room}")
        return room_id

    async def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        txn = f"call-{uuid.uuid4().hex}"
        path = f"/rooms/{quote(room_id, safe='')}/send/{quote(event_type, safe='')}/{txn}"
        data = await self._call("PUT", path, content)
        return str(data.get("event_id", ""))

    async def sync(self, since: str | None, timeout_ms: int) -> dict[str, Any]:
        params = {"timeout": str(timeout_ms), "filter": json.dumps(SYNC_FILTER)}
        if since:
            params["since"] = since
        timeout_s = REQUEST_TIMEOUT_S + timeout_ms / 1000
        data = await self._call("GET", "/sync", params=params, timeout_s=timeout_s)
        return data if isinstance(data, dict) else {}


def room_events(sync: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The (room ID, event) pairs of the joined rooms' timelines in a /sync response."""
    out: list[tuple[str, dict[str, Any]]] = []
    rooms = sync.get("rooms")
    joined = rooms.get("join") if isinstance(rooms, dict) else None
    if not isinstance(joined, dict):
        return out
    for room_id, room in joined.items():
        timeline = room.get("timeline") if isinstance(room, dict) else None
        events = timeline.get("events") if isinstance(timeline, dict) else None
        for event in events if isinstance(events, list) else []:
            if isinstance(event, dict):
                out.append((str(room_id), event))
    return out


async def call_token(data_dir: Path, database: Path, user_id: str) -> str:
    """The agent's access token: read from ``DATA_DIR/call.token``, or minted once for
    the device ``CROFTCALL`` in the node's database (it may be running: SQLite lets a
    second connection write) and kept there (0600)."""
    from node.accounts import AccountService
    from node.datadir import write_secret
    from node.storage.accounts import AccountStore
    from node.storage.database import Database

    path = data_dir / CALL_TOKEN_FILE
    try:
        token = path.read_text("utf-8").strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token
    db = await Database.open(database)
    try:
        server_name = user_id.partition(":")[2]
        accounts = AccountService(AccountStore(db), server_name)
        session = await accounts.new_session(user_id, CALL_DEVICE_ID, "Croft call agent")
    finally:
        await db.close()
    write_secret(path, session.access_token + "\n")
    return session.access_token
