"""`croft publish ROOM --type TYPE JSON`: one event from a shell or a cron job.

* The node runs (the data directory's run.lock is held): the event goes through the
  node's client API, ``PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}``
  (spec client-server-api "Sending events to a room"), with the access token `croft
  init` stored in ``DIR/tui.token``, at the client listener named in ``DIR/run.json``.
  An alias is resolved first with ``GET /_matrix/client/v3/directory/room/{roomAlias}``.
  A failed connection is tried again (three times, 1 s apart) with the same transaction
  ID, so the event is sent at most once.
* The node does not run: the event is stored in the sensor queue (queue.py) under the
  data directory's lock, and the node sends it when it next starts. The room must be
  one the owner has joined (checked now for room IDs and this server's aliases;
  another server's alias is resolved when the node sends).

Content: a JSON object that is valid canonical JSON (no floats: spec appendices
"Canonical JSON"), at most 60,000 bytes. Type: printable ASCII, no space or '/',
at most 255 bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.config import Config, ConfigError
from node.sensors.content import is_valid_event_type

EXIT_NOT_SENT = 1
MAX_CONTENT_BYTES = 60_000
ATTEMPTS = 3
# How long a node that holds the lock may take to write run.json (it is starting).
START_WAIT = 15.0


class PublishError(Exception):
    """Bad input, or the node refused the event: exit status 2."""


class NotSent(Exception):
    """The node runs but did not take the event (unreachable, or failing): exit 1."""


@dataclass(frozen=True, slots=True)
class Published:
    event_id: str | None  # None: queued for the next start
    room_id: str | None = None


def parse_request(room: str, event_type: str, text: str) -> dict[str, Any]:
    """Check the arguments; return the content."""
    from node.events.canonical import InvalidJson, check_canonical_values, encode_canonical_json
    from node.ids import InvalidId, RoomAlias, RoomID

    try:
        RoomID.parse(room) if room.startswith("!") else RoomAlias.parse(room)
    except InvalidId as e:
        raise PublishError(
            f"ROOM {room!r} is not a room ID (!...) or alias (#...:server): {e}"
        ) from None
    if not is_valid_event_type(event_type):
        raise PublishError(
            f"--type {event_type!r} is not a valid event type "
            "(printable ASCII, no space or '/', at most 255 bytes)"
        )
    try:
        content = json.loads(text)
    except ValueError as e:
        raise PublishError(f"JSON is not valid JSON: {e}") from None
    if not isinstance(content, dict):
        raise PublishError(f"JSON must be an object {{...}}, got {type(content).__name__}")
    try:
        checked = check_canonical_values(content)
        size = len(encode_canonical_json(checked))
    except InvalidJson as e:
        raise PublishError(f"JSON cannot be event content: {e}") from None
    if size > MAX_CONTENT_BYTES:
        raise PublishError(f"JSON is {size} bytes; event content is at most {MAX_CONTENT_BYTES}")
    assert isinstance(checked, dict)
    return checked


def publish(config: Config, room: str, event_type: str, content: dict[str, Any]) -> Published:
    """Send through the running node, or queue for the next start."""
    from node.datadir import lock_data_dir

    try:
        lock = lock_data_dir(config.data_dir)
    except ConfigError:  # held by `croft run`
        return _send_online(config, room, event_type, content)
    try:
        asyncio.run(_queue_offline(config, room, event_type, content))
    finally:
        if lock is not None:
            os.close(lock)
    return Published(None)


# -- the node is stopped -------------------------------------------------------------------


async def _queue_offline(
    config: Config, room: str, event_type: str, content: dict[str, Any]
) -> None:
    from node.events.pdu import MEMBER
    from node.sensors.queue import enqueue_event_sync
    from node.storage.database import Database
    from node.storage.events import EventStore

    db = await Database.open(config.database_path, cache_kib=1024)
    try:
        room_id: str | None = room
        if room.startswith("#"):
            row = await db.fetchone(
                "SELECT room_id FROM room_aliases WHERE room_alias = ?", (room,)
            )
            room_id = row[0] if row else None
            if room_id is None and room.endswith(":" + config.server_name):
                raise PublishError(f"no room alias {room} on this server")
        if room_id is not None:
            row = await db.fetchone(
                "SELECT user_id FROM accounts WHERE deactivated = 0 ORDER BY created_ts LIMIT 1"
            )
            if row is None:
                raise PublishError(f"{config.data_dir} has no owner account")
            owner = str(row[0])
            events = EventStore(db)
            member_id = (await events.get_current_state_ids(room_id)).get((MEMBER, owner))
            member = await events.get_event(member_id) if member_id else None
            if member is None or member.event.membership != "join":
                raise PublishError(f"{owner} is not joined to {room}")
        await db.write_sync(lambda conn: enqueue_event_sync(conn, room, event_type, content))
    finally:
        await db.close()


# -- the node runs -------------------------------------------------------------------------


def _send_online(config: Config, room: str, event_type: str, content: dict[str, Any]) -> Published:
    from node.datadir import LocalNodeError, owner_token

    base = _client_url(config.data_dir)
    try:
        token = owner_token(config.data_dir)
    except LocalNodeError as e:
        raise PublishError(str(e)) from None
    quote = urllib.parse.quote
    room_id = room
    if room.startswith("#"):
        answer = _request(
            "GET", f"{base}/_matrix/client/v3/directory/room/{quote(room, '')}", token
        )
        room_id = str(answer["room_id"])
    txn = f"croft-publish-{int(time.time())}-{secrets.token_hex(6)}"
    path = f"/rooms/{quote(room_id, '')}/send/{quote(event_type, '')}/{txn}"
    answer = _request("PUT", f"{base}/_matrix/client/v3{path}", token, content)
    return Published(str(answer["event_id"]), room_id)


def _client_url(data_dir: Path) -> str:
    from node.datadir import client_url, pid_alive, read_run_file

    deadline = time.monotonic() + START_WAIT
    while True:
        run = read_run_file(data_dir)
        url = client_url(run) if run is not None else None
        if run is not None and url is not None and pid_alive(int(run.get("pid", 0))):
            return url
        if time.monotonic() > deadline:
            raise NotSent(f"the node holds {data_dir} but has not started within {START_WAIT:g} s")
        time.sleep(0.1)


def _request(method: str, url: str, token: str, body: Any = None) -> dict[str, Any]:
    """One client API call (no proxy: the node is local); retried on a failed
    connection or a 5xx. A 4xx is the node's answer: PublishError."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    problem = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(1.0)
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with opener.open(request, timeout=30) as r:
                answer = json.loads(r.read())
                if isinstance(answer, dict):
                    return answer
                problem = "the node answered something that is not a JSON object"
        except urllib.error.HTTPError as e:
            error = _matrix_error(e)
            if e.code < 500:
                raise PublishError(f"the node refused: {error}") from None
            problem = f"the node failed: {error}"
        except (OSError, ValueError) as e:
            problem = f"the node at {url.split('/_matrix')[0]} did not answer: {e}"
    raise NotSent(f"{problem} (not sent)")


def _matrix_error(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read())
        return f"{e.code} {body.get('errcode', '')}: {body.get('error', '')}"
    except (OSError, ValueError, AttributeError):
        return f"{e.code} {e.reason}"
