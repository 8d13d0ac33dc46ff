"""Small dialogs of the timeline's actions: "are you sure?" and "react with what?".

A reaction's key is any text (client-server API 11.38: usually one emoji); typing 1-6
picks a quick one, or type another and press Enter.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from tui.actions import QUICK_REACTIONS


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question: y or Enter confirms, n or Escape does not."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="error")
                yield Button("Cancel (n)", id="no")

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ReactScreen(ModalScreen[str | None]):
    """Pick a reaction: 1-6 for the quick ones, or type one and press Enter."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("React with: 1-6, or type a reaction and Enter (Escape cancels)")
            with Horizontal(classes="dialog-buttons"):
                for i, key in enumerate(QUICK_REACTIONS):
                    yield Button(f"{i + 1} {key}", id=f"quick-{i}")
            yield Input(placeholder="a reaction", id="reaction-key", max_length=64)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(QUICK_REACTIONS[int((event.button.id or "quick-0").removeprefix("quick-"))])

    @on(Input.Changed)
    def changed(self, event: Input.Changed) -> None:
        if event.value in QUICK_NUMBERS:
            self.dismiss(QUICK_REACTIONS[int(event.value) - 1])

    @on(Input.Submitted)
    def typed(self, event: Input.Submitted) -> None:
        key = event.value.strip()
        if key:
            self.dismiss(key)

    def action_cancel(self) -> None:
        self.dismiss(None)


QUICK_NUMBERS = {str(i + 1) for i in range(len(QUICK_REACTIONS))}
