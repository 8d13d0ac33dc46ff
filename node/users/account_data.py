"""Account data and room tags.

Spec: content/client-server-api/modules/account_data.md "Client Config" (global and
per-room data; "Server Behaviour": m.fully_read and m.push_rules are managed by the
server, a client setting them gets 405 M_BAD_JSON, reading them works as normal) and
modules/tags.md "Room Tagging" (the tags of a room are its m.tag room account data,
``{"tags": {name: {"order": 0..1, ...}}}``; a tag name is at most 255 bytes).

Every change moves the ``account_data`` sync stream; :mod:`node.users.account_data_sync`
puts the changes into /sync.

Computed types (:attr:`AccountDataService.computed`): global account data whose content
another area keeps (``m.push_rules``: the live push rules, node/push/sync.py). Reading
one (GET and /sync) gives the computed content, present or not in the table; the area
still writes the item on every change, so the stream moves and /sync sends it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from node.errors import MatrixError, bad_json, invalid_param
from node.storage.account_data import GLOBAL, AccountDataStore, Content
from node.sync.notifier import Notifier
from node.users.limits import json_size

STREAM = "account_data"
TAG_TYPE = "m.tag"
# Types the server writes itself (read markers, push rules); clients only read them.
SERVER_MANAGED = frozenset({"m.fully_read", "m.push_rules"})
MAX_TAG_BYTES = 255
# Not in the spec: a bound so one request cannot fill a small device's storage.
MAX_CONTENT_BYTES = 1024 * 1024

# The content of a computed global account data type for a user.
ComputedContent = Callable[[str], Awaitable[Content]]


def check_client_may_set(data_type: str) -> None:
    """405 M_BAD_JSON for the types the server manages (account_data.md)."""
    if data_type in SERVER_MANAGED:
        raise MatrixError(
            405, "M_BAD_JSON", f"Cannot set {data_type} through this API: the server manages it"
        )


def check_content_size(content: Content) -> None:
    if json_size(content) > MAX_CONTENT_BYTES:
        raise MatrixError(
            413, "M_TOO_LARGE", f"Account data is limited to {MAX_CONTENT_BYTES} bytes"
        )


def check_tag(tag: str, info: Content) -> None:
    """A tag name of at most 255 bytes; an optional ``order`` that is a number in [0, 1]."""
    if len(tag.encode()) > MAX_TAG_BYTES:
        raise invalid_param(f"Tag names are limited to {MAX_TAG_BYTES} bytes")
    if "order" in info:
        order = info["order"]
        if isinstance(order, bool) or not isinstance(order, (int, float)):
            raise bad_json("'order' must be a number between 0 and 1")
        if not (math.isfinite(order) and 0 <= order <= 1):
            raise bad_json("'order' must be between 0 and 1")


def _tags_of(content: Content | None) -> dict[str, Any]:
    tags = (content or {}).get("tags")
    return dict(tags) if isinstance(tags, dict) else {}


class AccountDataService:
    def __init__(self, store: AccountDataStore, notifier: Notifier) -> None:
        self.store = store
        self.notifier = notifier
        # Global types whose content is computed (by type); shared with AccountDataSync.
        self.computed: dict[str, ComputedContent] = {}

    async def get(self, user_id: str, data_type: str, room_id: str = GLOBAL) -> Content | None:
        compute = self.computed.get(data_type) if room_id == GLOBAL else None
        if compute is not None:
            return await compute(user_id)
        return await self.store.get(user_id, room_id, data_type)

    async def put(
        self, user_id: str, data_type: str, content: Content, room_id: str = GLOBAL
    ) -> None:
        """Store account data of any type (server-managed ones too: the read markers and
        push rules code write theirs here), then wake /sync."""
        stream_id = await self.store.put(user_id, room_id, data_type, content)
        self.notifier.notify(STREAM, stream_id)

    # -- tags (tags.md) -----------------------------------------------------------------

    async def get_tags(self, user_id: str, room_id: str) -> dict[str, Any]:
        return _tags_of(await self.store.get(user_id, room_id, TAG_TYPE))

    async def put_tag(self, user_id: str, room_id: str, tag: str, info: Content) -> None:
        check_tag(tag, info)

        def change(old: Content | None) -> Content:
            tags = _tags_of(old)
            tags[tag] = info
            return {**(old or {}), "tags": tags}

        stream_id = await self.store.update(user_id, room_id, TAG_TYPE, change)
        self.notifier.notify(STREAM, stream_id)

    async def delete_tag(self, user_id: str, room_id: str, tag: str) -> None:
        """Remove a tag; removing one that is not there succeeds and changes nothing."""
        if tag not in await self.get_tags(user_id, room_id):
            return

        def change(old: Content | None) -> Content:
            tags = _tags_of(old)
            tags.pop(tag, None)
            return {**(old or {}), "tags": tags}

        stream_id = await self.store.update(user_id, room_id, TAG_TYPE, change)
        self.notifier.notify(STREAM, stream_id)
