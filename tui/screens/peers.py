"""The peers screen (F4): the LAN peers the local Croft node has found, their state
and pinned keys, and the announcements it refused because they carried another key.

Not part of the client-server API: LAN discovery is Croft's own (issue #5), and its
state is only in the local node's database (node/discovery/registry.py). The screen
reads it the way `croft peers` does (:func:`read_peers`, read-only, in a thread, every
``REFRESH_S``), and ``t`` trusts a peer's refused key the way `croft peers trust` does
(:func:`trust`); a running node takes the new pin up by itself. Connected to another
homeserver, the screen says in one line that it has nothing to show.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.coordinate import Coordinate
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Static

from node.config import ConfigError, load_config
from node.discovery.registry import ALIVE, NothingRefused, Peer, Trusted, read_peers, trust
from tui.workers import ui_work

REFRESH_S = 2.0
COLUMNS = ("Server", "State", "Last seen", "Addresses", "Port", "Key", "Fingerprint", "First seen")
NO_PEERS = "No peers found yet."
REMOTE = "LAN peers are known only to the local Croft node; this client is connected to {}."


def peers_database(data_dir: Path) -> Path:
    """The database of the node whose data directory is ``data_dir`` (as `croft peers`
    finds it). Raises ConfigError."""
    return load_config(data_dir).database_path


@dataclass(frozen=True)
class Snapshot:
    """The registry as read once: peers, refusals (dicts of :func:`read_peers`), or the
    one-line reason it could not be read."""

    peers: tuple[Peer, ...] = ()
    refused: tuple[dict[str, Any], ...] = ()
    error: str | None = None


def read_snapshot(database: Path) -> Snapshot:
    """Blocking: run it in a thread. Never raises."""
    if not database.exists():  # the node never ran
        return Snapshot()
    try:
        peers, refused = read_peers(database)
    except (sqlite3.Error, ValueError, TypeError, IndexError) as e:
        return Snapshot(error=f"cannot read the LAN peers from {database}: {e}")
    return Snapshot(tuple(peers), tuple(refused))


def ago(ts_ms: int, now_ms: int) -> str:
    """A relative time: ``just now``, ``42 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    s = max(0, (now_ms - ts_ms) // 1000)
    if s < 5:
        return "just now"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return f"{s} s ago"


def when(ts_ms: int) -> str:
    """A local date and time, to the minute."""
    return datetime.fromtimestamp(ts_ms / 1000).strftime("%Y-%m-%d %H:%M")


def peer_row(p: Peer, now_ms: int) -> tuple[Text, ...]:
    state = Text(p.state, style="bold" if p.state == ALIVE else "dim")
    cells = (
        p.server_name,
        ", ".join(p.addresses),
        str(p.port),
        p.key_id,
        p.fingerprint,
        when(p.first_seen_ts),
    )
    name, addresses, port, key, fingerprint, first = (Text(c) for c in cells)
    return (
        name,
        state,
        Text(ago(p.last_seen_ts, now_ms)),
        addresses,
        port,
        key,
        fingerprint,
        first,
    )


def refusal_line(r: dict[str, Any], now_ms: int) -> Content:
    at = ", ".join(str(a) for a in r.get("addresses") or ())
    return Content.from_markup(
        "[$text-warning b]refused[/] $name at $at: key $key $fp, $ago (t on the peer trusts it)",
        name=str(r["server_name"]),
        at=at or "?",
        key=str(r["key_id"]),
        fp=str(r["fingerprint"]),
        ago=ago(int(r["seen_ts"]), now_ms),
    )


def trusted_line(t: Trusted) -> str:
    """What trusting did, in one line (the CLI says the same in three)."""
    if t.old is None:
        return f"{t.server_name} was not pinned: its refusals are cleared; its next key is pinned."
    return (
        f"{t.server_name} is now pinned to key {t.key_id} {t.fingerprint}"
        f" (was {t.old[0]} {t.old[1]}); the node checks it at {', '.join(t.addresses)}."
    )


class TrustScreen(ModalScreen[bool]):
    """Are you sure? Dismisses with True to trust the refused key."""

    BINDINGS = [  # noqa: RUF012
        Binding("y", "answer(True)", "Trust"),
        Binding("n,escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, peer: Peer, refused: dict[str, Any]) -> None:
        super().__init__()
        self.peer = peer
        self.refused = refused

    def compose(self) -> ComposeResult:
        p, r = self.peer, self.refused
        with Vertical(id="trust"):
            yield Static(
                f"Trust the new key of {p.server_name}?\n\n"
                f"pinned now: {p.key_id} {p.fingerprint}\n"
                f"refused:    {r['key_id']} {r['fingerprint']}\n\n"
                "Only if you know why its key changed (a reinstall, a new machine): "
                "otherwise another machine may be posing as it.",
                markup=False,
            )
            with Horizontal(id="trust-buttons"):
                yield Button("Trust (y)", id="trust-yes", variant="warning")
                yield Button("Cancel (n, Esc)", id="trust-no")

    def on_mount(self) -> None:
        self.query_one("#trust-no", Button).focus()

    @on(Button.Pressed)
    def on_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "trust-yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PeersScreen(Screen[None]):
    """``database`` is the local node's database, or None when connected elsewhere
    (then ``homeserver`` is named in the explanation); ``problem`` is a one-line reason
    the database could not be found."""

    BINDINGS = [  # noqa: RUF012
        Binding("escape,q", "close", "Close"),
        Binding("t", "trust", "Trust refused key"),
    ]

    def __init__(
        self, database: Path | None, homeserver: str = "", problem: str | None = None
    ) -> None:
        super().__init__()
        self.database = database
        self.homeserver = homeserver
        self.problem = problem
        self.snapshot = Snapshot()
        self.shown_rows: list[tuple[Text, ...]] = []
        self.loaded = asyncio.Event()  # the first read is shown
        self.said: list[str] = []  # every status line, oldest first

    def compose(self) -> ComposeResult:
        yield Static("LAN peers", id="peers-title", markup=False)
        with Vertical(id="peers-body"):
            table: DataTable[Text] = DataTable(id="peers-table", cursor_type="row")
            table.add_columns(*COLUMNS)
            yield table
            yield Static("", id="peers-empty", markup=False)
            yield Static("Refused announcements", id="refused-title", markup=False)
            yield Static("", id="refused", markup=False)
        yield Static("", id="peers-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        if self.database is None:
            self.query_one("#peers-body").display = False
            self.say(self.problem or REMOTE.format(self.homeserver or "another homeserver"))
            self.loaded.set()
            return
        self.query_one(DataTable).focus()
        self.reload()
        self.set_interval(REFRESH_S, self.reload)

    def say(self, line: str) -> None:
        self.said.append(line)
        self.query_one("#peers-status", Static).update(line)

    @ui_work(exclusive=True, group="peers-read")
    async def reload(self) -> None:
        assert self.database is not None
        snapshot = await asyncio.to_thread(read_snapshot, self.database)
        self.show(snapshot)
        self.loaded.set()

    def show(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        now_ms = int(time.time() * 1000)
        table: DataTable[Text] = self.query_one(DataTable)
        rows = [peer_row(p, now_ms) for p in snapshot.peers]
        if rows != self.shown_rows:  # else leave the table (and its scrolling) alone
            self.shown_rows = rows
            highlighted = self.highlighted_name()
            table.clear()
            for p, row in zip(snapshot.peers, rows, strict=True):
                table.add_row(*row, key=p.server_name)
            names = [p.server_name for p in snapshot.peers]
            if highlighted in names:
                table.move_cursor(row=names.index(highlighted), animate=False)
        empty = self.query_one("#peers-empty", Static)
        empty.update(snapshot.error or ("" if snapshot.peers else NO_PEERS))
        empty.display = bool(snapshot.error or not snapshot.peers)
        table.display = bool(snapshot.peers)
        refused = self.query_one("#refused", Static)
        refused.update(Content("\n").join(refusal_line(r, now_ms) for r in snapshot.refused))
        for widget in (refused, self.query_one("#refused-title")):
            widget.display = bool(snapshot.refused)

    def highlighted_name(self) -> str | None:
        table: DataTable[Text] = self.query_one(DataTable)
        if self.database is None or not table.row_count:
            return None
        row = min(max(table.cursor_row, 0), table.row_count - 1)
        return str(table.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value)

    def last_refusal(self, name: str) -> dict[str, Any] | None:
        """The refusal `croft peers trust` would accept: the most recent one."""
        mine = [r for r in self.snapshot.refused if r["server_name"] == name]
        # Ties go to the newest row, as in trust().
        return max(reversed(mine), key=lambda r: int(r["seen_ts"])) if mine else None

    def action_close(self) -> None:
        self.dismiss(None)

    def action_trust(self) -> None:
        name = self.highlighted_name()
        if name is None:
            self.say("No peer to trust." if self.database is not None else self.said[-1])
            return
        peer = next((p for p in self.snapshot.peers if p.server_name == name), None)
        refused = self.last_refusal(name)
        if peer is None or refused is None:
            self.say(f"{name} has no refused key: nothing to trust.")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.trust_key(name, str(refused["fingerprint"]))
            else:
                self.say(f"{name}: nothing changed.")

        self.app.push_screen(TrustScreen(peer, refused), answered)

    @ui_work(exclusive=True, group="peers-trust")
    async def trust_key(self, name: str, shown: str) -> None:
        """Trust ``name``'s last refused key; ``shown`` is the fingerprint the owner
        agreed to (a newer refusal may have come in meanwhile: then say so)."""
        assert self.database is not None
        try:
            done = await asyncio.to_thread(trust, self.database, name)
        except NothingRefused as e:
            self.say(f"{e}: nothing to trust.")
        except sqlite3.Error as e:
            self.say(f"cannot trust {name}: {e}")
        else:
            newer = "" if done.fingerprint == shown else " (a newer refusal than the one shown)"
            self.say(trusted_line(done) + newer)
        self.reload()


def open_peers(data_dir: Path | None, homeserver: str) -> PeersScreen:
    """The peers screen for a connection: with the local node's data directory, or the
    explanation that only the local node knows its LAN peers."""
    if data_dir is None:
        return PeersScreen(None, homeserver)
    try:
        return PeersScreen(peers_database(data_dir))
    except ConfigError as e:
        return PeersScreen(None, problem=f"cannot find the node's database: {e}")
