"""The content of ``m.call.*`` events: builders for what Croft sends, strict parsers.

Spec: content/client-server-api/modules/voip_events.md, "Events" ("Common Fields":
``call_id``, ``party_id``, ``version``), "Party Identifiers", "Grammar for VoIP IDs"
(the Opaque Identifier Grammar of content/appendices.md), "End-of-candidates", and the
event schemas ``m.call.{invite,answer,candidates,select_answer,negotiate,reject,hangup}``;
for the room event around the content, "Call Event Liveness" (its ``age``).

Croft always sends ``version: "1"``. On receipt, any version other than ``0`` is treated
as ``"1"`` (the spec's forward-compatibility rule); version 0 (no ``party_id``, no
``m.call.reject``) is not supported and such events are refused. A parser raises
:class:`MalformedCallEvent` with a one-line reason; callers log it and ignore the event.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from typing import Any, Literal

from node.ids import InvalidId, UserID

VERSION = "1"

INVITE = "m.call.invite"
CANDIDATES = "m.call.candidates"
ANSWER = "m.call.answer"
SELECT_ANSWER = "m.call.select_answer"
NEGOTIATE = "m.call.negotiate"
REJECT = "m.call.reject"
HANGUP = "m.call.hangup"
CALL_EVENT_TYPES = frozenset({INVITE, CANDIDATES, ANSWER, SELECT_ANSWER, NEGOTIATE, REJECT, HANGUP})

# m.call.hangup "reason" values (the schema's enum, Matrix 1.7+).
HANGUP_REASONS = frozenset(
    {
        "ice_timeout",
        "ice_failed",
        "invite_timeout",
        "user_hangup",
        "user_media_failed",
        "user_busy",
        "unknown_error",
    }
)

# "Call Event Liveness": 90 s is the minimal recommended lifetime of an invite.
DEFAULT_INVITE_LIFETIME_MS = 90_000
DEFAULT_NEGOTIATE_LIFETIME_MS = 10_000
# Croft's bound on a received lifetime: an invite that may ring for hours is refused.
MAX_LIFETIME_MS = 3_600_000
# A room event is at most 64 KiB, so a longer SDP or candidate list cannot be genuine.
MAX_SDP_CHARS = 65_536
MAX_CANDIDATES = 500

# "Grammar for VoIP IDs": the Opaque Identifier Grammar of the appendices.
_OPAQUE_ID_RE = re.compile(r"[0-9A-Za-z._~-]{1,255}")
_ID_ALPHABET = string.ascii_letters + string.digits


class MalformedCallEvent(ValueError):
    """Received ``m.call.*`` content breaks the spec; the message says how."""


def new_id(length: int = 16) -> str:
    """A fresh random ``call_id`` or ``party_id`` ("Party Identifiers": 8+ alphanumerics)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


@dataclass(frozen=True, slots=True)
class Candidate:
    """One ICE candidate ("m.call.candidates"); ``candidate == ""`` is end-of-candidates."""

    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None

    @property
    def is_end(self) -> bool:
        return self.candidate == ""

    def to_content(self) -> dict[str, Any]:
        out: dict[str, Any] = {"candidate": self.candidate}
        if self.sdp_mid is not None:
            out["sdpMid"] = self.sdp_mid
        if self.sdp_mline_index is not None:
            out["sdpMLineIndex"] = self.sdp_mline_index
        return out


@dataclass(frozen=True, slots=True)
class Description:
    """An ``RTCSessionDescriptionInit``: the ``offer``, ``answer`` or ``description`` field."""

    type: Literal["offer", "answer"]
    sdp: str

    def to_content(self) -> dict[str, str]:
        return {"type": self.type, "sdp": self.sdp}


# -- builders ---------------------------------------------------------------------------


def _common(call_id: str, party_id: str) -> dict[str, Any]:
    """The spec's "Common Fields" of every VoIP event."""
    return {"call_id": call_id, "party_id": party_id, "version": VERSION}


def invite_content(
    call_id: str, party_id: str, offer_sdp: str, lifetime_ms: int, invitee: str | None = None
) -> dict[str, Any]:
    """``m.call.invite``: the offer, how long it is valid, and whom it is for ("Invitees")."""
    if not 0 < lifetime_ms <= MAX_LIFETIME_MS:
        raise ValueError(f"lifetime {lifetime_ms} ms is out of range")
    content = _common(call_id, party_id)
    content["offer"] = Description("offer", offer_sdp).to_content()
    content["lifetime"] = lifetime_ms
    if invitee is not None:
        content["invitee"] = invitee
    return content


def answer_content(call_id: str, party_id: str, answer_sdp: str) -> dict[str, Any]:
    """``m.call.answer``: the callee's SDP answer."""
    content = _common(call_id, party_id)
    content["answer"] = Description("answer", answer_sdp).to_content()
    return content


def candidates_content(
    call_id: str, party_id: str, candidates: list[Candidate], done: bool = False
) -> dict[str, Any]:
    """``m.call.candidates``; ``done`` appends the end-of-candidates marker (the empty one).

    The marker names a media line although the spec does not ask it to: clients with a
    stricter schema (matrix-nio requires ``sdpMid`` and ``sdpMLineIndex`` on every
    candidate) would otherwise drop the whole event, real candidates included."""
    real = [c for c in candidates if not c.is_end]
    items = [c.to_content() for c in real]
    if done:
        first = real[0] if real else Candidate("", "0", 0)
        end = Candidate("", first.sdp_mid or "0", first.sdp_mline_index or 0)
        items.append(end.to_content())
    content = _common(call_id, party_id)
    content["candidates"] = items
    return content


def select_answer_content(call_id: str, party_id: str, selected_party_id: str) -> dict[str, Any]:
    """``m.call.select_answer``: the caller picks the answer (or reject) of one party."""
    content = _common(call_id, party_id)
    content["selected_party_id"] = selected_party_id
    return content


def negotiate_content(
    call_id: str, party_id: str, description: Description, lifetime_ms: int
) -> dict[str, Any]:
    """``m.call.negotiate``: a new offer, or the answer to one, during the call."""
    content = _common(call_id, party_id)
    content["description"] = description.to_content()
    content["lifetime"] = lifetime_ms
    return content


def reject_content(call_id: str, party_id: str) -> dict[str, Any]:
    """``m.call.reject``: the callee declines, on all its user's devices."""
    return _common(call_id, party_id)


def hangup_content(call_id: str, party_id: str, reason: str = "user_hangup") -> dict[str, Any]:
    """``m.call.hangup`` with one of the spec's reasons."""
    if reason not in HANGUP_REASONS:
        raise ValueError(f"{reason!r} is not a hangup reason of the spec")
    content = _common(call_id, party_id)
    content["reason"] = reason
    return content


# -- parsed content ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallContent:
    """The common fields of every received VoIP event."""

    call_id: str
    party_id: str
    version: str | int


@dataclass(frozen=True, slots=True)
class Invite(CallContent):
    offer: Description
    lifetime: int
    invitee: str | None


@dataclass(frozen=True, slots=True)
class Answer(CallContent):
    answer: Description


@dataclass(frozen=True, slots=True)
class Candidates(CallContent):
    candidates: tuple[Candidate, ...]

    @property
    def done(self) -> bool:
        """An end-of-candidates marker was among them."""
        return any(c.is_end for c in self.candidates)


@dataclass(frozen=True, slots=True)
class SelectAnswer(CallContent):
    selected_party_id: str


@dataclass(frozen=True, slots=True)
class Negotiate(CallContent):
    description: Description
    lifetime: int


@dataclass(frozen=True, slots=True)
class Reject(CallContent):
    pass


@dataclass(frozen=True, slots=True)
class Hangup(CallContent):
    reason: str


# -- parsers ----------------------------------------------------------------------------


def _opaque_id(content: dict[str, Any], key: str) -> str:
    value = content.get(key)
    if not isinstance(value, str) or not _OPAQUE_ID_RE.fullmatch(value):
        raise MalformedCallEvent(f"{key} must be an opaque identifier, got {value!r:.80}")
    return value


def _version(content: dict[str, Any]) -> str | int:
    value = content.get("version")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedCallEvent(f"version must be a string (or integer 0), got {value!r:.80}")
    if value == 0:
        raise MalformedCallEvent("version 0 calls are not supported")
    return value


def _lifetime(content: dict[str, Any]) -> int:
    value = content.get("lifetime")
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedCallEvent(f"lifetime must be an integer, got {value!r:.80}")
    if not 0 < value <= MAX_LIFETIME_MS:
        raise MalformedCallEvent(f"lifetime {value} ms is out of range 1..{MAX_LIFETIME_MS}")
    return value


def _sdp(obj: Any, key: str) -> str:
    if not isinstance(obj, dict):
        raise MalformedCallEvent(f"{key} must be an object")
    sdp = obj.get("sdp")
    if not isinstance(sdp, str) or not sdp or len(sdp) > MAX_SDP_CHARS:
        raise MalformedCallEvent(f"{key}.sdp must be a non-empty string")
    return sdp


def _candidate(item: Any) -> Candidate:
    if not isinstance(item, dict):
        raise MalformedCallEvent("a candidate must be an object")
    text, mid, index = item.get("candidate"), item.get("sdpMid"), item.get("sdpMLineIndex")
    if not isinstance(text, str) or len(text) > MAX_SDP_CHARS:
        raise MalformedCallEvent("candidate.candidate must be a string")
    # Browsers serialise an absent sdpMid / sdpMLineIndex as null: treat null as absent.
    if mid is not None and not isinstance(mid, str):
        raise MalformedCallEvent("candidate.sdpMid must be a string")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise MalformedCallEvent("candidate.sdpMLineIndex must be a non-negative integer")
    if text and mid is None and index is None:
        raise MalformedCallEvent("a candidate needs sdpMid or sdpMLineIndex")
    return Candidate(text, mid, index)


def _invite(common: dict[str, Any], content: dict[str, Any]) -> Invite:
    invitee = content.get("invitee")
    if invitee is not None:
        try:
            UserID.parse(invitee)
        except InvalidId as e:
            raise MalformedCallEvent(f"invitee: {e}") from None
    offer = Description("offer", _sdp(content.get("offer"), "offer"))
    return Invite(**common, offer=offer, lifetime=_lifetime(content), invitee=invitee)


def _answer(common: dict[str, Any], content: dict[str, Any]) -> Answer:
    return Answer(**common, answer=Description("answer", _sdp(content.get("answer"), "answer")))


def _candidates(common: dict[str, Any], content: dict[str, Any]) -> Candidates:
    items = content.get("candidates")
    if not isinstance(items, list) or not items or len(items) > MAX_CANDIDATES:
        raise MalformedCallEvent(f"candidates must be a list of 1..{MAX_CANDIDATES} objects")
    return Candidates(**common, candidates=tuple(_candidate(i) for i in items))


def _select_answer(common: dict[str, Any], content: dict[str, Any]) -> SelectAnswer:
    return SelectAnswer(**common, selected_party_id=_opaque_id(content, "selected_party_id"))


def _negotiate(common: dict[str, Any], content: dict[str, Any]) -> Negotiate:
    sdp = _sdp(content.get("description"), "description")
    kind = content["description"].get("type")
    if kind not in ("offer", "answer"):
        raise MalformedCallEvent(f"description.type must be offer or answer, got {kind!r:.40}")
    return Negotiate(**common, description=Description(kind, sdp), lifetime=_lifetime(content))


def _reject(common: dict[str, Any], content: dict[str, Any]) -> Reject:
    return Reject(**common)


def _hangup(common: dict[str, Any], content: dict[str, Any]) -> Hangup:
    # A missing reason means user_hangup; an unknown string still ends the call.
    reason = content.get("reason", "user_hangup")
    if not isinstance(reason, str) or not reason or len(reason) > 255:
        raise MalformedCallEvent(f"reason must be a string, got {reason!r:.80}")
    return Hangup(**common, reason=reason)


_PARSERS = {
    INVITE: _invite,
    ANSWER: _answer,
    CANDIDATES: _candidates,
    SELECT_ANSWER: _select_answer,
    NEGOTIATE: _negotiate,
    REJECT: _reject,
    HANGUP: _hangup,
}


def parse_content(event_type: str, content: Any) -> CallContent:
    """Check the content of a received ``m.call.*`` event; raise MalformedCallEvent if bad."""
    parser = _PARSERS.get(event_type)
    if parser is None:
        raise MalformedCallEvent(f"{event_type!r:.80} is not a call event Croft handles")
    if not isinstance(content, dict):
        raise MalformedCallEvent("content must be an object")
    common = {
        "call_id": _opaque_id(content, "call_id"),
        "party_id": _opaque_id(content, "party_id"),
        "version": _version(content),
    }
    return parser(common, content)


# -- received room events ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallEvent:
    """A received ``m.call.*`` room event, checked."""

    type: str
    sender: str
    content: CallContent
    age_ms: int


def parse_event(event: Any, now_ms: int) -> CallEvent:
    """Check a room event (client format); its age is ``unsigned.age`` ("Call Event
    Liveness"), else the time since ``origin_server_ts``. Raises MalformedCallEvent."""
    if not isinstance(event, dict):
        raise MalformedCallEvent("event must be an object")
    event_type, sender = event.get("type"), event.get("sender")
    if not isinstance(event_type, str) or not isinstance(sender, str) or not sender:
        raise MalformedCallEvent("event needs a type and a sender")
    content = parse_content(event_type, event.get("content"))
    unsigned = event.get("unsigned")
    age = unsigned.get("age") if isinstance(unsigned, dict) else None
    ts = event.get("origin_server_ts")
    if isinstance(age, int) and not isinstance(age, bool):
        age_ms = max(0, age)
    elif isinstance(ts, int) and not isinstance(ts, bool):
        age_ms = max(0, now_ms - ts)
    else:
        age_ms = 0
    return CallEvent(event_type, sender, content, age_ms)


def call_id_of(event: Any) -> str:
    """The call_id of a raw event, for logging one that failed to parse ("" if none)."""
    content = event.get("content") if isinstance(event, dict) else None
    call_id = content.get("call_id") if isinstance(content, dict) else None
    return call_id if isinstance(call_id, str) else ""
