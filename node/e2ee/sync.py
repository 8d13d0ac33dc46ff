"""The E2EE and send-to-device parts of /sync.

Spec: end_to_end_encryption.md "Extensions to /sync" (``device_lists`` only on an
incremental sync; ``device_one_time_keys_count``; ``device_unused_fallback_key_types``,
required) and send_to_device.md "Server behaviour" / "Extensions to /sync"
(``to_device.events``: pending messages in order of arrival, at most 100, deleted once
the client syncs with the ``next_batch`` of the response that carried them).

When more messages wait than one response carries, ``ctx.upto``'s to_device position
is moved back to the last message sent, so ``next_batch`` acknowledges exactly what
was delivered and the next /sync returns the rest at once.
"""

from __future__ import annotations

from node.e2ee.keys import KeyService
from node.e2ee.store import DeviceKeyStore
from node.e2ee.to_device import MAX_PER_SYNC, TO_DEVICE, ToDeviceService
from node.sync.context import SyncContext


class E2EESyncExtension:
    """A :class:`~node.sync.context.SyncExtension` for to-device messages and E2EE keys."""

    def __init__(
        self,
        keys: KeyService,
        store: DeviceKeyStore,
        to_device: ToDeviceService,
        max_to_device: int = MAX_PER_SYNC,
    ) -> None:
        self.keys = keys
        self.store = store
        self.to_device = to_device
        self.max_to_device = max_to_device

    async def add_to_sync(self, ctx: SyncContext) -> None:
        await self._to_device(ctx)
        if ctx.since is not None:
            changed, left = await self.keys.device_list_delta(ctx.user_id, ctx.since, ctx.upto)
            if changed or left:
                ctx.section("device_lists").update({"changed": changed, "left": left})
        counts, fallback = await self.store.key_counts(ctx.user_id, ctx.device_id)
        ctx.response["device_one_time_keys_count"] = counts
        ctx.response["device_unused_fallback_key_types"] = fallback

    async def _to_device(self, ctx: SyncContext) -> None:
        acked = ctx.since_position(TO_DEVICE) if ctx.since is not None else None
        pending = await self.to_device.deliver(
            ctx.user_id, ctx.device_id, acked, ctx.upto.get(TO_DEVICE), self.max_to_device
        )
        if not pending:
            return
        ctx.section("to_device")["events"] = [p.event for p in pending]
        if len(pending) == self.max_to_device:
            ctx.upto = ctx.upto.with_position(TO_DEVICE, pending[-1].position)
