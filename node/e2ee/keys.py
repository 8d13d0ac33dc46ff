"""The key management API: upload, query, claim and changes.

Spec: end_to_end_encryption.md "Key Distribution", "One-time and fallback keys",
"Uploading keys", "Tracking the device list for a user", "Key and signature
security" (which signatures a user may see); api/client-server/keys.yaml.

Keys of users on other servers come from ``remote`` (node/federation/remote_e2ee.py:
``/_matrix/federation/v1/user/keys/query`` and ``.../claim``, or the cached device
lists of users sharing a room); without it, or when their server cannot be reached,
those users are reported in ``failures`` under their server name, never answered as
if they had no devices.

``device_list_delta`` is what /sync and /keys/changes report in ``device_lists``:
``changed`` (users whose keys changed, or who newly share a room with the user) and
``left`` (users who no longer share any room with the user).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import aiosqlite

from node.e2ee.cross_signing_store import CrossSigningStore, Signature, merge_signatures
from node.e2ee.store import DeviceKeyStore
from node.e2ee.validate import KeyMap
from node.ids import UserID
from node.storage.database import Database
from node.storage.events import EventStore
from node.sync.notifier import Notifier
from node.sync.tokens import StreamToken

DEVICE_LISTS = "device_lists"

NO_FEDERATION = {
    "status": 503,
    "message": "Keys of users on other servers need federation, which is not available",
}


class RemoteKeys(Protocol):
    """Keys of users on other servers (node/federation/remote_e2ee.py)."""

    async def query_keys(self, wanted: Mapping[str, list[str]]) -> dict[str, Any]:
        """``device_keys``, ``master_keys``, ``self_signing_keys`` and ``failures``."""
        ...

    async def claim_keys(self, wanted: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
        """``one_time_keys`` and ``failures``."""
        ...


class KeyService:
    def __init__(
        self,
        db: Database,
        store: DeviceKeyStore,
        cross: CrossSigningStore,
        events: EventStore,
        notifier: Notifier,
        server_name: str,
    ) -> None:
        self.db = db
        self.store = store
        self.cross = cross
        self.events = events
        self.notifier = notifier
        self.server_name = server_name
        # Set once federation is assembled (node/app.py).
        self.remote: RemoteKeys | None = None

    def is_local(self, user_id: str) -> bool:
        return UserID.parse(user_id).domain == self.server_name

    def _remote_failures(self, user_ids: Iterable[str]) -> dict[str, Any]:
        return {UserID.parse(u).domain: dict(NO_FEDERATION) for u in user_ids}

    # -- POST /keys/upload ---------------------------------------------------------------

    async def upload(
        self,
        user_id: str,
        device_id: str,
        device_keys: dict[str, Any] | None,
        one_time_keys: KeyMap,
        fallback_keys: KeyMap,
    ) -> dict[str, int]:
        """Store the keys; return the device's one-time key counts."""

        async def txn(conn: aiosqlite.Connection) -> int | None:
            return await self.store.upload_txn(
                conn, user_id, device_id, device_keys, one_time_keys, fallback_keys
            )

        position = await self.db.write(txn)
        if position is not None:
            self.notifier.notify(DEVICE_LISTS, position)
        return await self.store.one_time_key_counts(user_id, device_id)

    # -- POST /keys/query ----------------------------------------------------------------

    async def query(self, requester_id: str, wanted: Mapping[str, list[str]]) -> dict[str, Any]:
        """Device and cross-signing keys of the wanted users (all devices for ``[]``)."""
        result: dict[str, Any] = {
            "device_keys": {},
            "master_keys": {},
            "self_signing_keys": {},
            "user_signing_keys": {},
        }
        remote = [u for u in wanted if not self.is_local(u)]
        result["failures"] = {}
        if remote and self.remote is not None:
            found = await self.remote.query_keys({u: wanted[u] for u in remote})
            for name in ("device_keys", "master_keys", "self_signing_keys", "failures"):
                result[name].update(found.get(name, {}))
        elif remote:
            result["failures"] = self._remote_failures(remote)
        for user_id, device_ids in wanted.items():
            if user_id in remote:
                continue
            rows = await self.store.get_device_keys(user_id)
            cross = await self.cross.get_keys(user_id)
            if not rows and not cross and not await self.store.device_ids(user_id):
                continue  # unknown user: left out, as the spec asks
            sigs = _visible(await self.cross.get_signatures(user_id), requester_id, user_id)
            devices: dict[str, Any] = {}
            for row in rows:
                if device_ids and row.device_id not in device_ids:
                    continue
                keys = merge_signatures(row.keys, sigs.get(row.device_id, ()))
                keys["unsigned"] = (
                    {"device_display_name": row.display_name} if row.display_name else {}
                )
                devices[row.device_id] = keys
            result["device_keys"][user_id] = devices
            for usage, key in cross.items():
                if usage == "user_signing" and user_id != requester_id:
                    continue  # only visible to its owner
                merged = merge_signatures(key.json, sigs.get(key.public_key, ()))
                result[f"{usage}_keys"][user_id] = merged
        return result

    # -- POST /keys/claim ----------------------------------------------------------------

    async def claim(self, wanted: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
        remote = [u for u in wanted if not self.is_local(u)]
        requests = [
            (user_id, device_id, algorithm)
            for user_id, devices in wanted.items()
            if user_id not in remote
            for device_id, algorithm in devices.items()
        ]

        async def txn(conn: aiosqlite.Connection) -> dict[str, dict[str, dict[str, Any]]]:
            return await self.store.claim_txn(conn, requests)

        claimed = await self.db.write(txn) if requests else {}
        failures: dict[str, Any] = {}
        if remote and self.remote is not None:
            found = await self.remote.claim_keys({u: wanted[u] for u in remote})
            claimed.update(found.get("one_time_keys", {}))
            failures = found.get("failures", {})
        elif remote:
            failures = self._remote_failures(remote)
        return {"one_time_keys": claimed, "failures": failures}

    # -- GET /keys/changes and /sync device_lists -----------------------------------------

    async def changed_users(self, user_id: str, after: int, upto: int) -> list[str]:
        """Users whose device lists changed in (after, upto] and who ``user_id`` tracks:
        itself, and the users it shares a joined room with."""
        changed = await self.store.users_changed(after, upto)
        visible = {u for u in changed if u == user_id}
        others = changed - visible
        if others:
            mine = set(await self.events.get_rooms_with_member(user_id, "join"))
            for other in others:
                theirs = await self.events.get_rooms_with_member(other, "join")
                if mine.intersection(theirs):
                    visible.add(other)
        return sorted(visible)

    async def device_list_delta(
        self, user_id: str, since: StreamToken, upto: StreamToken
    ) -> tuple[list[str], list[str]]:
        """``device_lists`` for (since, upto]: (changed, left).

        changed: :meth:`changed_users`, plus the users who newly share a room with
        ``user_id`` (a member joined one of its rooms, or it joined a room). left: the
        users who left a room shared with ``user_id`` (or whose room it left) and now
        share none with it (spec: end_to_end_encryption.md "Tracking the device list
        for a user")."""
        changed = set(
            await self.changed_users(user_id, since.get(DEVICE_LISTS), upto.get(DEVICE_LISTS))
        )
        after, until = since.get("events"), upto.get("events")
        if until <= after:
            return sorted(changed), []

        def read(conn: sqlite3.Connection) -> tuple[set[str], set[str], set[str]]:
            joined: set[str] = set()
            gone: set[str] = set()
            rows = conn.execute(
                "SELECT room_id, state_key, json_extract(json, '$.content.membership')"
                " FROM events WHERE stream_ordering > ? AND stream_ordering <= ?"
                " AND type = 'm.room.member' AND outlier = 0 AND rejected_reason IS NULL"
                " AND soft_failed = 0 ORDER BY stream_ordering",
                (after, until),
            ).fetchall()
            mine: dict[str, bool] = {}  # room -> the user is (or was) a member
            for room_id, member, membership in rows:
                if room_id not in mine:
                    mine[room_id] = (
                        conn.execute(
                            "SELECT 1 FROM current_state WHERE room_id = ?"
                            " AND type = 'm.room.member' AND state_key = ?",
                            (room_id, user_id),
                        ).fetchone()
                        is not None
                    )
                if not mine[room_id]:
                    continue
                if member == user_id:
                    (joined if membership == "join" else gone).update(
                        _joined_members(conn, room_id)
                    )
                elif membership == "join":
                    joined.add(member)
                elif membership in ("leave", "ban"):
                    gone.add(member)
            sharing = set()
            if joined or gone:
                sharing = {
                    r[0]
                    for r in conn.execute(
                        "SELECT DISTINCT b.state_key FROM current_state a"
                        " JOIN events ea ON ea.event_id = a.event_id"
                        " JOIN current_state b ON b.room_id = a.room_id"
                        " AND b.type = 'm.room.member'"
                        " JOIN events eb ON eb.event_id = b.event_id"
                        " WHERE a.type = 'm.room.member' AND a.state_key = ?"
                        " AND json_extract(ea.json, '$.content.membership') = 'join'"
                        " AND json_extract(eb.json, '$.content.membership') = 'join'",
                        (user_id,),
                    )
                }
            return joined, gone, sharing

        # A short range (an incremental /sync) is read on the loop, a long one on the
        # reader thread.
        reader = self.db.read_now if until - after <= 1000 else self.db.read_sync
        joined, gone, sharing = await reader(read)
        changed |= (joined & sharing) - {user_id}
        left = gone - sharing - {user_id}
        return sorted(changed - left), sorted(left)


def _joined_members(conn: sqlite3.Connection, room_id: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT c.state_key FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.room_id = ? AND c.type = 'm.room.member'"
            " AND json_extract(e.json, '$.content.membership') = 'join'",
            (room_id,),
        )
    ]


def _visible(sigs: list[Signature], requester_id: str, owner_id: str) -> dict[str, list[Signature]]:
    """Signatures on ``owner_id``'s keys that ``requester_id`` may see, by target key.

    Spec "Key and signature security": a user sees their own signatures and the key
    owner's signatures about the owner's own keys, never a third user's user-signing
    key's signatures.
    """
    out: dict[str, list[Signature]] = defaultdict(list)
    for s in sigs:
        if s.signer_user_id in (requester_id, owner_id):
            out[s.target_key_id].append(s)
    return out
