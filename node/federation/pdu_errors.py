"""Why a received PDU or transaction was not processed (node/federation/pdus.py).

Apart from the receiver so that the federation API's handlers can name them without
loading the receiving side of federation before its first use (node/app.py).
"""

from __future__ import annotations


class PduDropped(Exception):
    """The PDU failed check 1 or 2 (or names a room this server is not in): not stored."""

    def __init__(self, message: str, event_id: str | None = None) -> None:
        super().__init__(message)
        self.event_id = event_id


class PduDeferred(PduDropped):
    """The PDU cannot be processed now: fetching its missing events or auth events
    failed because the server could not be reached (a LAN peer that just came back,
    a link that blinked). Worth receiving again later rather than dropping."""


class TransactionDeferred(Exception):
    """A transaction stopped at a deferred PDU: answer it with an error so that the
    sender retries it (PDUs already stored are "known" the next time)."""
