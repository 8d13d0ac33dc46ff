"""Device verification with emoji (SAS, ``m.key.verification.*`` to-device events)
between the TUI (owner of node a) and a real matrix-nio client (owner of node b):

- the nio client starts: the TUI opens the dialog by itself and accepts, both show the
  same 7 emoji, both confirm, and each side marks the other's device verified;
- the TUI starts from the devices screen (F6, ``v``): the same, the other way;
- "they don't match" (n) cancels with ``m.mismatched_sas``: nobody is verified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nio
from textual.widgets import Static

from node.datadir import TUI_DEVICE_ID
from tests.tui.conftest import until
from tests.tui.test_encryption import Peer, encrypted_scene
from tui.app import CroftApp
from tui.screens.chat import ChatScreen
from tui.screens.devices import DevicesScreen, fingerprint
from tui.screens.verify import VerifyScreen, emoji_cells


def dialog(app: CroftApp) -> VerifyScreen | None:
    screen = app.screen
    return screen if isinstance(screen, VerifyScreen) else None


def dialog_text(app: CroftApp) -> str:
    screen = dialog(app)
    if screen is None:
        return ""
    cells = screen.query(".emoji, #verify-status").results(Static)
    return "\n".join(str(w.content) for w in cells)


def tui_device_at(peer: Peer, user_id: str) -> nio.crypto.OlmDevice:
    return peer.client.device_store[user_id][TUI_DEVICE_ID]


def peer_device_at(app: CroftApp, peer: Peer) -> nio.crypto.OlmDevice:
    return app.client.device_store[peer.user_id][peer.device_id]


async def emoji_shown_alike(pilot: object, app: CroftApp, sas: object) -> None:
    """The dialog shows the 7 emoji, with their names, that the nio side computes."""
    await until(pilot, lambda: getattr(sas, "established_sas", None) is not None, "nio's SAS")
    await until(pilot, lambda: (d := dialog(app)) is not None and d.emoji, "the emoji")
    screen = dialog(app)
    assert screen is not None
    theirs = sas.get_emoji()  # type: ignore[attr-defined]
    assert len(theirs) == 7
    assert screen.emoji == theirs
    text = dialog_text(app)
    for symbol, name in theirs:
        assert symbol in text and name in text


async def peer_starts(pilot: object, app: CroftApp, peer: Peer, tui_user: str) -> Any:
    """The peer starts SAS with the TUI's device: the dialog opens with the same emoji.
    The peer's side of it (nio's ``Sas``)."""
    started = await peer.client.start_key_verification(tui_device_at(peer, tui_user))
    assert isinstance(started, nio.ToDeviceResponse), started
    sas = peer.client.key_verifications[started.to_device_message.content["transaction_id"]]
    await until(pilot, lambda: dialog(app) is not None, "the SAS dialog")
    await emoji_shown_alike(pilot, app, sas)
    return sas


async def test_nio_starts_and_both_confirm(tmp_path: Path) -> None:
    async with encrypted_scene(tmp_path) as s:
        a, peer, app, pilot = s.a, s.peer, s.app, s.pilot
        sas = await peer_starts(pilot, app, peer, a.user_id)
        assert not peer_device_at(app, peer).verified

        confirmed = await peer.client.confirm_short_auth_string(sas.transaction_id)
        assert isinstance(confirmed, nio.ToDeviceResponse), confirmed
        await pilot.press("y")
        await until(pilot, lambda: peer_device_at(app, peer).verified, "verified in the TUI")
        await until(pilot, lambda: tui_device_at(peer, a.user_id).verified, "verified at the peer")
        await until(pilot, lambda: "✓ verified" in dialog_text(app), "the dialog says so")
        await pilot.press("enter")
        assert isinstance(app.screen, ChatScreen)


async def test_tui_starts_from_the_devices_screen(tmp_path: Path) -> None:
    async with encrypted_scene(tmp_path) as s:
        a, peer, app, pilot = s.a, s.peer, s.app, s.pilot

        await pilot.press("f6")
        assert isinstance(app.screen, DevicesScreen)
        devices: DevicesScreen = app.screen
        await until(
            pilot, lambda: any(r.device_id == peer.device_id for r in devices.rows), "the row"
        )
        rows = devices.rows
        assert rows[0].trust == "this device" and rows[0].device_id == TUI_DEVICE_ID
        at = next(i for i, r in enumerate(rows) if r.device_id == peer.device_id)
        assert rows[at].user_id == peer.user_id and rows[at].trust == "unverified"
        fingerprint = tui_device_at(peer, a.user_id).ed25519
        assert rows[0].fingerprint.replace(" ", "") == fingerprint
        for _ in range(at):
            await pilot.press("down")
        await pilot.press("v")

        await until(pilot, lambda: dialog(app) is not None, "the SAS dialog")

        def started_at_peer() -> Any:
            verifications = peer.client.key_verifications.values()
            return next((s for s in verifications if not s.we_started_it), None)

        await until(pilot, started_at_peer, "the start at the peer")
        sas = started_at_peer()
        accepted = await peer.client.accept_key_verification(sas.transaction_id)
        assert isinstance(accepted, nio.ToDeviceResponse), accepted
        await emoji_shown_alike(pilot, app, sas)

        await pilot.press("enter")
        await until(pilot, lambda: "waiting for the other" in dialog_text(app), "waiting")
        confirmed = await peer.client.confirm_short_auth_string(sas.transaction_id)
        assert isinstance(confirmed, nio.ToDeviceResponse), confirmed
        await until(pilot, lambda: peer_device_at(app, peer).verified, "verified in the TUI")
        await until(pilot, lambda: tui_device_at(peer, a.user_id).verified, "verified at the peer")
        await pilot.press("escape")  # closes the finished dialog
        assert app.screen is devices
        await until(pilot, lambda: devices.rows[at].trust == "verified", "the row says so")


async def test_emoji_that_do_not_match_cancel(tmp_path: Path) -> None:
    async with encrypted_scene(tmp_path) as s:
        a, peer, app, pilot = s.a, s.peer, s.app, s.pilot
        sas = await peer_starts(pilot, app, peer, a.user_id)
        ours = dialog(app)
        assert ours is not None

        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen), "the dialog closed")
        assert ours.sas.canceled and ours.sas.cancel_code == "m.mismatched_sas"
        await until(pilot, lambda: sas.canceled, "cancelled at the peer")
        assert not peer_device_at(app, peer).verified
        assert not tui_device_at(peer, a.user_id).verified


def test_fingerprint_and_emoji_cells() -> None:
    assert fingerprint("abcdefghij") == "abcd efgh ij"
    assert emoji_cells([("🐶", "Dog"), ("🔑", "Key")]) == ["🐶\nDog", "🔑\nKey"]
