"""Rule 5 (v10/v11: rule 4) of the authorisation rules: ``m.room.member`` events.

Spec: content/rooms/v12.md "Authorisation rules" rule 5 (v10.md and v11.md rule 4), and
content/server-server-api.md "Third-party invites" → "Verifying the invite" for 5.4.1.
Numbers in comments follow room version 12. Every path ends in allow (return) or reject
(:class:`AuthError`): rule 5 decides a membership event on its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from unpaddedbase64 import decode_base64

from node.events.hashing import encode_base64
from node.events.pdu import THIRD_PARTY_INVITE, Event
from node.events.signing import (
    SignatureError,
    decode_verify_key_base64,
    verify_json,
)
from node.rooms.auth_common import (
    StateMap,
    create_event_of,
    deny,
    is_valid_user_id,
    join_rule_of,
    membership_of,
    server_of,
)
from node.rooms.auth_power import get_user_power_level, named_level


def check_member_event(event: Event, state: StateMap) -> None:
    """Rule 5 for an ``m.room.member`` event against ``state``; returns when allowed."""
    version = event.room_version
    content = event.content

    # 5.1 A membership event needs a state_key and content.membership.
    if not isinstance(event.state_key, str) or "membership" not in content:
        raise deny(version, "5.1", "no state_key or no membership")

    # 5.2 join_authorised_via_users_server must come with that user's server's signature.
    if "join_authorised_via_users_server" in content:
        _check_authorising_server_signed(event)

    membership = content["membership"]
    check = _BY_MEMBERSHIP.get(membership) if isinstance(membership, str) else None
    if check is None:
        # 5.8 Unknown membership.
        raise deny(version, "5.8", f"unknown membership {membership!r}")
    check(event, state)


def _check_authorising_server_signed(event: Event) -> None:
    # 5.2.1 "If the event is not validly signed by the homeserver of the user ID denoted by
    # the key, reject." Auth is pure and holds no server keys: here the event must carry a
    # signature from that server; the signature checks of the receive pipeline (step 2)
    # must verify it cryptographically, like the sender's server's.
    authoriser = event.content["join_authorised_via_users_server"]
    if not is_valid_user_id(authoriser):
        raise deny(event.room_version, "5.2.1", "join_authorised_via_users_server is not a user ID")
    server = server_of(authoriser)
    signatures = event.raw.get("signatures")
    by_server = signatures.get(server) if isinstance(signatures, Mapping) else None
    if not isinstance(by_server, Mapping) or not by_server:
        raise deny(event.room_version, "5.2.1", f"not signed by {server}, the authorising server")


# -- 5.3 join -------------------------------------------------------------------------------


def _check_join(event: Event, state: StateMap) -> None:
    version = event.room_version
    sender, target = event.sender, event.state_key

    # 5.3.1 The creator's own join right after the create event. v10 names the creator in
    # content.creator; v11+ use the create event's sender (in v12 not additional creators).
    create = create_event_of(state)
    if create is not None and event.prev_event_ids == [create.event_id]:
        creator = create.sender if version.implicit_room_creator else create.content.get("creator")
        if target == creator:
            return

    # 5.3.2 Only the user can join themself.
    if sender != target:
        raise deny(version, "5.3.2", "sender does not match state_key")

    current = membership_of(state, sender)
    # 5.3.3 Banned users cannot join.
    if current == "ban":
        raise deny(version, "5.3.3", "sender is banned")

    join_rule = join_rule_of(state)
    # 5.3.4 invite / knock: only the invited or the joined.
    if join_rule in ("invite", "knock"):
        if current in ("invite", "join"):
            return
        raise deny(version, "5.3.4", f"join rule is {join_rule} and sender is not invited")

    # 5.3.5 restricted / knock_restricted.
    if join_rule in ("restricted", "knock_restricted"):
        # 5.3.5.1 Already invited or joined.
        if current in ("invite", "join"):
            return
        # 5.3.5.2 Otherwise a joined member who can invite must have authorised the join.
        authoriser = event.content.get("join_authorised_via_users_server")
        if not isinstance(authoriser, str):
            raise deny(version, "5.3.5.2", "no join_authorised_via_users_server")
        if membership_of(state, authoriser) != "join":
            raise deny(version, "5.3.5.2", f"authorising user {authoriser} is not joined")
        if get_user_power_level(authoriser, state) < named_level(state, "invite"):
            raise deny(version, "5.3.5.2", f"authorising user {authoriser} cannot invite")
        # 5.3.5.3 Otherwise, allow.
        return

    # 5.3.6 public: anyone.
    if join_rule == "public":
        return

    # 5.3.7 Otherwise (private, unknown, or no m.room.join_rules event), reject.
    raise deny(version, "5.3.7", f"join rule {join_rule!r} does not allow joining")


# -- 5.4 invite -----------------------------------------------------------------------------


def _check_invite(event: Event, state: StateMap) -> None:
    version = event.room_version
    sender, target = event.sender, event.state_key or ""  # a string after 5.1

    # 5.4.1 Third-party invites are decided by the identity server's signature alone.
    if "third_party_invite" in event.content:
        _check_third_party_invite(event, state)
        return

    # 5.4.2 The inviter must be joined.
    if membership_of(state, sender) != "join":
        raise deny(version, "5.4.2", "sender is not joined")
    # 5.4.3 Cannot invite someone joined or banned.
    target_membership = membership_of(state, target)
    if target_membership in ("join", "ban"):
        raise deny(version, "5.4.3", f"target is already {target_membership}")
    # 5.4.4 Allow with the invite level; 5.4.5 otherwise reject.
    if get_user_power_level(sender, state) >= named_level(state, "invite"):
        return
    raise deny(version, "5.4.5", "sender's power level is below the invite level")


def _check_third_party_invite(event: Event, state: StateMap) -> None:
    version = event.room_version
    target = event.state_key or ""  # a string after 5.1

    # 5.4.1.1 A banned target cannot be invited.
    if membership_of(state, target) == "ban":
        raise deny(version, "5.4.1.1", "target is banned")
    # 5.4.1.2 `signed` is required.
    invite = event.content["third_party_invite"]
    signed = invite.get("signed") if isinstance(invite, Mapping) else None
    if not isinstance(signed, Mapping):
        raise deny(version, "5.4.1.2", "third_party_invite has no signed object")
    # 5.4.1.3 `signed` needs mxid and token.
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise deny(version, "5.4.1.3", "signed has no mxid or no token")
    # 5.4.1.4 The signed mxid is the invited user.
    if mxid != target:
        raise deny(version, "5.4.1.4", "signed mxid does not match state_key")
    # 5.4.1.5 The token names a current m.room.third_party_invite event.
    third_party_invite = state.get((THIRD_PARTY_INVITE, token))
    if third_party_invite is None:
        raise deny(version, "5.4.1.5", "no m.room.third_party_invite for the token")
    # 5.4.1.6 Only the sender of that event may complete it.
    if event.sender != third_party_invite.sender:
        raise deny(version, "5.4.1.6", "sender did not send the m.room.third_party_invite")
    # 5.4.1.7 Allow if any signature in `signed` is by any of its public keys.
    if signed_by_any_key(signed, third_party_invite.content):
        return
    # 5.4.1.8 Otherwise, reject.
    raise deny(version, "5.4.1.8", "no signature in signed matches the invite's public keys")


def _public_keys(content: Mapping[str, Any]) -> Iterator[bytes]:
    """5.4.1.7.1 `public_key` and 5.4.1.7.2 each `public_keys[].public_key`, decoded from
    unpadded base64 (standard or URL-safe); undecodable keys are skipped."""
    encoded: list[object] = [content.get("public_key")]
    public_keys = content.get("public_keys")
    if isinstance(public_keys, list):
        encoded += [k.get("public_key") for k in public_keys if isinstance(k, Mapping)]
    for key in encoded:
        if isinstance(key, str):
            try:
                yield decode_base64(key)
            except ValueError:
                continue


def signed_by_any_key(signed: Mapping[str, Any], third_party_invite: Mapping[str, Any]) -> bool:
    """Whether any ed25519 signature in ``signed`` verifies with any of the public keys in
    the content of an ``m.room.third_party_invite`` (Signing JSON, content/appendices.md)."""
    signatures = signed.get("signatures")
    if not isinstance(signatures, Mapping):
        return False
    keys = list(_public_keys(third_party_invite))
    for signer, by_key_id in signatures.items():
        if not isinstance(by_key_id, Mapping):
            continue
        for key_id in by_key_id:
            if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                continue
            for key in keys:
                try:
                    alg, version = key_id.split(":", 1)
                    verify_key = decode_verify_key_base64(alg, version, encode_base64(key))
                    verify_json(signed, signer, verify_key)
                except (SignatureError, ValueError, TypeError):
                    continue  # wrong key, bad key length or signature, unencodable JSON
                return True
    return False


# -- 5.5 leave, 5.6 ban, 5.7 knock ---------------------------------------------------------


def _check_leave(event: Event, state: StateMap) -> None:
    version = event.room_version
    sender, target = event.sender, event.state_key or ""  # a string after 5.1

    # 5.5.1 Leaving oneself: from invite (reject), join (leave) or knock (rescind).
    if sender == target:
        current = membership_of(state, sender)
        if current in ("invite", "join", "knock"):
            return
        raise deny(version, "5.5.1", f"cannot leave with membership {current}")
    # 5.5.2 Kicking (or unbanning) needs the sender joined.
    if membership_of(state, sender) != "join":
        raise deny(version, "5.5.2", "sender is not joined")
    sender_level = get_user_power_level(sender, state)
    # 5.5.3 Unbanning needs the ban level.
    if membership_of(state, target) == "ban" and sender_level < named_level(state, "ban"):
        raise deny(version, "5.5.3", "sender's power level is below the ban level")
    # 5.5.4 Kick level, and a target below the sender; 5.5.5 otherwise reject.
    if sender_level >= named_level(state, "kick"):
        if get_user_power_level(target, state) < sender_level:
            return
        raise deny(version, "5.5.5", "target's power level is not below the sender's")
    raise deny(version, "5.5.5", "sender's power level is below the kick level")


def _check_ban(event: Event, state: StateMap) -> None:
    version = event.room_version
    sender, target = event.sender, event.state_key or ""  # a string after 5.1

    # 5.6.1 The sender must be joined.
    if membership_of(state, sender) != "join":
        raise deny(version, "5.6.1", "sender is not joined")
    # 5.6.2 Ban level, and a target below the sender; 5.6.3 otherwise reject.
    sender_level = get_user_power_level(sender, state)
    if sender_level >= named_level(state, "ban"):
        if get_user_power_level(target, state) < sender_level:
            return
        raise deny(version, "5.6.3", "target's power level is not below the sender's")
    raise deny(version, "5.6.3", "sender's power level is below the ban level")


def _check_knock(event: Event, state: StateMap) -> None:
    version = event.room_version
    # 5.7.1 Only in knock and knock_restricted rooms.
    join_rule = join_rule_of(state)
    if join_rule not in ("knock", "knock_restricted"):
        raise deny(version, "5.7.1", f"join rule {join_rule!r} does not allow knocking")
    # 5.7.2 Only for oneself.
    if event.sender != event.state_key:
        raise deny(version, "5.7.2", "sender does not match state_key")
    # 5.7.3 Allow unless banned, invited or joined; 5.7.4 otherwise reject.
    current = membership_of(state, event.sender)
    if current not in ("ban", "invite", "join"):
        return
    raise deny(version, "5.7.4", f"cannot knock with membership {current}")


_BY_MEMBERSHIP = {
    "join": _check_join,
    "invite": _check_invite,
    "leave": _check_leave,
    "ban": _check_ban,
    "knock": _check_knock,
}
