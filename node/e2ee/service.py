"""The E2EE area assembled: keys, cross-signing, send-to-device, key backup, /sync.

Built once in ``Node.start`` (``node.e2ee``). :meth:`E2EEService.devices_deleted` is
the hook AccountService calls after devices are deleted (logout, logout/all, later
DELETE /devices): their keys and queued to-device messages go too. The same sweep runs
at start-up, so a crash between the two writes leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from node.e2ee.backup import BackupService
from node.e2ee.cross_signing import CrossSigningService
from node.e2ee.cross_signing_store import CrossSigningStore
from node.e2ee.keys import DEVICE_LISTS, KeyService
from node.e2ee.store import DeviceKeyStore
from node.e2ee.sync import E2EESyncExtension
from node.e2ee.to_device import TO_DEVICE, ToDeviceService
from node.storage.database import Database
from node.storage.events import EventStore
from node.sync.notifier import Notifier


@dataclass
class E2EEService:
    db: Database
    notifier: Notifier
    store: DeviceKeyStore
    keys: KeyService
    cross_signing: CrossSigningService
    to_device: ToDeviceService
    backup: BackupService

    @classmethod
    async def start(
        cls, db: Database, events: EventStore, notifier: Notifier, server_name: str
    ) -> E2EEService:
        """Build the services, sweep deleted devices, and set the stream positions."""
        store = DeviceKeyStore(db)
        cross = CrossSigningStore(db)
        service = cls(
            db,
            notifier,
            store,
            KeyService(db, store, cross, events, notifier, server_name),
            CrossSigningService(db, store, cross, notifier, server_name),
            ToDeviceService(db, notifier, server_name),
            BackupService(db),
        )
        await service._sweep(None)
        notifier.set_initial(TO_DEVICE, await service.to_device.max_position())
        notifier.set_initial(DEVICE_LISTS, await store.max_position())
        return service

    def sync_extension(self) -> E2EESyncExtension:
        return E2EESyncExtension(self.keys, self.store, self.to_device)

    async def devices_deleted(self, user_id: str) -> None:
        """Delete what belonged to the user's devices that no longer exist."""
        await self._sweep(user_id)

    async def _sweep(self, user_id: str | None) -> None:
        async def txn(conn: aiosqlite.Connection) -> int | None:
            await ToDeviceService.delete_gone_devices_txn(conn, user_id)
            return await self.store.delete_gone_devices_txn(conn, user_id)

        position = await self.db.write(txn)
        if position is not None:
            self.notifier.notify(DEVICE_LISTS, position)
