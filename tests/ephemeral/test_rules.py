"""The pure parts, from tables: presence transitions, which thread a receipt fits, and
how receipts are batched for /sync."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from node.ephemeral import presence as p
from node.ephemeral.presence import PresenceService, PresenceState
from node.ephemeral.receipt_store import UNTHREADED, Receipt
from node.ephemeral.receipts import event_fits_thread, relation_of
from node.ephemeral.sync import receipt_events
from node.sync.notifier import Notifier
from node.sync.service import MAX_TIMEOUT_MS

ME = "@me:example.org"
THEM = "@them:example.org"
T0 = 1_000_000_000

# -- presence ------------------------------------------------------------------------------

ONLINE_NOW = PresenceState(p.ONLINE, None, T0, True, T0 + p.SYNC_GRACE_MS)
SYNCING = replace(ONLINE_NOW, connected_until=T0 + 10**9)  # a client keeps syncing


@pytest.mark.parametrize(
    ("state", "set_presence", "expected"),
    [
        # offline -> online on a sync; connected until the wait ends plus the grace
        (
            PresenceState(),
            p.ONLINE,
            PresenceState(p.ONLINE, None, T0, True, T0 + 1000 + p.SYNC_GRACE_MS),
        ),
        # set_presence=offline changes nothing, not even the connection
        (PresenceState(), p.OFFLINE, PresenceState()),
        # a sync is not activity: an idle user stays unavailable
        (
            PresenceState(p.UNAVAILABLE, "away", 5, False, 0),
            p.ONLINE,
            PresenceState(p.UNAVAILABLE, "away", 5, False, T0 + 1000 + p.SYNC_GRACE_MS),
        ),
        # set_presence=unavailable marks the user idle
        (
            ONLINE_NOW,
            p.UNAVAILABLE,
            replace(
                ONLINE_NOW,
                presence=p.UNAVAILABLE,
                currently_active=False,
                connected_until=T0 + 1000 + p.SYNC_GRACE_MS,
            ),
        ),
    ],
)
def test_on_sync(state: PresenceState, set_presence: str, expected: PresenceState) -> None:
    assert p.on_sync(state, set_presence, T0, 1000) == expected


def test_on_sync_bounds_the_wait() -> None:
    state = p.on_sync(PresenceState(), p.ONLINE, T0, 10**12)
    assert state.connected_until == T0 + MAX_TIMEOUT_MS + p.SYNC_GRACE_MS


def test_on_put_and_activity() -> None:
    away = p.on_put(ONLINE_NOW, p.UNAVAILABLE, "lunch", T0 + 10)
    assert (away.presence, away.status_msg, away.currently_active) == (
        p.UNAVAILABLE,
        "lunch",
        False,
    )
    assert away.last_active_ts == T0  # only "online" is activity
    back = p.on_activity(away, T0 + 20)
    assert back == replace(
        away,
        presence=p.ONLINE,
        last_active_ts=T0 + 20,
        currently_active=True,
        connected_until=T0 + 20 + p.SYNC_GRACE_MS,
    )
    online = p.on_put(PresenceState(), p.ONLINE, None, T0)
    assert online == ONLINE_NOW


@pytest.mark.parametrize(
    ("state", "now", "presence", "active"),
    [
        (ONLINE_NOW, T0 + 1, p.ONLINE, True),
        (SYNCING, T0 + p.ACTIVE_MS, p.ONLINE, False),  # no longer currently active
        (SYNCING, T0 + p.IDLE_MS, p.UNAVAILABLE, False),
        (ONLINE_NOW, T0 + p.SYNC_GRACE_MS, p.OFFLINE, False),  # no client syncing
        (PresenceState(p.UNAVAILABLE, None, T0, False, T0 + 5), T0 + 5, p.OFFLINE, False),
        (PresenceState(), T0 + 10**9, p.OFFLINE, False),
    ],
)
def test_on_timer(state: PresenceState, now: int, presence: str, active: bool) -> None:
    new = p.on_timer(state, now)
    assert (new.presence, new.currently_active) == (presence, active)


def test_next_deadline_is_the_first_due_transition() -> None:
    assert p.next_deadline(PresenceState()) is None
    assert p.next_deadline(ONLINE_NOW) == T0 + min(p.ACTIVE_MS, p.SYNC_GRACE_MS)
    assert p.next_deadline(SYNCING) == T0 + p.ACTIVE_MS
    assert p.next_deadline(replace(SYNCING, currently_active=False)) == T0 + p.IDLE_MS


def test_presence_content_computes_last_active_ago() -> None:
    assert p.presence_content(PresenceState(), T0) == {"presence": "offline"}
    assert p.presence_content(replace(ONLINE_NOW, status_msg="hi"), T0 + 1234) == {
        "presence": "online",
        "last_active_ago": 1234,
        "currently_active": True,
        "status_msg": "hi",
    }


async def test_service_timers_move_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """With short timeouts: a user who stops syncing goes offline, and /sync hears."""
    monkeypatch.setattr(p, "SYNC_GRACE_MS", 100)
    notifier = Notifier()
    service = PresenceService(True, notifier, None, "example.org")  # type: ignore[arg-type]
    try:
        service.syncing(ME, p.ONLINE, 0)
        start = notifier.current_token()
        assert service.state(ME).presence == p.ONLINE
        changed = await notifier.wait_for_change(start, 5)
        assert changed.get(p.STREAM) > start.get(p.STREAM)
        assert service.state(ME).presence == p.OFFLINE
        assert service.changed_users(start.get(p.STREAM), changed.get(p.STREAM)) == [ME]
        # Remote users get no timers: their server sends their changes.
        service.activity("@remote:elsewhere.example")
        assert service.state("@remote:elsewhere.example") == PresenceState()
    finally:
        service.close()


async def test_disabled_service_changes_nothing() -> None:
    notifier = Notifier()
    service = PresenceService(False, notifier, None, "example.org")  # type: ignore[arg-type]
    before = notifier.current_token()
    service.syncing(ME, p.ONLINE, 0)
    service.set_presence(ME, p.ONLINE, "hi")
    service.activity(ME)
    await asyncio.sleep(0)
    assert service.state(ME) == PresenceState()
    assert notifier.current_token() == before


# -- threads (receipts.md "Threaded read receipts") ---------------------------------------

# Synapse's example: A <-[m.thread]- B <-[m.annotation]- C, and
# A <-[m.reference]- D <-[m.annotation]- E; F..I chain annotations beyond 3 hops.
RELATIONS: dict[str, tuple[str, str]] = {
    "$B": ("m.thread", "$A"),
    "$C": ("m.annotation", "$B"),
    "$D": ("m.reference", "$A"),
    "$E": ("m.annotation", "$D"),
    "$F": ("m.annotation", "$G"),
    "$G": ("m.annotation", "$H"),
    "$H": ("m.annotation", "$B"),
    "$I": ("m.annotation", "$F"),
}


async def _relation(event_id: str) -> tuple[str, str] | None:
    return RELATIONS.get(event_id)


@pytest.mark.parametrize(
    ("event_id", "thread_id", "fits"),
    [
        ("$A", "main", True),  # a thread root is on the main timeline...
        ("$A", "$A", True),  # ...and takes receipts for its thread
        ("$B", "$A", True),
        ("$B", "main", False),
        ("$C", "$A", True),  # related to an event in the thread
        ("$C", "main", False),
        ("$D", "main", True),  # related to the root by a non-thread relation
        ("$D", "$A", True),
        ("$E", "main", True),
        ("$E", "$A", True),
        ("$E", "$Z", False),
        ("$X", "main", True),  # no relations at all
        ("$X", "$A", False),
        ("$F", "$A", True),  # F -> G -> H -> B: the 3rd hop reaches the thread
        ("$I", "$A", False),  # I -> F -> G -> H: more than 3 hops, main timeline
        ("$I", "main", True),
    ],
)
async def test_event_fits_thread(event_id: str, thread_id: str, fits: bool) -> None:
    assert await event_fits_thread(event_id, thread_id, _relation) is fits


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"m.relates_to": {"rel_type": "m.thread", "event_id": "$A"}}, ("m.thread", "$A")),
        ({"m.relates_to": {"m.in_reply_to": {"event_id": "$A"}}}, None),
        ({"m.relates_to": "nope"}, None),
        ({"m.relates_to": {"rel_type": 1, "event_id": "$A"}}, None),
        ({}, None),
    ],
)
def test_relation_of(content: dict[str, object], expected: tuple[str, str] | None) -> None:
    assert relation_of(content) == expected


# -- batching receipts --------------------------------------------------------------------


def test_receipt_events_batch_per_room_and_thread_and_hide_private() -> None:
    found = [
        Receipt("!r:x", ME, "m.read", UNTHREADED, "$1", 10, 1),
        Receipt("!r:x", THEM, "m.read", UNTHREADED, "$1", 11, 2),
        Receipt("!r:x", ME, "m.read", "main", "$1", 12, 3),
        Receipt("!r:x", THEM, "m.read.private", UNTHREADED, "$2", 13, 4),
        Receipt("!r:x", ME, "m.read.private", UNTHREADED, "$2", 14, 5),
        Receipt("!s:x", THEM, "m.read", "$root", "$3", 15, 6),
    ]
    assert receipt_events(found, ME) == {
        "!r:x": [
            {
                "type": "m.receipt",
                "content": {
                    "$1": {"m.read": {ME: {"ts": 10}, THEM: {"ts": 11}}},
                    "$2": {"m.read.private": {ME: {"ts": 14}}},
                },
            },
            {
                "type": "m.receipt",
                "content": {"$1": {"m.read": {ME: {"ts": 12, "thread_id": "main"}}}},
            },
        ],
        "!s:x": [
            {
                "type": "m.receipt",
                "content": {"$3": {"m.read": {THEM: {"ts": 15, "thread_id": "$root"}}}},
            }
        ],
    }
