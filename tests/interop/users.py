"""A Matrix user on any homeserver (Croft or Synapse), over the client API, for the
interop tests: requests, sends, and /sync until something shows up."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

_txn = itertools.count()


class MatrixUser:
    def __init__(self, http: aiohttp.ClientSession, client_url: str, user_id: str, token: str):
        self.http = http
        self.url = client_url.rstrip("/") + "/_matrix/client/v3"
        self.user_id = user_id
        self.token = token
        self.since: str | None = None

    async def call(self, method: str, path: str, body: Any = None, status: int | None = 200) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.request(method, self.url + path, json=body, headers=headers) as r:
            data = await r.json(content_type=None)
            assert status is None or r.status == status, (method, path, r.status, data)
            return data

    async def create_room(self, **body: Any) -> str:
        return str((await self.call("POST", "/createRoom", body))["room_id"])

    async def send(self, room: str, body: str) -> str:
        path = f"/rooms/{quote(room)}/send/m.room.message/t{next(_txn)}"
        return str((await self.call("PUT", path, {"msgtype": "m.text", "body": body}))["event_id"])

    async def put_state(self, room: str, etype: str, content: dict[str, Any], key: str = "") -> str:
        path = f"/rooms/{quote(room)}/state/{etype}/{quote(key)}"
        return str((await self.call("PUT", path, content))["event_id"])

    async def state(self, room: str, etype: str, key: str = "") -> Any:
        return await self.call(
            "GET", f"/rooms/{quote(room)}/state/{etype}/{quote(key)}", None, None
        )

    async def history(self, room: str, limit: int) -> list[dict[str, Any]]:
        """The room's whole /messages history, newest first, page by page until a page
        has no ``end``."""
        out: list[dict[str, Any]] = []
        token = ""
        for _ in range(100):
            path = f"/rooms/{quote(room)}/messages?dir=b&limit={limit}{token}"
            page = await self.call("GET", path)
            out += page["chunk"]
            if "end" not in page:
                return out
            token = f"&from={quote(page['end'])}"
        raise AssertionError(f"the history of {room} does not end")

    async def sync_until(self, found: Callable[[dict[str, Any]], Any], within: float = 60) -> Any:
        """Incremental /sync until ``found(response)`` is truthy; returns its value."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            path = "/sync?timeout=1000" + (f"&since={self.since}" if self.since else "")
            response = await self.call("GET", path)
            self.since = response["next_batch"]
            value = found(response)
            if value:
                return value
        raise AssertionError(f"{self.user_id}: not seen in /sync within {within} s")

    async def wait_state(
        self, room: str, etype: str, want: dict[str, Any], key: str = "", within: float = 60
    ) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await self.state(room, etype, key) == want:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{self.user_id}: {etype} in {room} never became {want}")

    async def messages(self, room: str, most: int = 1000) -> list[dict[str, Any]]:
        """The room's timeline as /messages serves it, oldest first (at most ``most``
        events, read backwards from the end)."""
        events: list[dict[str, Any]] = []
        start: str | None = None
        while len(events) < most:
            path = f"/rooms/{quote(room)}/messages?dir=b&limit=100"
            page = await self.call("GET", path + (f"&from={quote(start)}" if start else ""))
            events += page.get("chunk", [])
            start = page.get("end")
            if not page.get("chunk") or start is None:
                break
        return events[::-1]

    async def wait_bodies(self, room: str, bodies: list[str], within: float = 60) -> list[str]:
        """Polls /messages until every one of ``bodies`` is in the room; returns the
        bodies of all the room's messages, oldest first (duplicates kept)."""
        deadline = time.monotonic() + within
        while True:
            seen = [
                e["content"].get("body")
                for e in await self.messages(room)
                if e["type"] == "m.room.message"
            ]
            if set(bodies) <= set(seen):
                return seen
            if time.monotonic() > deadline:
                missing = [b for b in bodies if b not in seen]
                raise AssertionError(
                    f"{self.user_id}: {len(missing)} of {len(bodies)} messages not in {room}"
                    f" within {within} s (first missing: {missing[:3]})"
                )
            await asyncio.sleep(0.25)


def timeline(response: dict[str, Any], room: str) -> list[dict[str, Any]]:
    joined = response.get("rooms", {}).get("join", {}).get(room, {})
    return list(joined.get("timeline", {}).get("events", []))


def says(room: str, body: str) -> Callable[[dict[str, Any]], bool]:
    """A /sync predicate: the room's timeline has a message with this body."""
    return lambda r: any(
        e["type"] == "m.room.message" and e["content"].get("body") == body
        for e in timeline(r, room)
    )


def has_event(room: str, event_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: any(e["event_id"] == event_id for e in timeline(r, room))


def invited(room: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: r.get("rooms", {}).get("invite", {}).get(room)


async def invite_and_join(host: MatrixUser, guest: MatrixUser, room: str, via: str) -> None:
    """``host`` invites ``guest``, who sees the invite in /sync and joins through the
    server ``via``; returns once ``host`` has seen the join in /sync."""
    await host.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": guest.user_id})
    await guest.sync_until(invited(room))
    await guest.call("POST", f"/join/{quote(room)}?server_name={quote(via)}", {})
    await host.sync_until(
        lambda r: any(
            e["type"] == "m.room.member"
            and e["state_key"] == guest.user_id
            and e["content"].get("membership") == "join"
            for e in timeline(r, room)
        )
    )
