"""The chat screen's widgets: room list, timeline, composer."""

from tui.widgets.composer import Composer
from tui.widgets.room_list import RoomEntry, RoomList
from tui.widgets.timeline import Timeline

__all__ = ["Composer", "RoomEntry", "RoomList", "Timeline"]
