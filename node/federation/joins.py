"""Membership in rooms that live on other servers: joining, knocking and leaving
through a resident server, and invites in both directions.

Spec: content/server-server-api.md "Joining Rooms" (make_join, send_join v2),
"Knocking upon a room", "Leaving Rooms (Rejecting Invites)", "Inviting to a room"
(invite v2); api/server-server/joins-v2.yaml, knocks.yaml, leaving-v2.yaml,
invites-v2.yaml.

A join through a resident server: ask it for a join event template (``make_join``),
fill it in, hash and sign it, send it (``send_join``); the answer holds the room's
state before the join and its auth chain. Every one of those events is checked (the
receive checks 1 to 4, node/federation/pdus.py) and stored as an outlier; the join
itself must pass the auth rules against that state. Then the join is stored as the
room's first DAG event here: its state before is the state the resident server sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from node.errors import MatrixError, forbidden
from node.events.hashing import add_content_hash
from node.events.pdu import CREATE, MEMBER, Event, StateKey
from node.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, room_version
from node.events.signing import sign_event
from node.federation.common import FederationRequestError, RemoteError, path_segment
from node.federation.pdu_format import PduFormatError, parse_pdu
from node.rooms.auth import AuthError, check_auth_rules, check_state_dependent_auth_rules
from node.storage.events import persist_event
from node.storage.state import StateIds, set_event_groups, set_room_group, write_group

log = logging.getLogger(__name__)

# Stripped state events given to an invitee (spec "Stripped state").
STRIPPED_STATE_TYPES = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.name",
    "m.room.encryption",
    "m.room.topic",
)
MAX_STRIPPED_EVENTS = 50


def room_state_events(state: Mapping[StateKey, Event]) -> list[dict[str, Any]]:
    """``invite_room_state`` / ``knock_room_state`` for another server: the room's
    create event and its other identifying state, as full events of the room's version
    (spec v1.16: invites-v2.yaml, knocks.yaml)."""
    out = []
    for (etype, _), ev in state.items():
        if etype in STRIPPED_STATE_TYPES:
            pdu = {k: v for k, v in ev.raw.items() if k != "unsigned"}
            out.append(pdu)
    return out


def stripped(events: Iterable[Any]) -> list[dict[str, Any]]:
    """Stripped state events for clients (client-server "Stripped state"): type,
    state_key, sender and content of each, whatever else the server sent."""
    out = []
    for e in events:
        if (
            isinstance(e, dict)
            and isinstance(e.get("type"), str)
            and isinstance(e.get("state_key"), str)
            and isinstance(e.get("sender"), str)
            and isinstance(e.get("content"), dict)
        ):
            out.append({k: e[k] for k in ("type", "state_key", "sender", "content")})
        if len(out) >= MAX_STRIPPED_EVENTS:
            break
    return out


class RemoteMembership:
    """Joins, knocks and leaves through resident servers; remote invites."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.server_name: str = node.config.server_name

    @property
    def client(self) -> Any:
        return self.node.federation_client

    # -- joins, knocks, leaves through a resident server ---------------------------------

    async def join(
        self,
        user_id: str,
        room_id: str,
        servers: Sequence[str],
        content: Mapping[str, Any],
    ) -> str:
        """Join ``room_id`` through the first of ``servers`` that can do it."""
        return await self._through(user_id, room_id, servers, "join", content)

    async def knock(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str:
        return await self._through(user_id, room_id, servers, "knock", content)

    async def leave(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str:
        return await self._through(user_id, room_id, servers, "leave", content)

    async def _through(
        self,
        user_id: str,
        room_id: str,
        servers: Sequence[str],
        membership: str,
        content: Mapping[str, Any],
    ) -> str:
        candidates = [s for s in dict.fromkeys(servers) if s and s != self.server_name]
        if not candidates:
            raise MatrixError(
                404, "M_NOT_FOUND", f"No server to {membership} {room_id} through is known"
            )
        errors: list[str] = []
        for server in candidates:
            try:
                return await self._via(server, user_id, room_id, membership, content)
            except _Refused as e:
                raise e.error from None
            except (FederationRequestError, _BadAnswer) as e:
                log.info("%s of %s through %s failed: %s", membership, room_id, server, e)
                errors.append(f"{server}: {e}")
        raise MatrixError(
            502,
            "M_UNKNOWN",
            f"Could not {membership} {room_id} through any server: " + "; ".join(errors)[:500],
        )

    async def _via(
        self,
        server: str,
        user_id: str,
        room_id: str,
        membership: str,
        content: Mapping[str, Any],
    ) -> str:
        make = {"join": "make_join", "knock": "make_knock", "leave": "make_leave"}[membership]
        send = {"join": "v2/send_join", "knock": "v1/send_knock", "leave": "v2/send_leave"}[
            membership
        ]
        query = {"ver": list(KNOWN_ROOM_VERSIONS)} if membership != "leave" else None
        try:
            answer = await self.client.get_json(
                server,
                f"/_matrix/federation/v1/{make}/{path_segment(room_id)}/{path_segment(user_id)}",
                query=query,
            )
        except RemoteError as e:
            if e.errcode in ("M_FORBIDDEN", "M_INCOMPATIBLE_ROOM_VERSION"):
                status = 403 if e.errcode == "M_FORBIDDEN" else 400
                message = str(e.body.get("error") or e)
                raise _Refused(MatrixError(status, e.errcode, message)) from None
            raise
        if not isinstance(answer, dict) or not isinstance(answer.get("event"), dict):
            raise _BadAnswer(f"{make}: no event template")
        version_id = answer.get("room_version", "1" if membership == "leave" else None)
        version = await self._version(room_id, version_id)
        event = self._fill(answer["event"], version, room_id, user_id, membership, content)
        log.info("%s %s through %s as %s", membership, room_id, server, event.event_id)
        body = await self.client.put_json(
            server,
            f"/_matrix/federation/{send}/{path_segment(room_id)}/{path_segment(event.event_id)}",
            event.raw,
            timeout=300.0,
        )
        if membership == "join":
            await self._joined(server, event, body)
        elif membership == "knock":
            room_state = body.get("knock_room_state") if isinstance(body, dict) else None
            await self._store_alone(event, version, room_state)
        else:
            await self._store_alone(event, version, None)
        return event.event_id

    async def _version(self, room_id: str, version_id: object) -> RoomVersion:
        if isinstance(version_id, str) and version_id in KNOWN_ROOM_VERSIONS:
            return room_version(version_id)
        known = await self.node.events.get_room_version(room_id)
        if known is not None and version_id is None:
            return known
        raise _Refused(
            MatrixError(
                400,
                "M_INCOMPATIBLE_ROOM_VERSION",
                f"Room {room_id} has version {version_id!r}, which this server does not support",
            )
        )

    def _fill(
        self,
        template: Mapping[str, Any],
        version: RoomVersion,
        room_id: str,
        user_id: str,
        membership: str,
        content: Mapping[str, Any],
    ) -> Event:
        """Check a make_* template names what we asked for, fill it in, hash and sign."""
        pdu = {k: v for k, v in template.items() if k not in ("hashes", "signatures", "unsigned")}
        if (
            pdu.get("type") != MEMBER
            or pdu.get("state_key") != user_id
            or pdu.get("sender") != user_id
            or pdu.get("room_id") != room_id
        ):
            raise _BadAnswer("the event template is not this user's membership in this room")
        theirs = pdu.get("content")
        base = dict(theirs) if isinstance(theirs, dict) else {}
        if base.get("membership") != membership:
            raise _BadAnswer(f"the template's membership is {base.get('membership')!r}")
        base.update(content)
        base["membership"] = membership
        pdu["content"] = base
        pdu["origin_server_ts"] = int(time.time() * 1000)
        if not version.implicit_room_creator:
            pdu["origin"] = self.server_name
        else:
            pdu.pop("origin", None)
        key = self.node.server_key
        pdu = sign_event(add_content_hash(pdu), key.server_name, key.signing_key, version)
        try:
            return parse_pdu(pdu, version)
        except PduFormatError as e:
            raise _BadAnswer(f"the filled-in template is not a valid event: {e}") from None

    async def _joined(self, server: str, join: Event, body: Any) -> None:
        """Check and store what send_join answered, then the join itself."""
        if isinstance(body, list) and len(body) == 2:  # v1 shape [200, {...}]
            body = body[1]
        if not isinstance(body, dict):
            raise _BadAnswer("send_join: not a JSON object")
        state_pdus, chain = body.get("state"), body.get("auth_chain")
        if not isinstance(state_pdus, list) or not isinstance(chain, list):
            raise _BadAnswer("send_join: state and auth_chain must be lists")
        signed = body.get("event")
        version = join.room_version
        if isinstance(signed, dict):  # restricted joins: the resident server signed it
            try:
                again = parse_pdu(signed, version)
            except PduFormatError:
                again = None
            if again is not None and again.event_id == join.event_id:
                join = again
        receiver = self.node.pdu_receiver
        room_id = join.room_id
        async with self.node.rooms.lock(room_id):
            await store_room(self.node, room_id, version)
            ids: list[str | None] = []
            stored = await receiver.store_outliers(server, [*state_pdus, *chain], version, ids)
            state: StateIds = {}
            for event_id in ids[: len(state_pdus)]:
                if event_id is None:
                    continue
                ok = stored.get(event_id)
                if ok is None or ok.rejected_reason is not None or not ok.is_state:
                    raise _BadAnswer(f"send_join: state event {event_id} is not valid")
                state[ok.key] = ok.event_id
            if (CREATE, "") not in state:
                raise _BadAnswer("send_join: the state has no create event")
            state_events = {k: stored[i] for k, i in state.items()}
            auth = [stored[a] for a in join.auth_event_ids if a in stored]
            try:
                check_auth_rules(join, auth, state_events.get((CREATE, "")))
                check_state_dependent_auth_rules(join, state_events)
            except AuthError as e:
                raise _BadAnswer(f"our join does not pass the room's auth rules: {e}") from None
            await self._store_joined(join, state)
        log.info("joined %s through %s (%d state events)", room_id, server, len(state))

    async def _store_joined(self, join: Event, before: StateIds) -> None:
        """The join as the room's first DAG event here, its state the resident's."""
        node = self.node
        room_id = join.room_id
        states = node.states
        before_group, g1 = states.plan(room_id, None, None, before)
        after = {**before, join.key: join.event_id}
        after_group, g2 = states.plan(room_id, before_group, before, after)

        def write(conn: Any) -> int:
            stream = persist_event(conn, join, update_current_state=False)
            conn.execute(
                "DELETE FROM forward_extremities WHERE room_id = ? AND event_id != ?",
                (room_id, join.event_id),
            )
            for g in (g1, g2):
                if g is not None:
                    write_group(conn, g)
            set_event_groups(conn, join.event_id, before_group, after_group)
            conn.execute("DELETE FROM current_state WHERE room_id = ?", (room_id,))
            conn.executemany(
                "INSERT INTO current_state (room_id, type, state_key, event_id)"
                " VALUES (?, ?, ?, ?)",
                [(room_id, t, k, e) for (t, k), e in after.items()],
            )
            set_room_group(conn, room_id, after_group)
            return stream

        stream = await node.db.write_sync(write)
        node.rooms.forget_head(room_id)
        head = await node.rooms.head(room_id)
        if head is not None:
            await node.rooms.run_on_persisted([(join, dict(head.state))])
        node.notifier.notify("events", stream)

    async def _store_alone(self, event: Event, version: RoomVersion, room_state: object) -> None:
        """A knock or a leave in a room we are not in: the membership is all we know."""
        node = self.node
        raw = dict(event.raw)
        if isinstance(room_state, list):
            raw["unsigned"] = {"knock_room_state": stripped(room_state)}
        stored = Event(event.event_id, version, raw)
        await store_membership_only(node, stored, version)

    # -- invites -------------------------------------------------------------------------

    async def invite_remote(self, event: Event, state: Mapping[StateKey, Event]) -> Event:
        """Send a local invite of a remote user to their server, which countersigns it
        (invite v2). Returns the event with their signature added."""
        target = event.state_key or ""
        server = target.split(":", 1)[1] if ":" in target else ""
        body = {
            "event": event.raw,
            "room_version": event.room_version.identifier,
            "invite_room_state": room_state_events(state),
        }
        try:
            answer = await self.client.put_json(
                server,
                f"/_matrix/federation/v2/invite/{path_segment(event.room_id)}/{path_segment(event.event_id)}",
                body,
            )
        except RemoteError as e:
            raise MatrixError(
                403 if e.status == 403 else 502,
                e.errcode or "M_UNKNOWN",
                f"{server} refused the invite: {e.body.get('error', e)}",
            ) from None
        except FederationRequestError as e:
            raise MatrixError(502, "M_UNKNOWN", f"Could not reach {server}: {e}") from None
        signed = answer.get("event") if isinstance(answer, dict) else None
        try:
            countersigned = parse_pdu(signed, event.room_version)
        except PduFormatError as e:
            raise MatrixError(502, "M_UNKNOWN", f"{server} answered a bad invite: {e}") from None
        if countersigned.event_id != event.event_id:
            raise MatrixError(502, "M_UNKNOWN", f"{server} changed the invite event")
        try:
            await self.node.keyring.verify_json(_redacted_for_signature(countersigned), server)
        except Exception as e:
            raise MatrixError(
                502, "M_UNKNOWN", f"{server}'s signature on the invite does not verify: {e}"
            ) from None
        return countersigned

    async def on_invite(
        self, origin: str, raw: Any, version: RoomVersion, invite_state: Any
    ) -> dict[str, Any]:
        """Inbound invite v2: check, countersign and store a remote invite of our user."""
        try:
            event = parse_pdu(raw, version)
        except PduFormatError as e:
            raise MatrixError(400, "M_BAD_JSON", f"Not a valid event: {e}") from None
        target = event.state_key or ""
        if event.type != MEMBER or event.membership != "invite":
            raise MatrixError(400, "M_BAD_JSON", "Not an invite event")
        if not target.endswith(":" + self.server_name) or not (
            await self.node.accounts.store.account_exists(target)
        ):
            raise MatrixError(404, "M_NOT_FOUND", f"No user {target} on this server")
        if event.sender.split(":", 1)[-1] != origin:
            raise forbidden("The inviting user is not on the server that sent the invite")
        checked = await self.node.pdu_receiver.check_event(event.raw, version)
        if version.room_id_is_create_event_id:  # "SHOULD apply" from v12 on
            await self._check_invite_room_state(invite_state, event.room_id, version)
        key = self.node.server_key
        signed_raw = sign_event(checked.raw, key.server_name, key.signing_key, version)
        stored_raw = dict(signed_raw)
        if isinstance(invite_state, list):
            stored_raw["unsigned"] = {"invite_room_state": stripped(invite_state)}
        stored = Event(event.event_id, version, stored_raw)
        if await self.node.rooms.is_resident(event.room_id):
            # We are in the room: the invite arrives as a PDU too; nothing to store here.
            return signed_raw
        await store_membership_only(self.node, stored, version)
        return signed_raw

    async def _check_invite_room_state(
        self, room_state: Any, room_id: str, version: RoomVersion
    ) -> None:
        """invites-v2.yaml: the create event must be there, and every entry a signed
        event of the room's version in this room; else 400 M_INVALID_PARAM."""

        def invalid(why: str) -> MatrixError:
            return MatrixError(400, "M_INVALID_PARAM", f"invite_room_state: {why}")

        if not isinstance(room_state, list) or len(room_state) > MAX_STRIPPED_EVENTS:
            raise invalid(f"must be a list of at most {MAX_STRIPPED_EVENTS} events")
        has_create = False
        for raw in room_state:
            try:
                ev = parse_pdu(raw, version)
            except PduFormatError as e:
                raise invalid(f"not an event of room version {version.identifier}: {e}") from None
            if ev.room_id != room_id:
                raise invalid(f"{ev.event_id} is not in {room_id}")
            try:
                await self.node.keyring.verify_event_signatures(ev.raw, version)
            except Exception as e:
                raise invalid(f"{ev.event_id} fails its signature check: {e}") from None
            has_create = has_create or ev.type == CREATE
        if not has_create:
            raise invalid("the m.room.create event is missing")


class _Refused(Exception):
    """The resident server said no (forbidden, version): do not try another one."""

    def __init__(self, error: MatrixError) -> None:
        super().__init__(str(error))
        self.error = error


class _BadAnswer(Exception):
    """A resident server answered something unusable: try the next one."""


def _redacted_for_signature(event: Event) -> dict[str, Any]:
    from node.events.redaction import redact

    return redact(event.raw, event.room_version)


async def store_room(node: Any, room_id: str, version: RoomVersion) -> None:
    def write(conn: Any) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO rooms (room_id, room_version, created_ts) VALUES (?, ?, ?)",
            (room_id, version.identifier, int(time.time() * 1000)),
        )

    await node.db.write_sync(write)


async def store_membership_only(node: Any, event: Event, version: RoomVersion) -> None:
    """Store a membership event of a room this server is not in (an invite of our user,
    or our knock or leave): the room row, the event in the stream (so /sync sees it)
    and the membership in the current state; no extremities, no state groups."""
    room_id = event.room_id
    user = event.state_key or ""

    def write(conn: Any) -> int:
        conn.execute(
            "INSERT OR IGNORE INTO rooms (room_id, room_version, created_ts) VALUES (?, ?, ?)",
            (room_id, version.identifier, int(time.time() * 1000)),
        )
        stream = persist_event(conn, event, outlier=True)
        conn.execute("UPDATE events SET outlier = 0 WHERE event_id = ?", (event.event_id,))
        conn.execute(
            "INSERT OR REPLACE INTO current_state (room_id, type, state_key, event_id)"
            " VALUES (?, ?, ?, ?)",
            (room_id, MEMBER, user, event.event_id),
        )
        if event.membership in ("invite", "knock"):
            conn.execute(
                "DELETE FROM forgotten_rooms WHERE user_id = ? AND room_id = ?", (user, room_id)
            )
        return stream

    stream = await node.db.write_sync(write)
    node.rooms.forget_head(room_id)
    node.notifier.notify("events", stream)
