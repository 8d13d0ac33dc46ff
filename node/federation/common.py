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

from aiohttp import web

# request[ORIGIN]: the server name an inbound request was authenticated as (set by the
# X-Matrix middleware in node/federation/auth.py; absent on the unauthenticated key
# and version endpoints).
ORIGIN: web.RequestKey[str] = web.RequestKey("croft.federation.origin", str)


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


def is_mdns_name(host: str) -> bool:
    """Whether ``host`` is a ``.local`` name (RFC 6762: resolved by mDNS, never by
    unicast DNS, and not a name public CAs certify)."""
    host = host.rstrip(".").lower()
    return host == "local" or host.endswith(".local")


def path_segment(value: str) -> str:
    """``value`` percent-encoded as one path segment of a federation URL (room, event
    and user IDs hold ``!``, ``$``, ``@``, ``:`` and, in v12, ``/``-free base64)."""
    from urllib.parse import quote

    return quote(value, safe="")


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


class LazyResolver:
    """The resolver of node/federation/resolver.py, built on first use: dnspython costs
    ~4 MiB of resident memory, which a node that never federates (or only with IP
    literals and LAN peers) need not pay at start."""

    def __init__(self, nameservers: tuple[str, ...] = ()) -> None:
        self.nameservers = nameservers
        # For fetching .well-known over HTTPS (the federation client sets it).
        self.ssl_context_for: Any = None
        self._inner: Any = None

    def _resolver(self) -> Any:
        if self._inner is None:
            from node.federation.resolver import Resolver

            self._inner = Resolver(
                nameservers=self.nameservers, ssl_context_for=self.ssl_context_for
            )
        return self._inner

    async def resolve(self, server_name: str) -> Destination:
        if self._inner is None:
            # An IP literal needs no DNS (spec step 1): answer without loading it.
            from node.ids import InvalidId, ServerName

            try:
                name = ServerName.parse(server_name)
            except InvalidId:
                name = None
            if name is not None and name.is_ip_literal:
                return Destination(
                    server_name, name.host.strip("[]"), name.port or 8448, None, server_name
                )
        result: Destination = await self._resolver().resolve(server_name)
        return result

    def set_override(self, server_name: str, address: str, port: int) -> None:
        self._resolver().set_override(server_name, address, port)

    def clear_override(self, server_name: str) -> None:
        self._resolver().clear_override(server_name)

    def set_fallback(self, server_name: str, address: str, port: int) -> None:
        self._resolver().set_fallback(server_name, address, port)

    def clear_fallback(self, server_name: str) -> None:
        self._resolver().clear_fallback(server_name)

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
