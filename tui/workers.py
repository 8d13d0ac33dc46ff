"""Workers that outlive their widgets quietly, and only then.

A worker awaits the network, then updates widgets. When the app shuts down in the
meantime, Textual first sets the app not running, then removes the screens' widgets one
by one, and only then cancels the workers. A worker resuming in that window finds a
widget already gone (``NoMatches``) and, as an unhandled worker error, would fail the
app's exit. ``ui_work`` is Textual's ``work`` that lets exactly that case end the
worker; the same error while the app runs is a bug and still fails loudly.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from textual import work
from textual.css.query import NoMatches
from textual.dom import DOMNode

P = ParamSpec("P")
R = TypeVar("R")
N = TypeVar("N", bound=DOMNode)


def closing(node: DOMNode) -> bool:
    """True once the app is shutting down or ``node`` has left the DOM."""
    try:
        app = node.app
    except RuntimeError:  # Textual's NoActiveAppError: no app any more
        return True
    if not app.is_running:
        return True
    return node is not app and not node.is_attached


def ui_work(
    *, group: str = "default", exclusive: bool = False
) -> Callable[[Callable[Concatenate[N, P], Awaitable[R]]], Callable[Concatenate[N, P], Any]]:
    """``@work(group=..., exclusive=...)`` whose widgets may vanish at shutdown."""

    def decorate(
        method: Callable[Concatenate[N, P], Awaitable[R]],
    ) -> Callable[Concatenate[N, P], Any]:
        @functools.wraps(method)
        async def guarded(self: N, *args: P.args, **kwargs: P.kwargs) -> R | None:
            try:
                return await method(self, *args, **kwargs)
            except NoMatches:
                if closing(self):
                    return None  # the app is closing: its widgets are going
                raise

        return work(guarded, group=group, exclusive=exclusive)

    return decorate
