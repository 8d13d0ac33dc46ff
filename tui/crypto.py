"""End-to-end encryption for the TUI, on matrix-nio's Olm machine (vodozemac).

Client-server API 11.12 (end-to-end encryption): the device's identity and one-time keys
are uploaded (``POST /keys/upload``), other devices' keys are fetched when ``device_lists``
of /sync names a change (``POST /keys/query``), one-time keys are claimed for new Olm
sessions (``POST /keys/claim``), and queued to-device messages (room keys, key requests,
``m.key.verification.*``) go out with ``PUT /sendToDevice``. ``maintain`` does all of that
after each /sync.

``event_dict`` turns a timeline event into the dict the timeline renders: a decrypted
``m.room.encrypted`` event becomes its plaintext type and content under the outer event's
ID, sender and timestamp; one that cannot be decrypted stays ``m.room.encrypted`` and says
why. When a room key arrives late (``m.room_key`` / ``m.forwarded_room_key``, 11.12.5),
``redecrypt`` decrypts in place the events already shown. A missing key is asked for once
per session (``m.room_key_request``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import aiohttp
import nio

from tui.commands import describe
from tui.timeline_model import RoomTimeline

ENCRYPTED = "m.room.encrypted"
OUTER = "_croft_outer"  # set on a decrypted nio event: the m.room.encrypted event it came from
REASON = "_croft_reason"  # set on a MegolmEvent nio could not decrypt
NO_KEY = "the room key for this message has not arrived"
SEND_ERRORS = (
    nio.LocalProtocolError,
    nio.EncryptionError,
    nio.GroupEncryptionError,
    nio.OlmTrustError,
)
"""What ``room_send`` raises when it cannot encrypt for a room (shown, never a crash)."""


@dataclass
class _State:
    """What the encryption helpers remember per client."""

    missing: dict[str, nio.MegolmEvent] = field(default_factory=dict)
    """Undecryptable events by session ID, whose key is still to be requested."""
    requested: set[str] = field(default_factory=set)  # session IDs asked for
    reported: set[str] = field(default_factory=set)  # problems already told to the user


_states: WeakKeyDictionary[nio.AsyncClient, _State] = WeakKeyDictionary()


def _state(client: nio.AsyncClient) -> _State:
    return _states.setdefault(client, _State())


def config() -> nio.AsyncClientConfig:
    """nio's configuration for the TUI: encryption on, with its SQLite store."""
    return nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)


def remembered_device(store_dir: Path) -> str:
    """The device ID a password login used last time with this store ('' if none)."""
    try:
        return (store_dir / "device_id").read_text("utf-8").strip()
    except OSError:
        return ""


def open_store(client: nio.AsyncClient, store_dir: Path) -> None:
    """Load (or create) the Olm account and sessions of the client's device from
    ``store_dir``; the client must know its user and device IDs."""
    store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (store_dir / "device_id").write_text(f"{client.device_id}\n", "utf-8")
    client.store_path = os.fspath(store_dir)
    client.load_store()
    if client.olm is not None:
        _keep_outer_events(client, client.olm)


def _keep_outer_events(client: nio.AsyncClient, olm: Any) -> None:
    """Wrap the Olm machine's Megolm decryption so a decrypted event keeps the encrypted
    event it came from (its ``unsigned``), and a failure keeps its reason and is queued
    for a key request."""
    decrypt = olm.decrypt_megolm_event
    state = _state(client)

    def decrypt_keeping_outer(event: nio.MegolmEvent, room_id: str | None = None) -> Any:
        try:
            decrypted = decrypt(event, room_id)
        except nio.EncryptionError as e:
            no_session = "no session found" in str(e)
            setattr(event, REASON, NO_KEY if no_session else f"decryption failed: {e}")
            if no_session and event.session_id and event.session_id not in state.requested:
                state.missing[event.session_id] = event
            raise
        setattr(decrypted, OUTER, event.source)
        return decrypted

    olm.decrypt_megolm_event = decrypt_keeping_outer


def event_dict(event: nio.Event) -> dict[str, Any]:
    """The dict the timeline renders for ``event`` (see the module docstring).

    Decrypted: the plaintext ``type`` and ``content`` with the outer ``event_id``,
    ``sender``, ``origin_server_ts``, ``room_id`` and ``unsigned`` (its
    ``transaction_id`` replaces the local echo), and ``croft_encrypted: True``.
    Undecryptable: the raw ``m.room.encrypted`` event with ``croft_undecryptable``
    set to the reason.
    """
    if isinstance(event, nio.MegolmEvent):
        raw = dict(event.source)
        raw["croft_undecryptable"] = getattr(event, REASON, NO_KEY)
        return raw
    if not getattr(event, "decrypted", False):
        source: dict[str, Any] = event.source
        if source.get("type") != ENCRYPTED:
            return source
        if isinstance(event, nio.UnknownEncryptedEvent):
            return {**source, "croft_undecryptable": "an unknown encryption algorithm"}
        return {**source, "croft_undecryptable": "a malformed encrypted event"}
    inner: dict[str, Any] = event.source
    outer: dict[str, Any] = getattr(event, OUTER, None) or {}
    shown: dict[str, Any] = {"type": inner.get("type"), "content": inner.get("content") or {}}
    for key in ("event_id", "sender", "origin_server_ts", "room_id"):
        value = outer.get(key, inner.get(key))
        if value is not None:
            shown[key] = value
    room_id = getattr(event, "room_id", None)
    if room_id and "room_id" not in shown:
        shown["room_id"] = room_id
    unsigned = {**(outer.get("unsigned") or {}), **(inner.get("unsigned") or {})}
    if unsigned:
        shown["unsigned"] = unsigned
    shown["croft_encrypted"] = True
    return shown


def keys_arrived(response: nio.SyncResponse) -> bool:
    """Whether this /sync brought room keys (decrypted ``m.room_key`` or
    ``m.forwarded_room_key``): events shown as undecryptable may decrypt now."""
    kinds = (nio.RoomKeyEvent, nio.ForwardedRoomKeyEvent)
    return any(isinstance(e, kinds) for e in response.to_device_events)


def decrypt_again(
    client: nio.AsyncClient, room_id: str, shown: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The event dict for an event shown as undecryptable, if its key has arrived."""
    if client.olm is None or "croft_undecryptable" not in shown:
        return None
    raw = {k: v for k, v in shown.items() if k != "croft_undecryptable"}
    try:
        parsed = nio.MegolmEvent.from_dict(raw)
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(parsed, nio.MegolmEvent):
        return None  # not a Megolm event (nio's BadEvent)
    parsed.room_id = room_id
    try:
        return event_dict(client.olm.decrypt_megolm_event(parsed, room_id))
    except nio.EncryptionError:
        return None


def redecrypt(client: nio.AsyncClient, room_id: str, timeline: RoomTimeline) -> bool:
    """Decrypt the entries of ``timeline`` shown as undecryptable whose key has arrived
    since; True if any changed (the timeline widget should re-render)."""
    changed = False
    for entry in [e for e in timeline.entries if "croft_undecryptable" in e.event]:
        event = decrypt_again(client, room_id, entry.event)
        if event is None:
            continue
        changed = True
        timeline.replace_event(entry, event)
    return changed


async def maintain(client: nio.AsyncClient) -> list[str]:
    """The key work due after a /sync: upload our keys, query changed devices, claim
    one-time keys, send queued to-device messages, request missing room keys.

    Returns the problems not reported before, one line each for the user.
    """
    if client.olm is None:
        return []
    problems: list[str] = []
    try:
        if client.should_upload_keys:
            problems += _refused("upload the encryption keys", await client.keys_upload())
        if client.should_query_keys:
            problems += _refused("fetch the devices' keys", await client.keys_query())
        if client.should_claim_keys:
            claim = await client.keys_claim(client.get_users_for_key_claiming())
            problems += _refused("claim one-time keys", claim)
        for sent in await client.send_to_device_messages():
            problems += _refused("send a to-device message", sent)
        problems += await _request_missing_keys(client)
    except (TimeoutError, nio.LocalProtocolError, aiohttp.ClientError) as e:
        problems.append(f"encryption keys: {e or type(e).__name__}")
    state = _state(client)
    new = [p for p in problems if p not in state.reported]
    state.reported.update(new)
    return new


async def _request_missing_keys(client: nio.AsyncClient) -> list[str]:
    state = _state(client)
    problems: list[str] = []
    while state.missing:
        session_id, event = state.missing.popitem()
        state.requested.add(session_id)
        if session_id in client.outgoing_key_requests:
            continue
        try:
            problems += _refused("request a room key", await client.request_room_key(event))
        except nio.LocalProtocolError:
            continue  # already asked for
    return problems


def _refused(what: str, response: object) -> list[str]:
    if isinstance(response, nio.ErrorResponse):
        return [f"cannot {what}: {describe(response)}"]
    return []


def new_verifications(client: nio.AsyncClient, response: nio.SyncResponse) -> list[Any]:
    """The SAS verifications other devices started in this /sync
    (``m.key.verification.start``, 11.12.2.2) that nio accepted as valid: ``Sas``
    objects for the verification dialog."""
    started = []
    for event in response.to_device_events:
        if isinstance(event, nio.KeyVerificationStart):
            sas = client.key_verifications.get(event.transaction_id)
            if sas is not None and not sas.we_started_it and not sas.canceled:
                started.append(sas)
    return started
