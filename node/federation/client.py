"""The outbound federation HTTP client: signed JSON requests to other homeservers.

Spec: content/server-server-api.md "API standards" (JSON over HTTPS, UTF-8), "TLS"
(SNI for the expected certificate, none for IP addresses; certificates signed by a
known CA, with room for exceptions), "Resolving server names" (where to connect, which
SNI and Host header: done by a :class:`~node.federation.common.ServerResolver`) and
"Request Authentication" (the X-Matrix header, node/federation/x_matrix.py).

Certificates are verified (system CAs via ``tls.client_ssl_context``, plus
``federation.ca_file``) when ``federation.verify_certificates`` is on and the server
name is a DNS name. Servers named by an IP literal or a ``.local`` mDNS name cannot
hold a publicly trusted certificate: their identity is their signing key, which every
request and event is checked against, so their certificates are not verified.

One aiohttp session, made on the first request (nothing is allocated at start-up);
at most ``federation.max_concurrency`` requests run at once.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL

from node.config import FederationConfig
from node.events.canonical import InvalidJson, encode_canonical_json, parse_json
from node.federation.common import (
    Destination,
    FederationRequestError,
    InvalidResponse,
    RemoteError,
    ServerResolver,
    Unreachable,
    is_mdns_name,
)
from node.federation.keys import ServerKey
from node.federation.tls import client_ssl_context
from node.federation.x_matrix import sign_request
from node.ids import InvalidId, ServerName

Query = Mapping[str, str | Sequence[str]]

DEFAULT_MAX_BYTES = 64 * 1024**2


def needs_certificate_check(server_name: str) -> bool:
    """Whether a server's certificate can be checked against public CAs: it is named by
    a DNS name that is not a ``.local`` mDNS name."""
    try:
        name = ServerName.parse(server_name)
    except InvalidId:
        return True
    if name.is_ip_literal:
        return False
    return not is_mdns_name(name.host)


def encode_query(query: Query | None) -> str:
    """``a=1&b=x%20y&b=z``: repeated names for sequences, %20 for spaces."""
    if not query:
        return ""
    pairs: list[tuple[str, str]] = []
    for name, value in query.items():
        if isinstance(value, str):
            pairs.append((name, value))
        else:
            pairs.extend((name, v) for v in value)
    return urlencode(pairs, quote_via=quote, safe="")


class FederationClient:
    """Signed requests to other homeservers; see the module docstring."""

    def __init__(
        self,
        server_key: ServerKey,
        resolver: ServerResolver,
        config: FederationConfig,
        *,
        data_dir: Path | None = None,
    ) -> None:
        self.server_key = server_key
        # Public: tests and the LAN discovery code may put another resolver in place.
        self.resolver = resolver
        self.config = config
        self._ca_file: Path | None = None
        if config.ca_file:
            ca = Path(config.ca_file).expanduser()
            self._ca_file = ca if ca.is_absolute() or data_dir is None else data_dir / ca
        self._sem = asyncio.Semaphore(max(1, config.max_concurrency))
        self._session: aiohttp.ClientSession | None = None
        self._verified_ctx: ssl.SSLContext | None = None
        self._unverified_ctx: ssl.SSLContext | None = None
        self._closed = False

    @property
    def server_name(self) -> str:
        return self.server_key.server_name

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- requests ----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        destination: str,
        path: str,
        *,
        query: Query | None = None,
        body: object | None = None,
        signed: bool = True,
        timeout: float = 60.0,  # noqa: ASYNC109 - part of the interface; covers resolution too
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> Any:
        """Send one request to ``destination`` (a server name) and return its parsed
        JSON answer. ``path`` is already percent-encoded; the signed URI is ``path``
        plus ``?query`` exactly as sent.

        Raises :class:`Unreachable` (resolution, connection, TLS, timeout),
        :class:`RemoteError` (a non-2xx answer) or :class:`InvalidResponse` (not JSON,
        or larger than ``max_bytes``)."""
        if self._closed:
            raise Unreachable(f"{destination}: the federation client is closed")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        qs = encode_query(query)
        uri = f"{path}?{qs}" if qs else path
        data: bytes | None = None
        headers = {"Accept": "application/json"}
        if body is not None:
            try:
                data = encode_canonical_json(body)
            except InvalidJson as e:
                raise ValueError(f"request body is not canonical JSON: {e}") from None
            headers["Content-Type"] = "application/json"
        if signed:
            headers["Authorization"] = sign_request(self.server_key, method, uri, destination, body)
        async with self._sem:
            try:
                async with asyncio.timeout(timeout):
                    try:
                        dest = await self.resolver.resolve(destination)
                    except FederationRequestError:
                        raise
                    except (OSError, ValueError) as e:
                        raise Unreachable(f"{destination}: cannot resolve ({e})") from None
                    return await self._send(
                        method, destination, dest, path, qs, headers, data, timeout, max_bytes
                    )
            except TimeoutError:
                raise Unreachable(f"{destination}: {method} {path}: timed out") from None

    async def _send(
        self,
        method: str,
        destination: str,
        dest: Destination,
        path: str,
        qs: str,
        headers: dict[str, str],
        data: bytes | None,
        timeout_s: float,
        max_bytes: int,
    ) -> Any:
        session = self._get_session()
        ctx = await self._ssl_context(destination)
        headers = {**headers, "Host": dest.host_header}
        host = f"[{dest.address}]" if ":" in dest.address else dest.address
        url = URL(f"https://{host}:{dest.port}{path}" + (f"?{qs}" if qs else ""), encoded=True)
        try:
            async with session.request(
                method,
                url,
                data=data,
                headers=headers,
                ssl=ctx,
                server_hostname=dest.tls_server_name,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as resp:
                raw = await _read_limited(resp, max_bytes, destination)
                status = resp.status
        except FederationRequestError:
            raise
        except TimeoutError:
            raise Unreachable(f"{destination}: {method} {path}: timed out") from None
        except (aiohttp.ClientError, OSError, ssl.SSLError, ValueError) as e:
            reason = str(e) or type(e).__name__
            raise Unreachable(f"{destination}: {method} {path}: {reason}") from None
        if status // 100 != 2:
            err: Mapping[str, Any] | None = None
            try:
                parsed = parse_json(raw) if raw else None
            except InvalidJson:
                parsed = None
            if isinstance(parsed, Mapping):
                err = parsed
            raise RemoteError(destination, status, err)
        try:
            return parse_json(raw)
        except InvalidJson as e:
            raise InvalidResponse(f"{destination}: {method} {path}: {e}") from None

    async def get_json(
        self, destination: str, path: str, *, query: Query | None = None, **kw: Any
    ) -> Any:
        return await self.request("GET", destination, path, query=query, **kw)

    async def put_json(
        self, destination: str, path: str, body: object, *, query: Query | None = None, **kw: Any
    ) -> Any:
        return await self.request("PUT", destination, path, query=query, body=body, **kw)

    async def post_json(
        self, destination: str, path: str, body: object, *, query: Query | None = None, **kw: Any
    ) -> Any:
        return await self.request("POST", destination, path, query=query, body=body, **kw)

    async def send_transaction(
        self, destination: str, txn_id: str, body: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """PUT /_matrix/federation/v1/send/{txnId} (api/server-server/transactions.yaml)."""
        path = "/_matrix/federation/v1/send/" + quote(txn_id, safe="")
        answer = await self.put_json(destination, path, dict(body))
        if not isinstance(answer, Mapping):
            raise InvalidResponse(f"{destination}: /send answered with {type(answer).__name__}")
        return answer

    # -- plumbing ----------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # No pooled connection may outlive a peer's restart for long.
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                trust_env=False,  # never route federation through an environment proxy
            )
        return self._session

    async def _ssl_context(self, destination: str) -> ssl.SSLContext:
        if self.config.verify_certificates and needs_certificate_check(destination):
            if self._verified_ctx is None:
                self._verified_ctx = await asyncio.to_thread(self._make_verified_context)
            return self._verified_ctx
        if self._unverified_ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self._unverified_ctx = ctx
        return self._unverified_ctx

    def well_known_context(self, host: str) -> ssl.SSLContext | bool:
        """The TLS context for fetching ``https://<host>/.well-known/matrix/server``
        (the resolver's ``ssl_context_for``): verified like federation requests."""
        if not self.config.verify_certificates:
            return False
        if self._verified_ctx is None:
            self._verified_ctx = self._make_verified_context()
        return self._verified_ctx

    def _make_verified_context(self) -> ssl.SSLContext:
        if self._ca_file is None:
            return client_ssl_context()
        # A context of our own: the shared one must not learn the extra CAs.
        ctx = ssl.create_default_context()
        try:
            ctx.load_verify_locations(cafile=str(self._ca_file))
        except (OSError, ssl.SSLError) as e:
            raise Unreachable(f"federation.ca_file {self._ca_file}: cannot load ({e})") from None
        return ctx


async def _read_limited(resp: aiohttp.ClientResponse, max_bytes: int, destination: str) -> bytes:
    """The response body, or InvalidResponse once it passes ``max_bytes``."""
    length = resp.content_length
    if length is not None and length > max_bytes:
        raise InvalidResponse(f"{destination}: response of {length} bytes is too large")
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise InvalidResponse(f"{destination}: response larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
