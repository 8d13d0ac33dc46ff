"""The members panel (F2): the room's joined members by display name, with marks for
power (★ admin, power level 100; ◆ moderator, 50: ``m.room.power_levels``, client-server
API 11.2.3.4 / 10.x "Room membership"; in room version 12 the creators named by
``m.room.create`` rank above any level and are marked admin), then the invited.

Members come from the room state /sync brings (nio's ``room.users``). When the room's
summary counts more joined members than the state holds (lazy-loaded members), the
panel asks ``GET /rooms/{roomId}/joined_members`` (10.x) once per room.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import nio
from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tui.rooms import CREATOR_LEVEL, power_mark
from tui.workers import ui_work


@dataclass(frozen=True)
class Member:
    user_id: str
    name: str
    level: int
    invited: bool


def members_of(room: nio.MatrixRoom, creators: Collection[str] = ()) -> list[Member]:
    """Joined members (by power, then name), then the invited (by name). ``creators``
    (room version 12) rank above any power level."""
    out = [
        Member(
            user_id,
            room.user_name(user_id) or user.name,
            CREATOR_LEVEL if user_id in creators else room.power_levels.get_user_level(user_id),
            user.invited or user_id in room.invited_users,
        )
        for user_id, user in room.users.items()
    ]
    return sorted(out, key=lambda m: (m.invited, -m.level, m.name.casefold(), m.user_id))


def member_label(member: Member) -> Text:
    mark = " " if member.invited else power_mark(member.level)
    return Text(f"{mark} {member.name}", style="italic" if member.invited else "")


class MembersPanel(OptionList):
    """A right-hand column; hidden until F2."""

    def __init__(self, client: nio.AsyncClient, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.client = client
        self.room_id: str | None = None
        self.members: list[Member] = []
        self.asked: set[str] = set()  # rooms whose joined_members were fetched
        self.creators: Collection[str] = ()
        self.display = False

    def toggle(self, room: nio.MatrixRoom | None, creators: Collection[str] = ()) -> None:
        self.display = not self.display
        self.show(room, creators)

    def show(self, room: nio.MatrixRoom | None, creators: Collection[str] = ()) -> None:
        if not self.display:
            return
        self.room_id = room.room_id if room else None
        self.creators = creators
        members = members_of(room, creators) if room else []
        if members == self.members and self.option_count:
            return
        self.members = members
        joined = [m for m in members if not m.invited]
        invited = [m for m in members if m.invited]
        options: list[Option | None] = [
            Option(Text(f"Members ({len(joined)})", style="bold"), disabled=True)
        ]
        options += [Option(member_label(m), id=m.user_id) for m in joined]
        if invited:
            options.append(Option(Text(f"Invited ({len(invited)})", style="bold"), disabled=True))
            options += [Option(member_label(m), id=m.user_id) for m in invited]
        self.clear_options()
        self.add_options(options)
        if room is not None and self._lazy(room, len(joined)):
            self.asked.add(room.room_id)
            self.fetch_members(room.room_id)

    def _lazy(self, room: nio.MatrixRoom, joined: int) -> bool:
        counted = room.summary.joined_member_count if room.summary else None
        return room.room_id not in self.asked and bool(counted and counted > joined)

    @ui_work(group="members")
    async def fetch_members(self, room_id: str) -> None:
        response = await self.client.joined_members(room_id)  # nio adds them to the room
        if not isinstance(response, nio.JoinedMembersResponse):
            self.notify(f"cannot list the members: {response.message}", severity="warning")
            return
        if room_id == self.room_id:
            self.members = []
            self.show(self.client.rooms.get(room_id), self.creators)

    def labels(self) -> list[str]:
        return [str(self.get_option_at_index(i).prompt) for i in range(self.option_count)]
