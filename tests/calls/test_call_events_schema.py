"""Every m.call.* event Croft sends validates against the spec's event schemas, and the
spec's own examples parse.

Spec: event-schemas/schema/m.call.*.yaml (with core-event-schema/call_event.yaml and
room_event.yaml through $refs, resolved by the registry of :mod:`tests.openapi.spec`)
and event-schemas/examples/m.call.*.yaml. The events come from whole simulated calls
(tests/calls/test_signalling.py): answered, rejected, timed out, in glare, renegotiated,
answered elsewhere.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema
import pytest
import yaml

from node.calls import events as ev
from node.calls.events import MalformedCallEvent, parse_content, parse_event
from node.calls.signalling import Send
from tests.calls.test_signalling import BOB, CAROL, HOST, ROOM, Net, connected_call, pair
from tests.openapi.spec import SPEC_DIR, _registry

EVENT_SCHEMAS = SPEC_DIR / "event-schemas"
pytestmark = pytest.mark.skipif(
    not EVENT_SCHEMAS.is_dir(), reason="the Matrix spec is not checked out beside the repo"
)


def full_call() -> list[Send]:
    net, call_id = connected_call()
    alice, bob = net.call("alice", call_id), net.call("bob", call_id)
    net.do("alice", alice.local_candidates([HOST]))
    net.do(
        "bob",
        bob.local_candidates(
            [HOST, ev.Candidate("cand 2", sdp_mid="1", sdp_mline_index=1)], done=True
        ),
    )
    net.do("alice", alice.local_candidates([], done=True))
    net.do("alice", alice.renegotiate("offer 2"))
    net.do("bob", bob.answer_negotiation("answer 2"))
    net.do("bob", bob.hangup("ice_failed"))
    return net.sent


def rejected() -> list[Send]:
    net = pair()
    call_id = net.place("alice", invitee=BOB)
    net.do("bob", net.call("bob", call_id).reject())
    return net.sent


def timed_out() -> list[Send]:
    net = pair()
    call_id = net.place("alice")
    expires = net.call("alice", call_id).expires_at_ms
    assert expires is not None
    net.do("alice", net.routers["alice"].tick(expires))
    return net.sent


def glare() -> list[Send]:
    net = Net()
    net.add("alice", "@alice:a.test", prefix="B")
    net.add("bob", BOB, prefix="A")
    net.place("alice", run=False)
    kept = net.place("bob", run=False)
    net.run()
    net.do("alice", net.call("alice", kept).answer("auto answer"))
    return net.sent


def answered_elsewhere() -> list[Send]:
    net = Net()
    net.add("alice", "@alice:a.test")
    net.add("bob", BOB)
    net.add("carol", CAROL)
    call_id = net.place("alice")
    net.post("bob", net.call("bob", call_id).answer("bob"))
    net.post("carol", net.call("carol", call_id).answer("carol"))
    net.run()
    return net.sent


@cache
def all_sent() -> list[Send]:
    return full_call() + rejected() + timed_out() + glare() + answered_elsewhere()


def validator(event_type: str, pointer: str = "") -> jsonschema.Draft202012Validator:
    uri = (EVENT_SCHEMAS / "schema" / f"{event_type}.yaml").resolve().as_uri()
    return jsonschema.Draft202012Validator({"$ref": f"{uri}#{pointer}"}, registry=_registry())


def check(v: jsonschema.Draft202012Validator, instance: Any) -> None:
    error = jsonschema.exceptions.best_match(v.iter_errors(instance))
    if error is not None:
        raise error


def as_room_event(s: Send, i: int) -> dict[str, Any]:
    """What was sent, as the room event a client receives."""
    return {
        "type": s.event_type,
        "content": s.content,
        "event_id": f"$event{i}",
        "sender": BOB,
        "origin_server_ts": 1_700_000_000_000,
        "room_id": ROOM,
    }


def test_the_simulated_calls_send_every_event_type() -> None:
    assert {s.event_type for s in all_sent()} == ev.CALL_EVENT_TYPES


@pytest.mark.parametrize("event_type", sorted(ev.CALL_EVENT_TYPES))
def test_sent_events_validate_against_the_spec(event_type: str) -> None:
    sent = [s for s in all_sent() if s.event_type == event_type]
    assert sent
    content_schema = validator(event_type, "/properties/content")
    event_schema = validator(event_type)
    for i, s in enumerate(sent):
        check(content_schema, s.content)
        check(event_schema, as_room_event(s, i))
        # What we send, we accept.
        assert parse_content(s.event_type, s.content).call_id == s.call_id


NIO_EVENTS = {
    ev.INVITE: "CallInviteEvent",
    ev.CANDIDATES: "CallCandidatesEvent",
    ev.ANSWER: "CallAnswerEvent",
    ev.HANGUP: "CallHangupEvent",
}


@pytest.mark.parametrize("event_type", sorted(NIO_EVENTS))
def test_matrix_nio_parses_what_is_sent(event_type: str) -> None:
    """matrix-nio's schemas are stricter than the spec's (every candidate with its
    ``sdpMid`` and ``sdpMLineIndex``, end-of-candidates too): an event it fails to
    validate becomes a BadEvent, and a nio client loses the candidates in it."""
    import nio

    sent = [s for s in all_sent() if s.event_type == event_type]
    assert sent
    for i, s in enumerate(sent):
        parsed = nio.Event.parse_event(as_room_event(s, i))
        assert type(parsed).__name__ == NIO_EVENTS[event_type], (s.content, parsed)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda c: c.pop("party_id"),
        lambda c: c.update(version=1),
        lambda c: c["offer"].pop("type"),
        lambda c: c.update(lifetime="90000"),
    ],
)
def test_the_schema_check_can_fail(spoil: Any) -> None:
    content = ev.invite_content("c1", "p1", "v=0", 90_000)
    spoil(content)
    with pytest.raises(jsonschema.ValidationError):
        check(validator(ev.INVITE, "/properties/content"), content)


def _example(event_type: str) -> dict[str, Any]:
    path = EVENT_SCHEMAS / "examples" / f"{event_type}.yaml"
    with path.open(encoding="utf-8") as f:
        example: dict[str, Any] = yaml.safe_load(f)
    return example


@pytest.mark.parametrize("event_type", sorted(ev.CALL_EVENT_TYPES))
def test_the_spec_examples_parse(event_type: str) -> None:
    example = _example(event_type)
    content = parse_content(event_type, example["content"])
    assert (content.call_id, content.party_id, content.version) == ("12345", "67890", "1")
    event = {"type": event_type, "sender": BOB, "content": example["content"]}
    assert parse_event(event | {"unsigned": {"age": 1234}}, 0).age_ms == 1234


def test_example_details() -> None:
    invite = parse_content(ev.INVITE, _example(ev.INVITE)["content"])
    assert isinstance(invite, ev.Invite) and invite.lifetime == 60_000
    assert invite.offer.sdp.startswith("v=0\r\n") and invite.invitee is None
    candidates = parse_content(ev.CANDIDATES, _example(ev.CANDIDATES)["content"])
    assert isinstance(candidates, ev.Candidates) and not candidates.done
    assert candidates.candidates[0].sdp_mid == "audio"
    assert candidates.candidates[0].sdp_mline_index == 0
    negotiate = parse_content(ev.NEGOTIATE, _example(ev.NEGOTIATE)["content"])
    assert isinstance(negotiate, ev.Negotiate) and negotiate.description.type == "offer"
    select = parse_content(ev.SELECT_ANSWER, _example(ev.SELECT_ANSWER)["content"])
    assert isinstance(select, ev.SelectAnswer) and select.selected_party_id == "111213"
    hangup = parse_content(ev.HANGUP, _example(ev.HANGUP)["content"])
    assert isinstance(hangup, ev.Hangup) and hangup.reason == "user_hangup"


def test_stream_metadata_changed_is_not_handled() -> None:
    example = _example("m.call.sdp_stream_metadata_changed")
    with pytest.raises(MalformedCallEvent, match="not a call event Croft handles"):
        parse_content("m.call.sdp_stream_metadata_changed", example["content"])
