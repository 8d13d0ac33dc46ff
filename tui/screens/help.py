"""The help screen: every key binding of the client."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP_SECTIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Anywhere",
        (
            ("ctrl+q", "quit"),
            ("ctrl+n / ctrl+p", "next / previous room"),
            ("Tab / shift+Tab", "move between the room list, timeline and composer"),
            ("ctrl+f", "search rooms by name: type to narrow, Enter opens, Esc clears"),
            ("ctrl+o", "create a room (name, topic, alias, public, encrypted, invites)"),
            ("ctrl+d", "direct chat with a user: opens the one you have, or starts one"),
            ("F2", "members panel (★ admin, ◆ moderator, then the invited)"),
            ("F3", "room settings: name and topic"),
            ("F4", "LAN peers of the local node: state, pinned keys, refused keys"),
            ("F6", "devices: yours and the room members', fingerprints and trust"),
            ("ctrl+k or 📞 Call", "call the room shown (one other member); in a call: show it"),
            ("F1 or ?", "this help (Escape closes it)"),
        ),
    ),
    (
        "Composer",
        (
            ("Enter", "send the message"),
            ("shift/alt+Enter, ctrl+j", "a new line (a paste keeps its lines)"),
            ("Up (empty composer)", "edit your last message"),
            ("Escape", "cancel the reply or the edit"),
            ("**b** *i* `c` ~~s~~", "bold, italic, code, struck; [text](url); ``` blocks"),
            ("/me text", "send an emote"),
            ("/join #alias:server", "join a room (or !room_id:server)"),
            ("/invite @user:server", "invite someone to the room shown"),
            ("/leave", "leave the room shown"),
            ("/topic text", "set the topic of the room shown"),
            ("/nick name", "set your display name"),
            ("/call", "call the other member of the room shown (as ctrl+k)"),
            ("//text", "send text that starts with a slash"),
        ),
    ),
    (
        "Timeline",
        (
            ("Up / Down, click", "pick a message"),
            ("r", "reply to it"),
            ("e", "edit it (your own)"),
            ("x or Delete", "delete it (asks first)"),
            ("+", "react: 1-6 for the usual ones, or type one and Enter; again undoes"),
            ("s", "save its file to ~/Downloads (or $CROFT_DOWNLOADS)"),
            ("PageUp / Home", "scroll up; at the top, load older messages"),
            ("End / Escape", "back to the newest / let go of the message"),
        ),
    ),
    (
        "Room list",
        (
            ("Enter", "open the room; on an invite: accept, decline or not now"),
            ("a / d", "accept / decline the invite highlighted"),
        ),
    ),
    (
        "Dialogs",
        (
            ("t (peers)", "trust the refused key of the highlighted peer (asks first)"),
            ("Esc or q (peers)", "close the peers screen"),
            ("v (devices)", "verify the highlighted device with emoji (SAS)"),
            ("y or Enter (SAS)", "the emoji match: confirm the verification"),
            ("n or Esc (SAS)", "they don't match (or cancel): the verification is cancelled"),
            ("a or Enter (call)", "answer the incoming call"),
            ("r or Esc (call)", "reject the incoming call"),
            ("m (in a call)", "mute / unmute your microphone"),
            ("h (in a call)", "hang up"),
            ("Esc (in a call)", "back to the chat; the call goes on (ctrl+k shows it again)"),
        ),
    ),
)
BINDINGS_HELP = tuple(line for _, lines in HELP_SECTIONS for line in lines)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [  # noqa: RUF012
        Binding("escape,q,f1,question_mark", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static("[b]Croft: key bindings[/b] (scroll with the arrows or the wheel)")
            for title, lines in HELP_SECTIONS:
                yield Static(f"\n[b u]{title}[/b u]", markup=True)
                for key, what in lines:
                    line = Text.assemble((f"{key:<24}", "bold"), " ", what)
                    yield Static(line, classes="binding")

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
