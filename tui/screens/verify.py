"""The SAS dialog: interactive device verification with emoji.

Client-server API 11.12.2.2 (short authentication strings, ``m.key.verification.*``
to-device events): the device that did not start the verification accepts it, both
exchange ephemeral keys, both users compare the 7 emoji derived from the shared secret,
and each side sends its MAC when its user says they match. nio's ``Sas`` object runs the
protocol; the /sync loop delivers the other side's events to it, and this dialog watches
its state.

y / Enter: "they match" (``m.key.verification.mac``); n / Escape: "they don't"
(``m.key.verification.cancel`` with ``m.mismatched_sas``, or ``m.user`` before the emoji
are shown), which closes the dialog. Once done or cancelled by the other side, either
key closes it. Dismisses with True
(verified), False (cancelled) or None (closed while still running).
"""

from __future__ import annotations

from typing import Any

import nio
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.commands import describe
from tui.workers import ui_work

POLL_S = 0.1  # nio updates the Sas object as /sync brings the other side's events


def emoji_cells(emoji: list[tuple[str, str]]) -> list[str]:
    """One cell per emoji: the symbol over its name."""
    return [f"{symbol}\n{name}" for symbol, name in emoji]


class VerifyScreen(ModalScreen[bool | None]):
    BINDINGS = [  # noqa: RUF012
        Binding("y,enter", "match", "They match"),
        Binding("n,escape", "mismatch", "They don't"),
    ]

    def __init__(self, client: nio.AsyncClient, sas: Any) -> None:
        super().__init__()
        self.client = client
        self.sas = sas
        self.emoji: list[tuple[str, str]] = []  # shown once the keys are exchanged
        self.confirmed = False
        self.status = ""

    @property
    def transaction_id(self) -> str:
        return str(self.sas.transaction_id)

    def compose(self) -> ComposeResult:
        device = self.sas.other_olm_device
        name = f" ({device.display_name})" if device.display_name else ""
        with Vertical(id="verify"):
            yield Static(
                f"Verify {device.user_id}, device {device.id}{name}",
                id="verify-title",
                markup=False,
            )
            yield Horizontal(id="verify-emoji")
            yield Static("", id="verify-status", markup=False)
            yield Static("", id="verify-keys", markup=False)

    def on_mount(self) -> None:
        if not self.sas.we_started_it and self.sas.state == nio.crypto.SasState.started:
            self.accept()
        self.refresh_state()
        self.set_interval(POLL_S, self.refresh_state)

    @property
    def finished(self) -> bool:
        return bool(self.sas.verified or self.sas.canceled)

    def refresh_state(self) -> None:
        sas = self.sas
        if not self.emoji and sas.established_sas is not None and not sas.canceled:
            self.emoji = sas.get_emoji()
            row = self.query_one("#verify-emoji", Horizontal)
            row.mount_all(Static(c, classes="emoji", markup=False) for c in emoji_cells(self.emoji))
        if sas.verified:
            status, keys = "✓ verified", "Enter or Escape: close"
        elif sas.canceled:
            reason = sas.cancel_reason or sas.cancel_code or "cancelled"
            status, keys = f"✗ cancelled: {reason}", "Enter or Escape: close"
        elif self.confirmed:
            status, keys = "waiting for the other device to confirm…", "n or Escape: cancel"
        elif self.emoji:
            status = "Do these emoji show on the other device, in this order?"
            keys = "y or Enter: they match    n or Escape: they don't"
        else:
            status, keys = "waiting for the other device…", "Escape: cancel"
        if self.status:
            status = f"{status}\n{self.status}"
        self.query_one("#verify-status", Static).update(status)
        self.query_one("#verify-keys", Static).update(keys)

    def action_match(self) -> None:
        if self.finished:
            self.dismiss(bool(self.sas.verified))
        elif self.emoji and not self.confirmed:
            self.confirmed = True
            self.confirm()

    def action_mismatch(self) -> None:
        if self.finished:
            self.dismiss(bool(self.sas.verified))
            return
        self.cancel(mismatch=bool(self.emoji))

    @ui_work(group="verify")
    async def accept(self) -> None:
        await self.send(self.client.accept_key_verification, self.transaction_id)

    @ui_work(group="verify")
    async def confirm(self) -> None:
        await self.send(self.client.confirm_short_auth_string, self.transaction_id)

    @ui_work(group="verify")
    async def cancel(self, mismatch: bool) -> None:
        """Cancel with ``m.mismatched_sas`` (the emoji differ) or ``m.user``."""
        if mismatch:
            self.sas.reject_sas()
        else:
            self.sas.cancel()
        response = await self.client.to_device(self.sas.get_cancellation())
        if isinstance(response, nio.ErrorResponse):
            self.notify(f"verification: not cancelled: {describe(response)}", severity="error")
        else:
            self.notify("verification cancelled")
        self.dismiss(False)

    async def send(self, step: Any, transaction_id: str) -> None:
        try:
            response = await step(transaction_id)
        except nio.LocalProtocolError as e:  # the verification ended meanwhile
            self.status = str(e)
        else:
            self.show_refusal(response)
        self.refresh_state()

    def show_refusal(self, response: object) -> None:
        if isinstance(response, nio.ErrorResponse):
            self.status = f"not sent: {describe(response)}"
