"""The members panel (F2) against real nodes: both members after a join, with the
power marks (★ admin 100, ◆ moderator 50), and the invited listed after them."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import nio

from tests.federation.nodes import owner_pair
from tests.tui.conftest import make_app, ready, until
from tui.rooms import CREATOR_LEVEL, creators_of, power_mark
from tui.widgets.members import Member, MembersPanel, members_of

SIZE = (120, 40)


def test_power_marks() -> None:
    assert [power_mark(n) for n in (100, 99, 50, 49, 0, -1)] == ["★", "◆", "◆", " ", " ", " "]


def test_creators_of_room_version_12() -> None:
    create = {"sender": "@c:x", "content": {"room_version": "12", "additional_creators": ["@d:y"]}}
    assert creators_of(create) == {"@c:x", "@d:y"}
    create["content"]["room_version"] = "11"  # creators listed in power_levels instead
    assert creators_of(create) == set()
    assert creators_of({"sender": "@c:x", "content": {"room_version": "13"}}) == {"@c:x"}
    assert creators_of({"content": "junk"}) == set()


def test_members_of_orders_by_power_then_name_then_invited() -> None:
    room = nio.MatrixRoom("!r:x", "@me:x")
    room.add_member("@me:x", "Me", None)
    room.add_member("@zed:x", "Zed", None)
    room.add_member("@amy:x", "amy", None)
    room.add_member("@guest:x", None, None, invited=True)
    room.power_levels.users.update({"@me:x": 100, "@zed:x": 50})
    assert members_of(room) == [
        Member("@me:x", "Me", 100, False),
        Member("@zed:x", "Zed", 50, False),
        Member("@amy:x", "amy", 0, False),
        Member("@guest:x", "@guest:x", 0, True),
    ]
    # Room version 12: a creator outranks power level 100.
    assert members_of(room, {"@amy:x"})[0] == Member("@amy:x", "amy", CREATOR_LEVEL, False)


def panel_labels(app: object) -> list[str]:
    return app.screen.query_one(MembersPanel).labels()  # type: ignore[attr-defined]


async def test_members_panel_invite_join_and_power(tmp_path: Path) -> None:
    async with owner_pair(tmp_path) as (a, b):
        await a.call("PUT", f"/profile/{quote(a.user_id)}/displayname", {"displayname": "Ally"})
        await b.call("PUT", f"/profile/{quote(b.user_id)}/displayname", {"displayname": "Bob"})
        room = await a.create_room(name="Shed")
        app = make_app(a.node)
        async with app.run_test(size=SIZE) as pilot:
            await ready(app, pilot)
            panel = app.screen.query_one(MembersPanel)
            assert not panel.display
            await pilot.press("f2")
            assert panel.display
            await until(pilot, lambda: panel_labels(app) == ["Members (1)", "★ Ally"], "Ally")
            await a.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": b.user_id})
            await until(pilot, lambda: "Invited (1)" in panel_labels(app), "b, invited")
            assert panel_labels(app) == ["Members (1)", "★ Ally", "Invited (1)", f"  {b.user_id}"]
            server_a = a.node.node.config.server_name
            await b.call("POST", f"/join/{quote(room)}?server_name={quote(server_a)}", {})
            await until(pilot, lambda: "  Bob" in panel_labels(app), "Bob, joined")
            assert panel_labels(app) == ["Members (2)", "★ Ally", "  Bob"]
            levels = await a.state(room, "m.room.power_levels")
            levels["users"][b.user_id] = 50
            await a.put_state(room, "m.room.power_levels", levels)
            await until(pilot, lambda: "◆ Bob" in panel_labels(app), "Bob, moderator")
            assert panel_labels(app) == ["Members (2)", "★ Ally", "◆ Bob"]
            await pilot.press("f2")
            assert not panel.display
