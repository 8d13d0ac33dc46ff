"""End-to-end encryption with users on other servers: their device lists, key
queries and claims, and the send-to-device messages they send to local devices.

Spec: content/server-server-api.md "Device Management" (the ``m.device_list_update``
stream per user: ``stream_id``, ``prev_id``; resynchronise with GET /user/devices when
a ``prev_id`` is unknown), "End-to-End Encryption" (POST /user/keys/query and
/user/keys/claim; ``m.signing_key_update``), "Send-to-device messaging"
(``m.direct_to_device``); api/server-server/user_devices.yaml, user_keys.yaml.

- Remote device lists (migration 0016): the devices and cross-signing keys of users on
  other servers who share a room with a local user ("tracked") are cached, kept up to
  date by their server's EDUs and fetched again (GET /user/devices) when an update was
  missed. Each change is a row in the local ``device_lists`` stream, so /sync and
  /keys/changes report the user in ``changed``. A user no longer tracked is forgotten
  when next asked for: their server stops sending updates.
- /keys/query and /keys/claim for remote users (``KeyService.remote``): tracked users
  are answered from the cache, others by asking their server; a server that cannot
  answer is reported in ``failures`` under its name.
- Inbound to-device messages are delivered once per (origin, message_id).

The local users' side (their device-list updates and to-device messages sent out,
GET /user/devices answers) is in node/federation/outbound_edus.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiosqlite

from node.e2ee.keys import DEVICE_LISTS
from node.e2ee.store import DeviceKeyStore, dump
from node.e2ee.to_device import TO_DEVICE, ToDeviceService
from node.federation.client import FederationClient
from node.federation.common import FederationRequestError, RemoteError, Unreachable
from node.rooms.auth_common import server_of
from node.storage.accounts import now_ms
from node.storage.database import Database
from node.sync.notifier import Notifier

log = logging.getLogger(__name__)

FEDERATION_V1 = "/_matrix/federation/v1"
QUERY_TIMEOUT_S = 10.0  # keys.yaml: the client's default ``timeout``
MESSAGE_ID_LIFETIME_MS = 7 * 24 * 3600 * 1000
SEEN_PER_USER = 32  # applied stream_ids kept per remote user for prev_id checks


class BadData(ValueError):
    """A peer's answer or EDU does not have the shape the spec gives it."""


@dataclass(frozen=True, slots=True)
class DeviceListUpdate:
    user_id: str
    device_id: str
    stream_id: int
    prev_ids: tuple[int, ...]
    deleted: bool
    keys: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class RemoteDevices:
    """A GET /user/devices answer, checked."""

    stream_id: int
    devices: dict[str, dict[str, Any] | None]  # device ID -> keys
    cross_signing: dict[str, dict[str, Any]]  # master / self_signing -> key


# -- checking peers' data (pure) ---------------------------------------------------------


def check_device_keys(keys: Any, user_id: str, device_id: str) -> dict[str, Any]:
    """Device keys as a peer sent them: they must name the user and device."""
    if not isinstance(keys, dict):
        raise BadData("device keys must be an object")
    if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        raise BadData(f"device keys are not those of {user_id} {device_id}")
    if not isinstance(keys.get("keys"), dict):
        raise BadData("device keys without 'keys'")
    return {k: v for k, v in keys.items() if k != "unsigned"}


def check_cross_signing_key(key: Any, user_id: str, usage: str) -> dict[str, Any]:
    if not isinstance(key, dict):
        raise BadData(f"{usage} key must be an object")
    usages = key.get("usage")
    if key.get("user_id") != user_id or not isinstance(usages, list) or usage not in usages:
        raise BadData(f"not the {usage} key of {user_id}")
    if not isinstance(key.get("keys"), dict) or len(key["keys"]) != 1:
        raise BadData(f"{usage} key must hold one key")
    return dict(key)


def parse_user_devices(answer: Any, user_id: str) -> RemoteDevices:
    """Check a GET /user/devices/{userId} answer (user_devices.yaml)."""
    if not isinstance(answer, dict) or answer.get("user_id") != user_id:
        raise BadData(f"the answer is not about {user_id}")
    stream_id, devices = answer.get("stream_id"), answer.get("devices")
    if not isinstance(stream_id, int) or isinstance(stream_id, bool):
        raise BadData("'stream_id' must be an integer")
    if not isinstance(devices, list):
        raise BadData("'devices' must be a list")
    out: dict[str, dict[str, Any] | None] = {}
    for device in devices:
        device_id = device.get("device_id") if isinstance(device, dict) else None
        if not isinstance(device_id, str):
            raise BadData("a device without 'device_id'")
        keys = device.get("keys")
        out[device_id] = None if keys is None else check_device_keys(keys, user_id, device_id)
    cross = {}
    for usage in ("master", "self_signing"):
        key = answer.get(f"{usage}_key")
        if key is not None:
            cross[usage] = check_cross_signing_key(key, user_id, usage)
    return RemoteDevices(stream_id, out, cross)


def failure(error: Exception) -> dict[str, Any]:
    """A ``failures`` entry for a server that could not answer (as Synapse gives)."""
    if isinstance(error, RemoteError):
        return {"status": error.status, "message": str(error)}
    return {"status": 503, "message": str(error) or type(error).__name__}


# -- SQL (plain functions of a sqlite3 connection) ----------------------------------------


def shares_room_with_local_sync(conn: sqlite3.Connection, user_id: str) -> bool:
    """Is ``user_id`` joined to a room a local user is joined to?"""
    row = conn.execute(
        "SELECT 1 FROM current_state a JOIN events ea ON ea.event_id = a.event_id"
        " JOIN current_state b ON b.room_id = a.room_id AND b.type = 'm.room.member'"
        " JOIN events eb ON eb.event_id = b.event_id"
        " WHERE a.type = 'm.room.member' AND a.state_key = ?"
        " AND json_extract(ea.json, '$.content.membership') = 'join'"
        " AND b.state_key IN (SELECT user_id FROM accounts)"
        " AND json_extract(eb.json, '$.content.membership') = 'join' LIMIT 1",
        (user_id,),
    ).fetchone()
    return row is not None


def _cached_sync(conn: sqlite3.Connection, user_id: str) -> dict[str, Any]:
    """The cached devices and cross-signing keys of a remote user."""
    devices = {
        r[0]: json.loads(r[1]) if r[1] else None
        for r in conn.execute(
            "SELECT device_id, keys_json FROM remote_devices WHERE user_id = ?", (user_id,)
        )
    }
    cross = {
        r[0]: json.loads(r[1])
        for r in conn.execute(
            "SELECT key_type, key_json FROM remote_cross_signing_keys WHERE user_id = ?",
            (user_id,),
        )
    }
    return {"devices": devices, "cross_signing": cross}


async def _record_change_txn(conn: aiosqlite.Connection, user_id: str, device: str | None) -> int:
    return await DeviceKeyStore.record_change_txn(conn, user_id, device)


# -- the service ---------------------------------------------------------------------------


class RemoteE2EE:
    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        client: FederationClient,
        server_name: str,
        *,
        timeout: float = QUERY_TIMEOUT_S,
    ) -> None:
        self.db = db
        self.notifier = notifier
        self.client = client
        self.server_name = server_name
        self.timeout = timeout
        self._locks: dict[str, asyncio.Lock] = {}
        self._seen: dict[str, list[int]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle ---------------------------------------------------------------------

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def wait_idle(self) -> None:
        """Wait for the background resyncs started so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lock(self, user_id: str) -> asyncio.Lock:
        return self._locks.setdefault(user_id, asyncio.Lock())

    async def tracked(self, user_id: str) -> bool:
        return await self.db.read_sync(lambda conn: shares_room_with_local_sync(conn, user_id))

    # -- /keys/query and /keys/claim for remote users (KeyService.remote) ----------------

    async def query_keys(self, wanted: Mapping[str, list[str]]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "device_keys": {},
            "master_keys": {},
            "self_signing_keys": {},
            "failures": {},
        }
        by_server: dict[str, dict[str, list[str]]] = {}
        for user_id, device_ids in wanted.items():
            server = server_of(user_id)
            if server and server != self.server_name:
                by_server.setdefault(server, {})[user_id] = list(device_ids)
        await asyncio.gather(*(self._query_server(s, u, result) for s, u in by_server.items()))
        return result

    async def _query_server(
        self, server: str, users: dict[str, list[str]], result: dict[str, Any]
    ) -> None:
        direct: dict[str, list[str]] = {}
        for user_id, device_ids in users.items():
            if not await self.tracked(user_id):
                await self._forget(user_id)
                direct[user_id] = device_ids
                continue
            try:
                cached = await self._synced(user_id)
            except Unreachable as e:
                result["failures"][server] = failure(e)
                return
            except (FederationRequestError, BadData) as e:
                log.info("device list of %s: %s; asking for its keys instead", user_id, e)
                direct[user_id] = device_ids
                continue
            _add_keys(result, user_id, device_ids, cached["devices"], cached["cross_signing"])
        if not direct:
            return
        try:
            answer = await self.client.post_json(
                server,
                FEDERATION_V1 + "/user/keys/query",
                {"device_keys": direct},
                timeout=self.timeout,
            )
        except FederationRequestError as e:
            result["failures"][server] = failure(e)
            return
        if not isinstance(answer, dict):
            result["failures"][server] = {"status": 502, "message": "not a JSON object"}
            return
        found = answer.get("device_keys")
        for user_id, device_ids in direct.items():
            devices: dict[str, Any] = {}
            raw = found.get(user_id) if isinstance(found, dict) else None
            for device_id, keys in (raw if isinstance(raw, dict) else {}).items():
                try:
                    devices[device_id] = check_device_keys(keys, user_id, device_id)
                except BadData:
                    continue
            cross = {}
            for usage in ("master", "self_signing"):
                by_user = answer.get(f"{usage}_keys")
                key = by_user.get(user_id) if isinstance(by_user, dict) else None
                try:
                    cross[usage] = check_cross_signing_key(key, user_id, usage)
                except BadData:
                    continue
            if raw is not None or cross:
                _add_keys(result, user_id, device_ids, devices, cross)

    async def claim_keys(self, wanted: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
        result: dict[str, Any] = {"one_time_keys": {}, "failures": {}}
        by_server: dict[str, dict[str, dict[str, str]]] = {}
        for user_id, devices in wanted.items():
            server = server_of(user_id)
            if server and server != self.server_name:
                by_server.setdefault(server, {})[user_id] = dict(devices)

        async def claim(server: str, users: dict[str, dict[str, str]]) -> None:
            try:
                answer = await self.client.post_json(
                    server,
                    FEDERATION_V1 + "/user/keys/claim",
                    {"one_time_keys": users},
                    timeout=self.timeout,
                )
            except FederationRequestError as e:
                result["failures"][server] = failure(e)
                return
            found = answer.get("one_time_keys") if isinstance(answer, dict) else None
            for user_id, devices in users.items():
                by_device = found.get(user_id) if isinstance(found, dict) else None
                for device_id in devices:
                    keys = by_device.get(device_id) if isinstance(by_device, dict) else None
                    if isinstance(keys, dict) and keys:
                        result["one_time_keys"].setdefault(user_id, {})[device_id] = keys

        await asyncio.gather(*(claim(s, u) for s, u in by_server.items()))
        return result

    # -- the remote device-list cache ------------------------------------------------------

    async def _synced(self, user_id: str) -> dict[str, Any]:
        """The cached devices of a tracked user, fetched first if missing or stale (a
        stale list is still used when its server cannot be reached)."""
        row = await self.db.fetchone(
            "SELECT stale FROM remote_device_lists WHERE user_id = ?", (user_id,)
        )
        if row is None or row[0]:
            try:
                await self.resync(user_id, raise_errors=True)
            except (FederationRequestError, BadData):
                if row is None:
                    raise
                log.info("using the stale device list of %s", user_id)
        return await self.db.read_sync(lambda conn: _cached_sync(conn, user_id))

    async def _forget(self, user_id: str) -> None:
        """Drop the cache of a user no longer tracked (their server stops updating it)."""
        row = await self.db.fetchone(
            "SELECT 1 FROM remote_device_lists WHERE user_id = ?", (user_id,)
        )
        if row is None:
            return

        async def txn(conn: aiosqlite.Connection) -> None:
            for table in ("remote_device_lists", "remote_devices", "remote_cross_signing_keys"):
                await conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))

        await self.db.write(txn)
        self._seen.pop(user_id, None)

    async def resync(self, user_id: str, *, raise_errors: bool = False) -> bool:
        """Fetch a remote user's device list (GET /user/devices) and cache it."""
        server = server_of(user_id) or ""
        async with self._lock(user_id):
            try:
                answer = await self.client.get_json(
                    server,
                    FEDERATION_V1 + "/user/devices/" + quote(user_id, safe=""),
                    timeout=self.timeout,
                )
                fetched = parse_user_devices(answer, user_id)
            except (FederationRequestError, BadData) as e:
                log.info("cannot fetch the device list of %s: %s", user_id, e)
                if raise_errors:
                    raise
                return False
            position = await self.db.write(lambda conn: self._store_txn(conn, user_id, fetched))
            self._seen[user_id] = [fetched.stream_id]
        if position is not None:
            self.notifier.notify(DEVICE_LISTS, position)
        return True

    @staticmethod
    async def _store_txn(
        conn: aiosqlite.Connection, user_id: str, fetched: RemoteDevices
    ) -> int | None:
        async with conn.execute(
            "SELECT device_id, keys_json FROM remote_devices WHERE user_id = ?", (user_id,)
        ) as cur:
            old_devices = {r[0]: json.loads(r[1]) if r[1] else None for r in await cur.fetchall()}
        async with conn.execute(
            "SELECT key_type, key_json FROM remote_cross_signing_keys WHERE user_id = ?",
            (user_id,),
        ) as cur:
            old_cross = {r[0]: json.loads(r[1]) for r in await cur.fetchall()}
        await conn.execute(
            "INSERT INTO remote_device_lists (user_id, stream_id, stale, updated_ts)"
            " VALUES (?, ?, 0, ?) ON CONFLICT (user_id) DO UPDATE SET"
            " stream_id = excluded.stream_id, stale = 0, updated_ts = excluded.updated_ts",
            (user_id, fetched.stream_id, now_ms()),
        )
        if old_devices == fetched.devices and old_cross == fetched.cross_signing:
            return None
        await conn.execute("DELETE FROM remote_devices WHERE user_id = ?", (user_id,))
        await conn.executemany(
            "INSERT INTO remote_devices (user_id, device_id, keys_json) VALUES (?, ?, ?)",
            [(user_id, d, dump(k) if k is not None else None) for d, k in fetched.devices.items()],
        )
        await conn.execute("DELETE FROM remote_cross_signing_keys WHERE user_id = ?", (user_id,))
        await conn.executemany(
            "INSERT INTO remote_cross_signing_keys (user_id, key_type, key_json) VALUES (?, ?, ?)",
            [(user_id, usage, dump(k)) for usage, k in fetched.cross_signing.items()],
        )
        return await _record_change_txn(conn, user_id, None)

    # -- inbound EDUs (called by node/federation/edus.py with checked content) -----------

    async def on_device_list_update(self, update: DeviceListUpdate) -> None:
        """Apply an update whose ``prev_id``s are all known; otherwise resync."""
        user_id = update.user_id
        if not await self.tracked(user_id):
            log.debug("device list update for %s: shares no room with us; ignored", user_id)
            return
        async with self._lock(user_id):
            row = await self.db.fetchone(
                "SELECT stream_id, stale FROM remote_device_lists WHERE user_id = ?", (user_id,)
            )
            seen = self._seen.setdefault(user_id, [])
            if row is not None and not row[1]:
                known = {row[0], *seen}
                if update.stream_id in known or update.stream_id <= row[0]:
                    return  # already applied, or older than what we fetched
                if update.prev_ids and set(update.prev_ids) <= known:
                    position = await self.db.write(lambda conn: self._apply_txn(conn, update))
                    seen.append(update.stream_id)
                    del seen[:-SEEN_PER_USER]
                    self.notifier.notify(DEVICE_LISTS, position)
                    return
            if row is not None:
                await self.db.write(lambda conn: self._mark_stale_txn(conn, user_id))
        self._spawn(self.resync(user_id), f"device list resync {user_id}")

    @staticmethod
    async def _apply_txn(conn: aiosqlite.Connection, update: DeviceListUpdate) -> int:
        if update.deleted:
            await conn.execute(
                "DELETE FROM remote_devices WHERE user_id = ? AND device_id = ?",
                (update.user_id, update.device_id),
            )
        else:
            await conn.execute(
                "INSERT INTO remote_devices (user_id, device_id, keys_json) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, device_id) DO UPDATE SET keys_json = excluded.keys_json",
                (
                    update.user_id,
                    update.device_id,
                    dump(update.keys) if update.keys is not None else None,
                ),
            )
        await conn.execute(
            "UPDATE remote_device_lists SET stream_id = ?, updated_ts = ? WHERE user_id = ?",
            (update.stream_id, now_ms(), update.user_id),
        )
        return await _record_change_txn(conn, update.user_id, update.device_id)

    @staticmethod
    async def _mark_stale_txn(conn: aiosqlite.Connection, user_id: str) -> None:
        await conn.execute("UPDATE remote_device_lists SET stale = 1 WHERE user_id = ?", (user_id,))

    async def on_signing_key_update(self, user_id: str, keys: dict[str, dict[str, Any]]) -> None:
        """New cross-signing keys (``master`` / ``self_signing``) of a cached user."""
        async with self._lock(user_id):
            row = await self.db.fetchone(
                "SELECT 1 FROM remote_device_lists WHERE user_id = ?", (user_id,)
            )
            if row is None:
                return  # not cached: the next fetch brings them

            async def txn(conn: aiosqlite.Connection) -> int:
                await conn.executemany(
                    "INSERT OR REPLACE INTO remote_cross_signing_keys (user_id, key_type,"
                    " key_json) VALUES (?, ?, ?)",
                    [(user_id, usage, dump(key)) for usage, key in keys.items()],
                )
                return await _record_change_txn(conn, user_id, None)

            position = await self.db.write(txn)
        self.notifier.notify(DEVICE_LISTS, position)

    async def on_direct_to_device(
        self,
        origin: str,
        sender: str,
        event_type: str,
        message_id: str,
        messages: Mapping[str, Mapping[str, dict[str, Any]]],
    ) -> bool:
        """Deliver a message to local devices once per (origin, message_id); False
        for a repeat."""
        local = {u: m for u, m in messages.items() if server_of(u) == self.server_name}

        async def txn(conn: aiosqlite.Connection) -> tuple[bool, int | None]:
            now = now_ms()
            await conn.execute(
                "DELETE FROM to_device_federation_ids WHERE received_ts < ?",
                (now - MESSAGE_ID_LIFETIME_MS,),
            )
            cur = await conn.execute(
                "INSERT OR IGNORE INTO to_device_federation_ids (origin, message_id,"
                " received_ts) VALUES (?, ?, ?)",
                (origin, message_id, now),
            )
            if cur.rowcount == 0:
                return False, None
            position = None
            for user_id, by_device in local.items():
                found = await ToDeviceService.queue_local_txn(
                    conn, sender, event_type, user_id, by_device, now
                )
                position = found or position
            return True, position

        fresh, position = await self.db.write(txn)
        if position is not None:
            self.notifier.notify(TO_DEVICE, position)
        return fresh


def _add_keys(
    result: dict[str, Any],
    user_id: str,
    device_ids: list[str],
    devices: Mapping[str, dict[str, Any] | None],
    cross: Mapping[str, dict[str, Any]],
) -> None:
    result["device_keys"][user_id] = {
        d: dict(k)
        for d, k in devices.items()
        if k is not None and (not device_ids or d in device_ids)
    }
    for usage, key in cross.items():
        result[f"{usage}_keys"][user_id] = key
