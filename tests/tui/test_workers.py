"""ui_work: a worker whose widgets go at shutdown ends quietly; a real bug still fails.

The shutdown case is made exact, not timed: the worker waits until its label is
unmounted (Textual removes a screen's widgets before it cancels the screen's workers),
then looks the label up, as the chat screen's sync loop does after a /sync answer.
"""

from __future__ import annotations

import asyncio

import pytest
from textual import work
from textual.app import App, ComposeResult
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Label
from textual.worker import WorkerFailed

from tui.workers import closing, ui_work


class Watched(Label):
    def __init__(self, gone: asyncio.Event) -> None:
        super().__init__("", id="late")
        self.gone = gone

    def on_unmount(self) -> None:
        self.gone.set()


class LateScreen(Screen[None]):
    """Its worker touches ``#late`` only after that label has been unmounted."""

    def __init__(self, guarded: bool) -> None:
        super().__init__()
        self.gone = asyncio.Event()
        self.guarded = guarded
        self.resumed = False

    def compose(self) -> ComposeResult:
        yield Watched(self.gone)

    def on_mount(self) -> None:
        if self.guarded:
            self.late_guarded()
        else:
            self.late_plain()

    @ui_work(group="late")
    async def late_guarded(self) -> None:
        await self.gone.wait()
        self.resumed = True
        self.query_one("#late", Label).update("too late")

    @work(group="late")
    async def late_plain(self) -> None:
        await self.gone.wait()
        self.resumed = True
        self.query_one("#late", Label).update("too late")


class LateApp(App[None]):
    def __init__(self, guarded: bool) -> None:
        super().__init__()
        self.late = LateScreen(guarded)

    def on_mount(self) -> None:
        self.push_screen(self.late)


async def _run_and_close(app: LateApp) -> None:
    async with app.run_test() as pilot:
        await pilot.pause()
        assert not closing(app.late)
    assert closing(app.late)


async def test_widgets_gone_at_shutdown_end_the_worker_quietly() -> None:
    app = LateApp(guarded=True)
    await _run_and_close(app)
    assert app.late.resumed  # the worker did run into the removed label


async def test_plain_work_fails_there() -> None:
    """The case above is the race the chat screen's sync loop met: plain @work fails."""
    app = LateApp(guarded=False)
    with pytest.raises((WorkerFailed, NoMatches)):
        await _run_and_close(app)
    assert app.late.resumed


class MissingApp(App[None]):
    def on_mount(self) -> None:
        self.lookup()

    @ui_work(group="lookup")
    async def lookup(self) -> None:
        self.query_one("#never-there", Label)


async def test_a_missing_widget_while_running_still_fails() -> None:
    with pytest.raises((WorkerFailed, NoMatches)):
        async with MissingApp().run_test() as pilot:
            await pilot.pause()
