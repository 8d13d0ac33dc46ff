"""Profiles of local users, and their propagation into rooms.

Spec: api/client-server/profile.yaml (fields ``displayname``, ``avatar_url``,
``m.tz`` and custom fields in the Common Namespaced Identifier Grammar; keys at most
255 bytes -> M_KEY_TOO_LARGE; the whole profile under 64 KiB -> M_PROFILE_TOO_LARGE;
DELETE removes a field); content/client-server-api/_index.md "Profiles" ->
"Events on Change of Profile Information": a change of ``displayname`` or
``avatar_url`` sends a new ``m.room.member`` join event with the new values into
every room the user has joined.

Profiles of users on other servers are asked of their server (``remote``: the
federation profile query, node/federation/queries.py); without it they are answered
404 M_NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Protocol

from node.errors import MatrixError, bad_json, invalid_param, not_found
from node.events.pdu import MEMBER
from node.ids import InvalidId, UserID
from node.media.mxc import MXC
from node.rooms.service import RoomService
from node.storage.accounts import AccountStore
from node.storage.events import EventStore
from node.storage.profiles import ProfileStore
from node.users.limits import json_size

log = logging.getLogger(__name__)

KEY_RE = re.compile(r"(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)")
MAX_KEY_BYTES = 255
MAX_PROFILE_BYTES = 64 * 1024
# Not in the spec (Synapse's limits): the fields go into every member event.
MAX_DISPLAYNAME_CHARS = 256
MAX_AVATAR_URL_CHARS = 1000
# The fields that member events carry.
MEMBER_FIELDS = ("displayname", "avatar_url")
STRING_FIELDS = ("displayname", "avatar_url", "m.tz")


def check_key(key: str) -> None:
    if len(key.encode()) > MAX_KEY_BYTES:
        raise MatrixError(
            400, "M_KEY_TOO_LARGE", f"Profile keys are limited to {MAX_KEY_BYTES} bytes"
        )
    if not KEY_RE.fullmatch(key):
        raise invalid_param(
            f"Invalid profile key {key!r}: use displayname, avatar_url, m.tz or a"
            " namespaced key such as com.example.field"
        )


def check_value(key: str, value: Any) -> Any:
    """The value to store for ``key``; None means remove the field (an empty
    displayname or avatar_url, which clients send to clear them)."""
    if key in STRING_FIELDS and not isinstance(value, str):
        raise bad_json(f"'{key}' must be a string")
    if key in MEMBER_FIELDS and value == "":
        return None
    if key == "displayname" and len(value) > MAX_DISPLAYNAME_CHARS:
        raise bad_json(f"'displayname' is limited to {MAX_DISPLAYNAME_CHARS} characters")
    if key == "avatar_url":
        if len(value) > MAX_AVATAR_URL_CHARS:
            raise bad_json(f"'avatar_url' is limited to {MAX_AVATAR_URL_CHARS} characters")
        if not value.startswith("mxc://"):
            raise bad_json("'avatar_url' must be an mxc:// URI")
        server_name, _, media_id = value.removeprefix("mxc://").partition("/")
        try:
            MXC.from_parts(server_name, media_id)
        except MatrixError as e:
            raise bad_json(f"'avatar_url' must be an mxc:// URI: {e.message}") from None
    return value


def member_content(profile: dict[str, Any]) -> dict[str, Any]:
    """The content of a join event that carries the profile's name and avatar."""
    content: dict[str, Any] = {"membership": "join"}
    for key in MEMBER_FIELDS:
        if isinstance(profile.get(key), str):
            content[key] = profile[key]
    return content


class RemoteProfiles(Protocol):
    async def profile(self, user_id: str, field: str | None = None) -> dict[str, Any]: ...


class ProfileService:
    def __init__(
        self,
        store: ProfileStore,
        accounts: AccountStore,
        events: EventStore,
        rooms: RoomService,
        server_name: str,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.events = events
        self.rooms = rooms
        self.server_name = server_name
        # Set once federation is assembled (node/app.py).
        self.remote: RemoteProfiles | None = None
        # One change at a time per user, so member events follow the order of changes.
        self._locks: dict[str, asyncio.Lock] = {}

    async def get_profile(self, user_id: str) -> dict[str, Any]:
        """Every field of a local user's profile (404 M_NOT_FOUND otherwise)."""
        try:
            uid = UserID.parse(user_id)
        except InvalidId as e:
            raise invalid_param(f"Invalid user ID: {e}") from None
        if str(uid.server_name) != self.server_name:
            if self.remote is None:
                raise not_found("Profiles of users on other servers are not available")
            return await self.remote.profile(user_id)
        if not await self.accounts.account_exists(user_id):
            raise not_found("Profile not found")
        return await self.store.get_profile(user_id)

    async def get_field(self, user_id: str, key: str) -> Any:
        check_key(key)
        profile = await self.get_profile(user_id)
        if key not in profile:
            raise not_found(f"The profile has no field {key!r}")
        return profile[key]

    async def member_fields(self, user_id: str) -> dict[str, Any]:
        """``displayname`` and ``avatar_url`` as set, for the join events the node builds."""
        content = member_content(await self.store.get_profile(user_id))
        del content["membership"]
        return content

    async def set_field(self, user_id: str, key: str, value: Any) -> None:
        """Set a field of a local user's profile (the caller checked who may)."""
        check_key(key)
        value = check_value(key, value)
        if value is None:
            await self.delete_field(user_id, key)
            return
        async with self._lock(user_id):
            profile = await self.get_profile(user_id)
            if json_size({**profile, key: value}) >= MAX_PROFILE_BYTES:
                raise MatrixError(
                    400, "M_PROFILE_TOO_LARGE", f"A profile must be under {MAX_PROFILE_BYTES} bytes"
                )
            await self.store.set_field(user_id, key, value)
            if key in MEMBER_FIELDS:
                await self._propagate(user_id, {**profile, key: value})

    async def delete_field(self, user_id: str, key: str) -> None:
        """Remove a field; removing one that is not set succeeds."""
        check_key(key)
        async with self._lock(user_id):
            profile = await self.get_profile(user_id)
            if key not in profile:
                return
            await self.store.delete_field(user_id, key)
            del profile[key]
            if key in MEMBER_FIELDS:
                await self._propagate(user_id, profile)

    def _lock(self, user_id: str) -> asyncio.Lock:
        return self._locks.setdefault(user_id, asyncio.Lock())

    async def _propagate(self, user_id: str, profile: dict[str, Any]) -> None:
        """Send a join event with the new name and avatar into each joined room whose
        member event does not carry them yet. A room that refuses (power levels, a
        broken room) is logged and skipped: the profile change itself stands."""
        content = member_content(profile)
        for room_id in await self.events.get_rooms_with_member(user_id, "join"):
            state = await self.events.get_current_state_ids(room_id)
            current_id = state.get((MEMBER, user_id))
            current = await self.events.get_event(current_id) if current_id else None
            if current is not None and dict(current.event.content) == content:
                continue
            try:
                await self.rooms.send(user_id, room_id, MEMBER, content, state_key=user_id)
            except MatrixError as e:
                log.warning("profile change not sent to %s: %s", room_id, e.message)
