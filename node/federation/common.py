"""What the federation modules share: where a server is reached, the errors of an
outbound request, and the key under which an authenticated inbound request names
its origin server.

Spec: content/server-server-api.md ("Resolving server names", "Request
Authentication", "Transactions").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# request[ORIGIN]: the server name an inbound request was authenticated as (set by the
# X-Matrix middleware in node/federation/auth.py; absent on the unauthenticated key
# and version endpoints).
ORIGIN = "croft.federation.origin"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where to send a request for ``server_name`` (spec "Resolving server names").

    ``address`` is an IP literal to connect to (no brackets), or a host name for the
    system to look up when no DNS servers are configured; ``tls_server_name`` is the
    SNI to send (None for IP literals); ``host_header`` is the Host header value."""

    server_name: str
    address: str
    port: int
    tls_server_name: str | None
    host_header: str


class ServerResolver(Protocol):
    async def resolve(self, server_name: str) -> Destination: ...


class FederationRequestError(Exception):
    """An outbound federation request failed."""


class Unreachable(FederationRequestError):
    """The server could not be reached (resolution, connection, TLS or timeout): worth
    retrying later."""


class RemoteError(FederationRequestError):
    """The server answered with an error status (``body`` holds its Matrix error)."""

    def __init__(self, destination: str, status: int, body: Mapping[str, Any] | None) -> None:
        self.destination = destination
        self.status = status
        self.body = dict(body or {})
        errcode = self.body.get("errcode", "")
        error = self.body.get("error", "")
        super().__init__(f"{destination}: HTTP {status} {errcode} {error}".rstrip())

    @property
    def errcode(self) -> str:
        code = self.body.get("errcode")
        return code if isinstance(code, str) else ""


class InvalidResponse(FederationRequestError):
    """The server answered 200 with something that is not what the spec says."""
