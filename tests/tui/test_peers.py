"""The peers screen (F4, issue #7): the LAN peers in a real in-process node's database,
seeded through the registry's own API (discovery is off in these tests: no mDNS), the
refused announcements, trusting a refused key with ``t`` as `croft peers trust` does,
and what the screen says with no peers, an odd database, or another homeserver."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from node.app import RunningNode
from node.discovery.registry import LOST, PeerRegistry, read_peers
from node.discovery.service import Announcement, key_fingerprint
from tests.tui.conftest import make_app, ready, until
from tui.app import CroftApp
from tui.screens.chat import ChatScreen
from tui.screens.peers import NO_PEERS, PeersScreen, TrustScreen, ago, when
from tui.session import local_connection

SIZE = (160, 40)
FP1, FP2, FP3 = (key_fingerprint(c * 43) for c in "ABC")
H1 = Announcement("host1.local", 8448, "ed25519:a", FP1)
SPOOF = Announcement("host1.local", 8448, "ed25519:z", FP2)
H2 = Announcement("host2.local", 8449, "ed25519:b", FP3)
H3 = Announcement("host3.local", 8448, "ed25519:c", FP3)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "just now"),
        (4, "just now"),
        (42, "42 s ago"),
        (60, "1 min ago"),
        (3599, "59 min ago"),
        (7500, "2 h ago"),
        (86_400 * 3 + 5, "3 d ago"),
        (-30, "just now"),  # a clock behind the node's
    ],
)
def test_ago(seconds: int, text: str) -> None:
    now = 1_800_000_000_000
    assert ago(now - seconds * 1000, now) == text


def peers_screen(app: CroftApp) -> PeersScreen:
    screen = app.screen
    assert isinstance(screen, PeersScreen), screen
    return screen


def rows(app: CroftApp) -> list[list[str]]:
    table: DataTable[Any] = app.screen.query_one(DataTable)
    if not table.display:
        return []
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(app: CroftApp, selector: str) -> str:
    widget = app.screen.query_one(selector, Static)
    return str(widget.render()) if widget.display else ""


def status(app: CroftApp) -> str:
    return peers_screen(app).said[-1] if peers_screen(app).said else ""


async def test_peers_listed_and_a_refused_key_trusted(node: RunningNode) -> None:
    now = int(time.time() * 1000)
    registry = PeerRegistry(node.node.db)
    await registry.load()
    await registry.mark_alive(H1, ("10.99.0.1",), "A" * 43, now_ms=now - 3 * 86_400_000)
    await registry.mark_alive(H1, ("10.99.0.1", "fd00::1"), "A" * 43, now_ms=now - 3_000_000)
    await registry.mark_alive(H2, ("10.99.0.2",), "C" * 43, now_ms=now - 7_500_000)
    await registry.mark_lost("host2.local")
    await registry.report_conflict(SPOOF, ("10.99.0.4",), now_ms=now - 2 * 86_400_000)
    database = node.node.config.database_path

    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, PeersScreen), "the peers screen")
        await until(pilot, lambda: len(rows(app)) == 2, "two peers listed")
        one, two = rows(app)
        assert one[:5] == ["host1.local", "alive", "50 min ago", "10.99.0.1, fd00::1", "8448"]
        assert one[5:] == ["ed25519:a", FP1, when(now - 3 * 86_400_000)]
        assert two[:5] == ["host2.local", "lost", "2 h ago", "10.99.0.2", "8449"]
        assert two[5:7] == ["ed25519:b", FP3]
        refused = text_of(app, "#refused")
        assert f"refused host1.local at 10.99.0.4: key ed25519:z {FP2}, 2 d ago" in refused
        assert "host2.local" not in refused

        # Refreshed while shown: a peer seen now appears.
        await registry.mark_alive(H3, ("10.99.0.3",), "C" * 43)
        await until(pilot, lambda: len(rows(app)) == 3, "the new peer listed")
        three = rows(app)[2]
        assert three[:2] == ["host3.local", "alive"]
        assert three[2] == "just now" or three[2].endswith(" s ago"), three

        # t on a peer without a refused key: nothing to do.
        await pilot.press("down")
        await pilot.press("t")
        assert status(app) == "host2.local has no refused key: nothing to trust."
        assert isinstance(app.screen, PeersScreen)

        # t on host1, then cancel: nothing changes.
        await pilot.press("up")
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, TrustScreen), "the question")
        assert FP2 in str(app.screen.query_one("#trust Static", Static).render())
        await pilot.press("n")
        await until(pilot, lambda: status(app) == "host1.local: nothing changed.", "cancelled")
        assert read_peers(database)[0][0].key_id == "ed25519:a"

        # t, then y: pinned to the refused key, its refusals cleared, as the CLI does.
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, TrustScreen), "the question")
        await pilot.press("y")
        await until(pilot, lambda: "now pinned" in status(app), "the trust result")
        assert status(app) == (
            f"host1.local is now pinned to key ed25519:z {FP2} (was ed25519:a {FP1});"
            " the node checks it at 10.99.0.4."
        )
        peers, conflicts = read_peers(database)
        assert conflicts == []
        host1 = next(p for p in peers if p.server_name == "host1.local")
        assert (host1.key_id, host1.fingerprint, host1.state) == ("ed25519:z", FP2, LOST)
        assert host1.verify_key == ""  # filled in at the next good check
        assert host1.addresses == ("10.99.0.4",)
        await until(pilot, lambda: rows(app)[0][5:7] == ["ed25519:z", FP2], "the new pin shown")
        await until(pilot, lambda: text_of(app, "#refused") == "", "no refusal left")

        # Nothing left to trust.
        await pilot.press("t")
        assert status(app) == "host1.local has no refused key: nothing to trust."

        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen), "back to the chat")
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, PeersScreen), "open again")
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen), "closed with q")


async def test_no_peers_odd_databases_and_another_homeserver(
    node: RunningNode, tmp_path: Path
) -> None:
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, PeersScreen), "the peers screen")
        await peers_screen(app).loaded.wait()
        assert text_of(app, "#peers-empty") == NO_PEERS
        assert rows(app) == [] and text_of(app, "#refused") == ""
        await pilot.press("t")
        assert status(app) == "No peer to trust."
        await pilot.press("escape")

        # A database the node never migrated: no peers either.
        blank = tmp_path / "blank.db"
        sqlite3.connect(blank).close()
        # A row the registry cannot read: one line, no traceback.
        odd = tmp_path / "odd.db"
        conn = sqlite3.connect(odd)
        with conn:
            conn.executescript(
                "CREATE TABLE lan_peers (server_name, addresses, port, key_id, fingerprint,"
                " verify_key, first_seen_ts, last_seen_ts, state);"
                "INSERT INTO lan_peers VALUES ('x', 'not json', 1, 'k', 'f', '', 0, 0, 'lost');"
                "CREATE TABLE lan_key_conflicts (id, server_name, key_id, fingerprint,"
                " addresses, seen_ts);"
            )
        conn.close()
        garbage = tmp_path / "garbage.db"
        garbage.write_bytes(b"not a database at all" * 100)
        for database, expected in [
            (blank, NO_PEERS),
            (tmp_path / "absent.db", NO_PEERS),
            (odd, f"cannot read the LAN peers from {odd}: "),
            (garbage, f"cannot read the LAN peers from {garbage}: "),
        ]:
            screen = PeersScreen(database)
            await app.push_screen(screen)
            await screen.loaded.wait()
            await pilot.pause()
            assert text_of(app, "#peers-empty").startswith(expected), database
            assert rows(app) == []
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, ChatScreen), "closed")

    # Connected elsewhere (no data directory): one line says why nothing is shown.
    elsewhere = replace(local_connection(node.node.config.data_dir), data_dir=None)
    app = CroftApp(elsewhere, sync_timeout_ms=500)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, PeersScreen), "the peers screen")
        assert peers_screen(app).said == [
            "LAN peers are known only to the local Croft node; this client is connected"
            f" to {elsewhere.homeserver}."
        ]
        assert text_of(app, "#peers-status") == peers_screen(app).said[0]
        assert not app.screen.query_one("#peers-body").display
        await pilot.press("t")  # nothing to act on: nothing breaks
        assert isinstance(app.screen, PeersScreen)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen), "closed")
