"""CroftApp: connects with matrix-nio, then shows the chat screen.

Login: client-server API 5.5 (``m.login.password``) when a password is given; with a
stored token, ``/account/whoami`` names the user.
"""

from __future__ import annotations

from pathlib import Path

import nio
from textual.app import App
from textual.binding import Binding

from tui import crypto
from tui.calls import CallOptions, TuiCalls
from tui.screens.chat import SYNC_TIMEOUT_MS, ChatScreen
from tui.screens.help import HelpScreen
from tui.screens.peers import PeersScreen, open_peers
from tui.session import Connection, user_store_dir
from tui.workers import ui_work

DEVICE_NAME = "croft tui"


class CroftApp(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "Croft"
    ENABLE_COMMAND_PALETTE = False  # ctrl+p is "previous room"
    BINDINGS = [  # noqa: RUF012
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "help", "Help", priority=True),
        Binding("question_mark", "help", "Help", show=False),
        Binding("f4", "peers", "Peers"),
    ]

    def __init__(
        self,
        connection: Connection,
        *,
        sync_timeout_ms: int = SYNC_TIMEOUT_MS,
        call_options: CallOptions | None = None,
    ) -> None:
        super().__init__()
        self.connection = connection
        self.sync_timeout_ms = sync_timeout_ms  # the /sync long-poll
        self.store_dir = connection.store_dir or user_store_dir(connection.user_id)
        config = crypto.config()  # encryption on; the store is opened once logged in
        self.client = nio.AsyncClient(
            connection.homeserver,
            connection.user_id,
            device_id=connection.device_id or None,
            store_path="",
            config=config,
        )
        self.error: str | None = None
        self.calls = TuiCalls(self.client, call_options)  # started by the chat screen

    def on_mount(self) -> None:
        self.connect()

    @ui_work(exclusive=True, group="connect")
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
            remembered = crypto.remembered_device(self.store_dir)
            if remembered:  # the device of the last login: the store has its Olm account
                self.client.device_id = remembered
            login = await self.client.login(c.password or "", device_name=DEVICE_NAME)
            if not isinstance(login, nio.LoginResponse):
                self.fail(f"cannot log in to {c.homeserver} as {c.user_id}: {login.message}")
                return
        try:
            crypto.open_store(self.client, self.store_dir)
        except (OSError, nio.LocalProtocolError) as e:
            self.fail(f"cannot open the encryption store {self.store_dir}: {e}")
            return
        self.sub_title = self.client.user_id
        await self.push_screen(ChatScreen(self.client, self.sync_timeout_ms, self.calls))

    def fail(self, message: str) -> None:
        self.error = message
        self.exit(return_code=2)

    def action_peers(self) -> None:
        if not any(isinstance(s, PeersScreen) for s in self.screen_stack):
            c = self.connection
            self.push_screen(open_peers(c.data_dir, c.homeserver))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def on_unmount(self) -> None:
        await self.calls.close()  # hangs up a live call
        await self.client.close()
