"""The devices screen (F6): your own devices and those of the members of the room shown,
with their ed25519 fingerprints and trust; ``v`` verifies the highlighted one with emoji.

The device keys come from ``POST /keys/query`` (client-server API 11.12.3); members not
known yet are queued for the next query of the /sync loop (tui/crypto.py ``maintain``),
and the table refreshes while open. ``v`` sends ``m.key.verification.start`` (11.12.2.2)
and opens the SAS dialog.
"""

from __future__ import annotations

from dataclasses import dataclass

import nio
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from tui.commands import describe
from tui.screens.verify import VerifyScreen
from tui.workers import ui_work

REFRESH_S = 1.0
COLUMNS = ("User", "Device", "Name", "Fingerprint (ed25519)", "Trust")


@dataclass(frozen=True)
class DeviceRow:
    user_id: str
    device_id: str
    name: str
    fingerprint: str
    trust: str  # "this device", "verified", "unverified", "blacklisted"


def fingerprint(key: str) -> str:
    """An ed25519 key in groups of 4 characters, as clients show it."""
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def trust_of(device: nio.crypto.OlmDevice) -> str:
    if device.blacklisted:
        return "blacklisted"
    return "verified" if device.verified else "unverified"


def device_rows(client: nio.AsyncClient, room_id: str | None) -> list[DeviceRow]:
    """This device, our other devices, then the devices of the members of ``room_id``."""
    if client.olm is None:
        return []
    own = client.user_id
    rows = [
        DeviceRow(
            own,
            client.device_id or "",
            "",
            fingerprint(client.olm.account.identity_keys["ed25519"]),
            "this device",
        )
    ]
    room = client.rooms.get(room_id or "")
    users = [own, *sorted(u for u in (room.users if room else {}) if u != own)]
    store = client.device_store
    for user_id in users:
        devices = store.active_user_devices(user_id)
        for device in sorted(devices, key=lambda d: d.id):
            if user_id == own and device.id == client.device_id:
                continue
            name = device.display_name or ""
            rows.append(
                DeviceRow(user_id, device.id, name, fingerprint(device.ed25519), trust_of(device))
            )
    return rows


def unknown_members(client: nio.AsyncClient, room_id: str | None) -> set[str]:
    """Members of ``room_id`` whose devices nio has never fetched."""
    room = client.rooms.get(room_id or "")
    if client.olm is None or room is None:
        return set()
    return {u for u in room.users if u not in client.device_store.users}


class DevicesScreen(ModalScreen[None]):
    BINDINGS = [  # noqa: RUF012
        Binding("v", "verify", "Verify with emoji"),
        Binding("escape,f6", "close", "Close"),
    ]

    def __init__(self, client: nio.AsyncClient, room_id: str | None) -> None:
        super().__init__()
        self.client = client
        self.room_id = room_id
        self.rows: list[DeviceRow] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="devices"):
            yield Static("[b]Devices[/b]  v: verify with emoji   Escape: close")
            table: DataTable[str] = DataTable(id="devices-table", cursor_type="row")
            table.add_columns(*COLUMNS)
            yield table
            if self.client.olm is None:
                yield Static("Encryption is off: no device keys.", markup=False)

    def on_mount(self) -> None:
        if self.client.olm is not None:
            self.client.olm.users_for_key_query.update(unknown_members(self.client, self.room_id))
        self.refresh_rows()
        self.set_interval(REFRESH_S, self.refresh_rows)
        self.query_one(DataTable).focus()

    def refresh_rows(self) -> None:
        rows = device_rows(self.client, self.room_id)
        if rows == self.rows:
            return
        self.rows = rows
        table = self.query_one(DataTable)
        at = table.cursor_row
        table.clear()
        for r in rows:
            table.add_row(r.user_id, r.device_id, r.name, r.fingerprint, r.trust)
        if rows:
            table.move_cursor(row=min(at, len(rows) - 1))

    def highlighted(self) -> DeviceRow | None:
        table = self.query_one(DataTable)
        if not self.rows or not 0 <= table.cursor_row < len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def action_verify(self) -> None:
        row = self.highlighted()
        if row is None:
            return
        if row.trust == "this device":
            self.notify("this is the device you are using", severity="warning")
            return
        self.start(row)

    @ui_work(group="verify-start", exclusive=True)
    async def start(self, row: DeviceRow) -> None:
        device = self.client.device_store[row.user_id].get(row.device_id)
        if device is None:
            return
        response = await self.client.start_key_verification(device)
        if isinstance(response, nio.ErrorResponse):
            self.notify(f"cannot start the verification: {describe(response)}", severity="error")
            return
        transaction_id = response.to_device_message.content["transaction_id"]
        sas = self.client.key_verifications.get(transaction_id)
        if sas is not None:
            self.app.push_screen(VerifyScreen(self.client, sas), lambda _: self.refresh_rows())

    def action_close(self) -> None:
        self.dismiss(None)
