"""Delivering notifications to HTTP push gateways, off the send path.

Spec: content/push-gateway-api.md "Homeserver behaviour" (on an HTTP error, retry for
a reasonable time with exponential backoff) and api/push-gateway/push_notifier.yaml
(POST /_matrix/push/v1/notify; the gateway answers with the ``rejected`` pushkeys,
whose pushers the homeserver must remove).

Each notification is one background task: :meth:`GatewayClient.post` only queues it,
so a slow or dead gateway never holds up an event. Tasks are bounded (a cap on pending
deliveries and on concurrent requests) and cancelled on :meth:`GatewayClient.close`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from node.events.pdu import MEMBER, Event, StateKey
from node.federation.tls import client_ssl_context

log = logging.getLogger(__name__)

ENCRYPTED = "m.room.encrypted"
# Called with (app_id, pushkey) when a gateway rejects a pushkey.
RejectedCallback = Callable[[str, str], Awaitable[None]]


class GatewayClient:
    """POSTs notifications to push gateways with bounded retries."""

    def __init__(
        self,
        on_rejected: RejectedCallback,
        *,
        attempts: int = 8,
        first_delay: float = 2.0,
        max_delay: float = 300.0,
        timeout: float = 20.0,
        concurrency: int = 4,
        max_pending: int = 500,
    ) -> None:
        self.on_rejected = on_rejected
        self.attempts = attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self.max_pending = max_pending
        self._sem = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def post(self, url: str, body: dict[str, Any], app_id: str, pushkey: str) -> bool:
        """Queue one notification for delivery; False if it was dropped (closed, or
        too many deliveries pending)."""
        if self._closed:
            return False
        if len(self._tasks) >= self.max_pending:
            log.warning(
                "push: %d deliveries pending, dropping one for %s", len(self._tasks), _host(url)
            )
            return False
        task = asyncio.get_running_loop().create_task(
            self._deliver(url, body, app_id, pushkey), name="push-delivery"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def idle(self) -> None:
        """Wait until every queued delivery has finished (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver(self, url: str, body: dict[str, Any], app_id: str, pushkey: str) -> None:
        delay = self.first_delay
        for attempt in range(1, self.attempts + 1):
            async with self._sem:
                rejected = await self._attempt(url, body)
            if rejected is not None:
                if pushkey in rejected:
                    log.info(
                        "push: gateway %s rejected pushkey of %s; removing pusher",
                        _host(url),
                        app_id,
                    )
                    try:
                        await self.on_rejected(app_id, pushkey)
                    except Exception:
                        log.exception("push: removing a rejected pusher failed")
                return
            if attempt == self.attempts:
                log.warning("push: giving up on %s after %d attempts", _host(url), attempt)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)

    async def _attempt(self, url: str, body: dict[str, Any]) -> list[str] | None:
        """One POST: the rejected pushkeys on success, None on a failure to retry."""
        if self._session is None:
            context = await asyncio.to_thread(client_ssl_context)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                trust_env=False,
            )
        try:
            async with self._session.post(url, json=body, allow_redirects=False) as resp:
                if resp.status // 100 != 2:
                    log.info("push: gateway %s answered HTTP %d", _host(url), resp.status)
                    return None
                try:
                    answer = await resp.json(content_type=None)
                except ValueError:
                    answer = None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            log.info("push: gateway %s failed: %s", _host(url), e or type(e).__name__)
            return None
        rejected = answer.get("rejected") if isinstance(answer, dict) else None
        if not isinstance(rejected, list):
            return []
        return [r for r in rejected if isinstance(r, str)]


def _host(url: str) -> str:
    """What logs show of a gateway URL: its host (the rest may carry secrets)."""
    try:
        return urlsplit(url).netloc or "?"
    except ValueError:
        return "?"


# -- the /notify request body (push_notifier.yaml) --------------------------------------------


def device_json(
    app_id: str,
    pushkey: str,
    pushkey_ts_ms: int,
    data: Mapping[str, Any],
    tweaks: Mapping[str, Any],
) -> dict[str, Any]:
    """One entry of ``devices``: the pusher's ``data`` without ``url`` (pusher.yaml:
    "Servers MUST forward the entire content ... excluding url"), ``pushkey_ts`` in
    seconds."""
    return {
        "app_id": app_id,
        "pushkey": pushkey,
        "pushkey_ts": pushkey_ts_ms // 1000,
        "data": {k: v for k, v in data.items() if k != "url"},
        "tweaks": dict(tweaks),
    }


def counts_json(unread: int) -> dict[str, int]:
    """``counts``: "Counts whose value is zero should be omitted"."""
    return {"unread": unread} if unread else {}


def event_notification(
    event: Event,
    state: Mapping[StateKey, Event],
    *,
    user_id: str,
    device: dict[str, Any],
    unread: int,
    event_id_only: bool,
) -> dict[str, Any]:
    """The body that notifies a gateway of ``event``. With the ``event_id_only``
    format only ``event_id``, ``room_id``, ``counts`` and ``devices`` are sent."""
    tweaks = device.get("tweaks", {})
    high = "sound" in tweaks or tweaks.get("highlight") is True or event.type == ENCRYPTED
    notification: dict[str, Any] = {
        "event_id": event.event_id,
        "room_id": event.room_id,
        "counts": counts_json(unread),
        "devices": [device],
        "prio": "high" if high else "low",
    }
    if event_id_only:
        return {"notification": notification}
    notification["type"] = event.type
    notification["sender"] = event.sender
    if event.content:
        notification["content"] = dict(event.content)
    sender_name = _state_str(state, MEMBER, event.sender, "displayname")
    if sender_name:
        notification["sender_display_name"] = sender_name
    room_name = _state_str(state, "m.room.name", "", "name")
    if room_name:
        notification["room_name"] = room_name
    alias = _state_str(state, "m.room.canonical_alias", "", "alias")
    if alias:
        notification["room_alias"] = alias
    if event.type == MEMBER:
        notification["user_is_target"] = event.state_key == user_id
    return {"notification": notification}


def counts_notification(device: dict[str, Any], unread: int) -> dict[str, Any]:
    """A body that only updates the badge count (no event)."""
    return {"notification": {"counts": counts_json(unread), "devices": [device]}}


def _state_str(state: Mapping[StateKey, Event], type_: str, key: str, field: str) -> str | None:
    event = state.get((type_, key))
    value = None if event is None else event.content.get(field)
    return value if isinstance(value, str) else None
