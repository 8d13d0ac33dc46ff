"""A second user, on a second in-process node: the invite is listed, and after the
join their messages appear with unread counts (``unread_notifications`` of /sync)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from tests.federation.nodes import owner_pair
from tests.tui.conftest import make_app, ready, room_labels, timeline_text, until


async def test_invite_listed_then_unread_counts(tmp_path: Path) -> None:
    async with owner_pair(tmp_path) as (a, b):
        here = await a.create_room(name="Home")
        room = await b.create_room(name="From B")
        await b.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": a.user_id})
        app = make_app(a.node)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(app, pilot)
            await until(pilot, lambda: "✉ From B" in room_labels(app), "the invite")
            assert "Invites" in room_labels(app)
            server_b = b.node.node.config.server_name
            await a.call("POST", f"/join/{quote(room)}?server_name={quote(server_b)}", {})
            for i in range(3):
                await b.send(room, f"news {i}")
            await until(
                pilot, lambda: any(x.endswith("From B 3") for x in room_labels(app)), "3 unread"
            )
            assert screen.selected == here  # counts show for a room that is not open
            assert "✉ From B" not in room_labels(app)
            await pilot.press("ctrl+n")
            assert screen.selected == room
            await until(
                pilot, lambda: f"{b.user_id}: news 2" in timeline_text(app), "B's last message"
            )
            assert f"{b.user_id}: news 0" in timeline_text(app)
