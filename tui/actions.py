"""What the chat screen does to messages: the content of replies, edits and reactions,
typing and receipts from /sync, and saving an attachment.

Client-server API sections: 11.19 "Rich replies" (``m.in_reply_to``, with
``m.mentions`` naming the person replied to, 11.34; no fallback body: 1.13 dropped
it), 11.37 "Event replacements" (``m.new_content`` and a ``* ``-prefixed fallback
body), 11.38 "Reactions" (``m.reaction`` with an ``m.annotation`` key), 11.5 "Typing
notifications" and 11.6 "Receipts" (ephemeral events in /sync), and 11.8 "Content
repository" (``GET /_matrix/client/v1/media/download``, authenticated).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nio

from tui.render import file_name, file_url
from tui.timeline_model import Entry, RoomTimeline

QUICK_REACTIONS = ("👍", "❤️", "😄", "🎉", "😮", "😢")


def reply(to: Entry, content: dict[str, Any]) -> dict[str, Any]:
    """``content`` as a reply to ``to``."""
    out = dict(content)
    out["m.relates_to"] = {"m.in_reply_to": {"event_id": to.event_id}}
    if to.sender:
        out["m.mentions"] = {"user_ids": [to.sender]}
    return out


def replacement(original: Entry, content: Mapping[str, Any]) -> dict[str, Any]:
    """An edit of ``original`` to ``content``: a fallback for clients without edits, and
    the new content (which keeps the original's message type: an emote stays one)."""
    new = dict(content)
    msgtype = original.content.get("msgtype")
    if isinstance(msgtype, str) and new.get("msgtype") == "m.text":
        new["msgtype"] = msgtype
    out: dict[str, Any] = {"msgtype": new["msgtype"], "body": f"* {new['body']}"}
    if "formatted_body" in new:
        out["format"] = new["format"]
        out["formatted_body"] = f"* {new['formatted_body']}"
    out["m.new_content"] = new
    out["m.relates_to"] = {"rel_type": "m.replace", "event_id": original.event_id}
    return out


def reaction(to: Entry, key: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": to.event_id, "key": key}}


def apply_ephemeral(model: RoomTimeline, events: Iterable[Any]) -> list[str] | None:
    """Apply the ``m.read`` receipts of one room's /sync ``ephemeral`` to ``model``;
    the others typing, if a typing notice came (None if none did)."""
    typing = None
    for event in events:
        if isinstance(event, nio.TypingNoticeEvent):
            typing = [u for u in event.users if isinstance(u, str) and u != model.own_user]
        elif isinstance(event, nio.ReceiptEvent):
            for receipt in event.receipts:
                if receipt.receipt_type == "m.read":
                    model.read_up_to(receipt.user_id, receipt.event_id)
    return typing


def typing_line(users: list[str], name_of: Any) -> str:
    names = [name_of(u) for u in users]
    if not names:
        return ""
    if len(names) == 1:
        return f"{names[0]} is typing…"
    if len(names) <= 3:
        return f"{', '.join(names[:-1])} and {names[-1]} are typing…"
    return f"{len(names)} people are typing…"


def download_dir() -> Path:
    """Where attachments are saved: ``$CROFT_DOWNLOADS``, else ~/Downloads."""
    configured = os.environ.get("CROFT_DOWNLOADS")
    return Path(configured) if configured else Path.home() / "Downloads"


def _safe_name(name: str) -> str:
    name = re.sub(r"[/\\\x00-\x1f]", "_", name).strip(". ") or "file"
    return name[:200]


class SaveError(Exception):
    """The attachment cannot be saved; the message is one line for the user."""


async def save_attachment(client: nio.AsyncClient, entry: Entry, into: Path) -> Path:
    """Download ``entry``'s attachment into ``into`` (a new name if the file exists)."""
    url = file_url(entry.content)
    if url is None:
        raise SaveError("this message has no file to save")
    if isinstance(entry.content.get("file"), Mapping):
        raise SaveError("encrypted attachments cannot be saved yet")
    server, _, media_id = url.removeprefix("mxc://").partition("/")
    if not server or not media_id:
        raise SaveError(f"not a valid media URI: {url}")
    path = f"/_matrix/client/v1/media/download/{quote(server)}/{quote(media_id)}"
    headers = {"Authorization": f"Bearer {client.access_token}"}
    response = await client.send("GET", path, headers=headers)
    try:
        if response.status != 200:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
            body = body if isinstance(body, dict) else {}
            why = f"{body.get('errcode', response.status)}: {body.get('error', 'refused')}"
            raise SaveError(f"cannot download {url}: {why}")
        data = bytearray()
        async for chunk in response.content.iter_chunked(1 << 16):
            data += chunk
    finally:
        response.release()
    return await asyncio.to_thread(_write_new, into, file_name(entry.content), bytes(data))


def _write_new(into: Path, name: str, data: bytes) -> Path:
    """Write ``data`` as ``into/name``, or ``name (1)`` ... if that exists."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / _safe_name(name)
    stem, suffix, n = target.stem, target.suffix, 1
    while True:
        try:
            with target.open("xb") as out:
                out.write(data)
            return target
        except FileExistsError:
            target = into / f"{stem} ({n}){suffix}"
            n += 1
