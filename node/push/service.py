"""PushService: push rules CRUD, pushers, notification counting and gateway delivery.

Spec: content/client-server-api/modules/push.md — "Push Rules: API" (pushrules.yaml),
"Client behaviour" (pusher.yaml), "Listing Notifications" (notifications.yaml),
"Receiving notifications", "Marking notifications as read" and "Server behaviour":
each new event is evaluated for the local users in the room except its sender; an
event whose actions ``notify`` is counted as unread (``highlight`` separately),
listed for GET /notifications, and sent to the user's pushers.

Pushers belong to the device whose access token set them: when the device is deleted
(logout, DELETE /devices, a password change that logs out the others) its pushers go
too, as Synapse does (the spec does not say; a logged-out session must not keep
getting pushes). Notifications are pruned on write: read ones older than
:data:`NOTIFICATION_RETENTION_MS` or beyond the newest :data:`NOTIFICATIONS_KEPT`;
unread ones stay, since the unread counts are counted from them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from node.errors import MatrixError, invalid_param, not_found
from node.events.client_format import to_client_event
from node.events.pdu import MEMBER, POWER_LEVELS, Event, StateKey
from node.push import gateway
from node.push.gateway import GatewayClient
from node.push.rules import (
    DEFAULT_RULE_KEYS,
    Action,
    PushContext,
    PushRule,
    assemble_rules,
    evaluate,
    is_highlight,
    notifies,
    ruleset_json,
    tweaks,
)
from node.push.store import AnchorNotFound, Pusher, PushStore
from node.rooms.auth_common import membership_of, server_of
from node.rooms.auth_power import get_user_power_level
from node.storage.accounts import now_ms
from node.storage.events import EventStore

log = logging.getLogger(__name__)

# pusher.yaml: "MUST be an HTTPS URL with a path of /_matrix/push/v1/notify" (plain
# http is accepted too, for gateways on the same machine or network).
NOTIFY_PATH = "/_matrix/push/v1/notify"
PUSHER_KINDS = ("http",)
NOTIFICATIONS_MAX_LIMIT = 100
# Notifications (GET /notifications) are kept for a bounded time and number, as Synapse
# keeps them for about 30 days; unread ones are never pruned (the counts need them).
NOTIFICATION_RETENTION_MS = 30 * 24 * 3600 * 1000
NOTIFICATIONS_KEPT = 10_000  # per user
# Pruning runs on the first notification written after this many seconds.
PRUNE_INTERVAL_S = 3600.0

RulesChanged = Callable[[str], Awaitable[None]]
# (user ID, actions, highlight): one notification an event makes.
Notification = tuple[str, list[Action], bool]


def check_pusher_url(url: object) -> str:
    """The ``data.url`` of an http pusher, or M_INVALID_PARAM."""
    if not isinstance(url, str):
        raise invalid_param("'data.url' is required for http pushers and must be a string")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise invalid_param(f"'data.url' is not a URL: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_param("'data.url' must be an https (or http) URL")
    if not parts.path.endswith(NOTIFY_PATH):
        raise invalid_param(f"'data.url' must have the path {NOTIFY_PATH}")
    return url


class PushService:
    def __init__(
        self,
        store: PushStore,
        events: EventStore,
        server_name: str,
        *,
        gateway_client: GatewayClient | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.server_name = server_name
        self.gateway = gateway_client or GatewayClient(self._remove_rejected)
        # Notifications already recorded with their event, by event ID (on_event pushes).
        self._recorded: dict[str, list[Notification]] = {}
        # Called with the user ID after the user's rules change (for m.push_rules).
        self.on_rules_changed: list[RulesChanged] = []
        self._rules: dict[str, list[PushRule]] = {}
        self.notification_retention_ms = NOTIFICATION_RETENTION_MS
        self.notifications_kept = NOTIFICATIONS_KEPT
        self.prune_interval_s = PRUNE_INTERVAL_S
        self._next_prune = 0.0  # time.monotonic() of the next pruning; 0: at once

    async def close(self) -> None:
        await self.gateway.close()

    # -- push rules (pushrules.yaml) -------------------------------------------------------

    async def rules(self, user_id: str) -> list[PushRule]:
        """All the user's rules in evaluation order (cached until they change)."""
        rules = self._rules.get(user_id)
        if rules is None:
            rules = assemble_rules(
                user_id,
                await self.store.get_user_rules(user_id),
                await self.store.get_default_changes(user_id),
            )
            self._rules[user_id] = rules
        return rules

    async def ruleset(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """The global ruleset: GET /pushrules/global/, and the m.push_rules content."""
        return ruleset_json(await self.rules(user_id))

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> PushRule:
        for rule in await self.rules(user_id):
            if rule.kind == kind and rule.rule_id == rule_id:
                return rule
        raise not_found("The push rule was not found.")

    async def put_rule(
        self, user_id: str, rule: PushRule, *, before: str | None, after: str | None
    ) -> None:
        """Create or update a user-defined rule (PUT /pushrules/global/{kind}/{ruleId})."""
        if rule.rule_id.startswith("."):
            raise invalid_param("Rule IDs starting with '.' are reserved for server-default rules")
        try:
            await self.store.put_rule(user_id, rule, before=before, after=after)
        except AnchorNotFound as e:
            raise MatrixError(
                400, "M_UNKNOWN", f"before/after rule not found: {e.rule_id}"
            ) from None
        await self._changed(user_id)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        if self._is_default(kind, rule_id):
            raise invalid_param("Server-default rules cannot be deleted; disable them instead")
        if not await self.store.delete_rule(user_id, kind, rule_id):
            raise not_found("The push rule was not found.")
        await self._changed(user_id)

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, enabled: bool) -> None:
        await self._change(user_id, kind, rule_id, enabled=enabled)

    async def set_actions(
        self, user_id: str, kind: str, rule_id: str, actions: list[Action]
    ) -> None:
        await self._change(user_id, kind, rule_id, actions=actions)

    async def _change(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        *,
        enabled: bool | None = None,
        actions: list[Action] | None = None,
    ) -> None:
        if self._is_default(kind, rule_id):
            await self.store.change_default_rule(
                user_id, kind, rule_id, enabled=enabled, actions=actions
            )
        elif not await self.store.set_user_rule(
            user_id, kind, rule_id, enabled=enabled, actions=actions
        ):
            raise not_found("The push rule was not found.")
        await self._changed(user_id)

    @staticmethod
    def _is_default(kind: str, rule_id: str) -> bool:
        return (kind, rule_id) in DEFAULT_RULE_KEYS

    async def _changed(self, user_id: str) -> None:
        self._rules.pop(user_id, None)
        for callback in self.on_rules_changed:
            try:
                await callback(user_id)
            except Exception:
                log.exception("push: on_rules_changed callback failed")

    # -- pushers (pusher.yaml) --------------------------------------------------------------

    async def pushers(self, user_id: str) -> list[Pusher]:
        return await self.store.get_pushers(user_id)

    async def set_pusher(self, pusher: Pusher, *, append: bool) -> None:
        """Create or update a pusher (POST /pushers/set with a ``kind``)."""
        if pusher.kind not in PUSHER_KINDS:
            raise invalid_param(f"Pusher kind {pusher.kind!r} is not supported (only 'http')")
        check_pusher_url(pusher.data.get("url"))
        await self.store.add_pusher(replace(pusher, pushkey_ts=now_ms()), append=append)

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> None:
        """POST /pushers/set with ``kind: null``; deleting a missing pusher is fine."""
        await self.store.delete_pusher(user_id, app_id, pushkey)

    async def devices_deleted(self, user_id: str) -> None:
        """AccountService.on_devices_deleted: remove the pushers of the user's devices
        that no longer exist."""
        removed = await self.store.delete_pushers_of_gone_devices(user_id)
        if removed:
            log.info("push: removed %d pusher(s) of deleted devices", removed)

    async def sweep_gone_devices(self) -> None:
        """At start-up: remove pushers left by devices deleted while the node was not
        there to see it (or by a Croft older than this hook)."""
        removed = await self.store.delete_pushers_of_gone_devices(None)
        if removed:
            log.info("push: removed %d pusher(s) of deleted devices", removed)

    async def _remove_rejected(self, app_id: str, pushkey: str) -> None:
        """push_notifier.yaml: a rejected pushkey's pushers are removed."""
        await self.store.delete_pushers_with_key(app_id, pushkey)

    # -- notifications (notifications.yaml) ---------------------------------------------------

    async def notifications(
        self, user_id: str, *, from_token: int | None, limit: int, only_highlight: bool
    ) -> dict[str, Any]:
        """GET /notifications: newest first; ``next_token`` while there may be more."""
        found = await self.store.get_notifications(
            user_id, before=from_token, limit=limit, only_highlight=only_highlight
        )
        stored = await self.events.get_events(n.event_id for n in found)
        items = []
        for n in found:
            event = stored.get(n.event_id)
            if event is None:
                continue
            items.append(
                {
                    "actions": n.actions,
                    "event": to_client_event(event.event, include_room_id=False),
                    "read": n.read,
                    "room_id": n.room_id,
                    "ts": n.ts,
                }
            )
        body: dict[str, Any] = {"notifications": items}
        if len(found) == limit and found:
            body["next_token"] = str(found[-1].stream_ordering)
        return body

    async def prune_notifications(self, now: int | None = None) -> int:
        """Delete read notifications older than the retention or beyond the newest
        ``notifications_kept`` of a user (never unread ones); return how many."""
        at = now_ms() if now is None else now
        return await self.store.prune_notifications(
            older_than_ts=at - self.notification_retention_ms, keep=self.notifications_kept
        )

    async def _maybe_prune(self) -> None:
        """Prune on write, at most once per ``prune_interval_s``."""
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + self.prune_interval_s
        try:
            pruned = await self.prune_notifications()
        except Exception:
            log.exception("push: pruning notifications failed")
            return
        if pruned:
            log.debug("push: pruned %d old notification(s)", pruned)

    async def unread_counts(self, room_id: str, user_id: str) -> tuple[int, int]:
        """(notification_count, highlight_count) of the user in the room, for /sync's
        ``unread_notifications``."""
        return await self.store.get_unread_counts(user_id, room_id)

    async def mark_read(self, room_id: str, user_id: str, event_id: str) -> None:
        """The user has read up to ``event_id`` ("Marking notifications as read"): count
        again from after it, and update the badge on the user's pushers."""
        if await self.store.mark_read(user_id, room_id, event_id):
            await self._push_badge(user_id)

    # -- the event path ("Server behaviour") -----------------------------------------------

    async def on_event(self, event: Event, room_state: Mapping[StateKey, Event]) -> None:
        """Evaluate a newly persisted event for the local users in the room except its
        sender; count, record and push the notifications. ``room_state`` is the room
        state with the event applied. An event whose notifications were recorded in its
        own write (:meth:`prepare`, :meth:`recorded`) is only pushed."""
        written = self._recorded.pop(event.event_id, None)
        notes = written if written is not None else await self.prepare(event, room_state)
        added = False
        for user_id, actions, highlight in notes:
            if written is None and not await self.store.add_notification(
                user_id, event.event_id, actions, highlight
            ):
                continue
            added = True
            await self._push_event(user_id, event, room_state, actions)
        if added:
            await self._maybe_prune()

    async def prepare(
        self, event: Event, room_state: Mapping[StateKey, Event]
    ) -> list[Notification]:
        """The notifications an event makes (user, actions, highlight), without
        recording them: an event received from another server records them in its own
        write (``add_notification_sync``), then calls :meth:`recorded`."""
        if event.rejected:
            return []
        recipients = self._recipients(event, room_state)
        if not recipients:
            return []
        view = to_client_event(event)
        view.pop("unsigned", None)
        member_count = sum(
            1 for (t, _), e in room_state.items() if t == MEMBER and e.membership == "join"
        )
        power_levels = room_state.get((POWER_LEVELS, ""))
        levels = power_levels.content.get("notifications") if power_levels else None
        sender_level = get_user_power_level(event.sender, room_state)
        notes: list[Notification] = []
        for user_id in recipients:
            ctx = PushContext(
                user_id=user_id,
                member_count=member_count,
                display_name=_display_name(room_state, user_id),
                sender_power_level=sender_level,
                notification_levels=levels if isinstance(levels, Mapping) else {},
            )
            actions = evaluate(await self.rules(user_id), view, ctx)
            if actions is None or not notifies(actions):
                continue
            notes.append((user_id, actions, is_highlight(actions)))
        return notes

    def recorded(self, event_id: str, notes: list[Notification]) -> None:
        """``notes`` were recorded with the event itself; :meth:`on_event` pushes them."""
        if notes:
            self._recorded[event_id] = notes
            while len(self._recorded) > 256:  # on_event normally pops it at once
                self._recorded.pop(next(iter(self._recorded)))

    def _recipients(self, event: Event, room_state: Mapping[StateKey, Event]) -> list[str]:
        """The local users the event is evaluated for: those joined to the room, and
        the target of a membership event (an invite), never the sender."""
        users = {
            key[1]
            for key, ev in room_state.items()
            if key[0] == MEMBER and ev.membership == "join" and self._is_local(key[1])
        }
        if event.type == MEMBER and event.state_key and self._is_local(event.state_key):
            if membership_of(room_state, event.state_key) == "invite":
                users.add(event.state_key)
        users.discard(event.sender)
        return sorted(users)

    def _is_local(self, user_id: str) -> bool:
        return server_of(user_id) == self.server_name

    async def _push_event(
        self,
        user_id: str,
        event: Event,
        room_state: Mapping[StateKey, Event],
        actions: list[Action],
    ) -> None:
        pushers = await self.store.get_pushers(user_id)
        if not pushers:
            return
        unread = await self.store.get_total_unread(user_id)
        for pusher in pushers:
            device = gateway.device_json(
                pusher.app_id, pusher.pushkey, pusher.pushkey_ts, pusher.data, tweaks(actions)
            )
            body = gateway.event_notification(
                event,
                room_state,
                user_id=user_id,
                device=device,
                unread=unread,
                event_id_only=pusher.data.get("format") == "event_id_only",
            )
            self.gateway.post(pusher.data["url"], body, pusher.app_id, pusher.pushkey)

    async def _push_badge(self, user_id: str) -> None:
        pushers = await self.store.get_pushers(user_id)
        if not pushers:
            return
        unread = await self.store.get_total_unread(user_id)
        for pusher in pushers:
            device = gateway.device_json(
                pusher.app_id, pusher.pushkey, pusher.pushkey_ts, pusher.data, {}
            )
            body = gateway.counts_notification(device, unread)
            self.gateway.post(pusher.data["url"], body, pusher.app_id, pusher.pushkey)


def _display_name(state: Mapping[StateKey, Event], user_id: str) -> str | None:
    member = state.get((MEMBER, user_id))
    name = None if member is None else member.content.get("displayname")
    return name if isinstance(name, str) else None
