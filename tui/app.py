"""CroftApp: connects with matrix-nio, then shows the chat screen.

Login: client-server API 5.5 (``m.login.password``) when a password is given; with a
stored token, ``/account/whoami`` names the user.
"""

from __future__ import annotations

from pathlib import Path

import nio
from textual import work
from textual.app import App
from textual.binding import Binding

from tui.screens.chat import SYNC_TIMEOUT_MS, ChatScreen
from tui.screens.help import HelpScreen
from tui.session import Connection

DEVICE_NAME = "croft tui"


class CroftApp(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "Croft"
    ENABLE_COMMAND_PALETTE = False  # ctrl+p is "previous room"
    BINDINGS = [  # noqa: RUF012
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "help", "Help", priority=True),
        Binding("question_mark", "help", "Help", show=False),
    ]

    def __init__(self, connection: Connection, *, sync_timeout_ms: int = SYNC_TIMEOUT_MS) -> None:
        super().__init__()
        self.connection = connection
        self.sync_timeout_ms = sync_timeout_ms  # the /sync long-poll
        config = nio.AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False)
        self.client = nio.AsyncClient(
            connection.homeserver,
            connection.user_id,
            device_id=connection.device_id or None,
            store_path="",
            config=config,
        )
        self.error: str | None = None

    def on_mount(self) -> None:
        self.connect()

    @work(exclusive=True, group="connect")
    async def connect(self) -> None:
        c = self.connection
        if c.token:
            self.client.access_token = c.token
            whoami = await self.client.whoami()
            if not isinstance(whoami, nio.WhoamiResponse):
                self.fail(f"{c.homeserver} refused the access token: {whoami.message}")
                return
            self.client.user_id = whoami.user_id
            if whoami.device_id:
                self.client.device_id = whoami.device_id
        else:
            login = await self.client.login(c.password or "", device_name=DEVICE_NAME)
            if not isinstance(login, nio.LoginResponse):
                self.fail(f"cannot log in to {c.homeserver} as {c.user_id}: {login.message}")
                return
        self.sub_title = self.client.user_id
        await self.push_screen(ChatScreen(self.client, self.sync_timeout_ms))

    def fail(self, message: str) -> None:
        self.error = message
        self.exit(return_code=2)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def on_unmount(self) -> None:
        await self.client.close()
