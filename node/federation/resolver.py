"""Server discovery: from a server name to the address, port, SNI and Host header to use.

Spec: content/server-server-api.md "Server discovery" > "Resolving server names"
(steps 1 to 6, with 3.1 to 3.5), the ``/.well-known/matrix/server`` schema
(api/server-server/wellknown.yaml) and "TLS" (no SNI for IP literals). SRV records are
ordered per RFC 2782; empty DNS answers are cached per RFC 2308 (SOA minimum).

Step -> case, as coded in :meth:`Resolver.resolve`:

==========  ==========================================  ================  =================
step        case                                        SNI               Host header
==========  ==========================================  ================  =================
1           IP literal (port or 8448)                   none              server name
2           hostname with explicit port                 hostname          server name
3.1         well-known -> IP literal                    none              delegated name
3.2         well-known -> hostname with port            delegated host    delegated name
3.3 - 3.5   well-known -> hostname: SRV fed, SRV, 8448  delegated host    delegated host
4 - 6       no well-known: SRV fed, SRV, 8448           hostname          hostname
==========  ==========================================  ================  =================

Overrides (LAN peers found by mDNS) bypass all of this. Every answer is cached (DNS by
its TTL, well-known by its cache headers) in bounded LRU caches; on a DNS failure an
expired answer is used if one is left.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import random
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import aiohttp
import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from node.federation.common import Destination, Unreachable, is_mdns_name
from node.ids import ServerName

log = logging.getLogger(__name__)

DEFAULT_PORT = 8448
WELL_KNOWN_PATH = "/.well-known/matrix/server"
WELL_KNOWN_DEFAULT_CACHE = 24 * 3600.0  # spec: "the recommended sensible default"
WELL_KNOWN_MAX_CACHE = 48 * 3600.0  # spec: "48 hours is recommended"
WELL_KNOWN_MIN_CACHE = 300.0  # ours: no-cache or max-age=0 must not mean a fetch per request
WELL_KNOWN_ERROR_CACHE = 300.0  # first failure; doubles per repeated failure ...
WELL_KNOWN_MAX_ERROR_CACHE = 3600.0  # ... up to the spec's "up to an hour"
WELL_KNOWN_MAX_BYTES = 50 * 1024
WELL_KNOWN_MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DNS_MIN_TTL = 30.0
DNS_MAX_TTL = 3600.0
DNS_NEGATIVE_TTL = 300.0  # when an empty answer carries no SOA
DNS_MAX_STALE = 24 * 3600.0  # how long an expired answer may stand in for a failed look-up
SYSTEM_ADDRESS_TTL = 60.0  # getaddrinfo gives no TTL
SERVICES = ("_matrix-fed._tcp", "_matrix._tcp")  # step 3.3 / 4, then deprecated 3.4 / 5

K = TypeVar("K")
V = TypeVar("V")


# -- pure parts ------------------------------------------------------------------------


def parse_server_name(text: object, what: str = "server name") -> ServerName:
    """A server name per the appendices' grammar with a port in 1..65535; ValueError if not."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string, not {type(text).__name__}")
    try:
        name = ServerName.parse(text)
    except ValueError as e:
        raise ValueError(f"invalid {what}: {e}") from None
    if name.port is not None and not 1 <= name.port <= 65535:
        raise ValueError(f"invalid {what} {text!r}: the port must be 1 to 65535")
    return name


def parse_nameserver(text: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address -> (ip, port)."""
    host, port = text.strip(), "53"
    if host.startswith("["):
        host, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"nameserver {text!r}: expected [IPv6]:PORT")
        port = rest[1:] or "53"
    elif host.count(":") == 1:
        host, port = host.split(":")
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(
            f"nameserver {text!r} is not an IP address with an optional port"
        ) from None
    if not 1 <= number <= 65535:
        raise ValueError(f"nameserver {text!r}: the port must be 1 to 65535")
    return str(address), number


class SrvRecord(NamedTuple):
    priority: int
    weight: int
    port: int
    target: str  # without the trailing dot; "." means "no service here"


def order_srv(records: Iterable[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    """RFC 2782 order: lowest priority first; within a priority, a weighted random
    order (each pick chosen with probability weight / remaining total weight, weight-0
    records placed first so they keep a small chance)."""
    by_priority: dict[int, list[SrvRecord]] = {}
    for record in records:
        by_priority.setdefault(record.priority, []).append(record)
    ordered: list[SrvRecord] = []
    for priority in sorted(by_priority):
        group = sorted(by_priority[priority], key=lambda r: r.weight != 0)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total)
            running = 0
            for i, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(i))
                    break
    return ordered


def parse_well_known(body: bytes) -> ServerName:
    """The delegated server name from a ``/.well-known/matrix/server`` body; ValueError
    for anything that is not a JSON object with a valid ``m.server``."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ValueError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body is not a JSON object")
    if "m.server" not in data:
        raise ValueError("the body has no 'm.server'")
    return parse_server_name(data["m.server"], "'m.server'")


def well_known_cache_period(headers: Mapping[str, str], now: float) -> float:
    """Seconds to cache a valid well-known response: Cache-Control max-age, else Expires
    (against Date, else ``now``, wall-clock seconds), else 24 h; bounded to 5 min..48 h."""
    directives: dict[str, str] = {}
    for part in headers.get("Cache-Control", "").split(","):
        key, _, value = part.strip().partition("=")
        directives[key.strip().lower()] = value.strip().strip('"')
    period = WELL_KNOWN_DEFAULT_CACHE
    if "no-store" in directives or "no-cache" in directives:
        period = 0.0
    elif "max-age" in directives:
        try:
            period = float(int(directives["max-age"]))
        except ValueError:
            period = 0.0
    elif "Expires" in headers:
        expires = _http_date(headers["Expires"])
        date = _http_date(headers.get("Date", ""))
        period = 0.0 if expires is None else expires - (date if date is not None else now)
    return min(max(period, WELL_KNOWN_MIN_CACHE), WELL_KNOWN_MAX_CACHE)


def well_known_error_period(failures: int) -> float:
    """Seconds to cache the n-th consecutive failure: 5 min, doubling, at most 1 h."""
    return min(WELL_KNOWN_ERROR_CACHE * 2 ** max(failures - 1, 0), WELL_KNOWN_MAX_ERROR_CACHE)


def _http_date(text: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _dns_ttl(ttl: float) -> float:
    return min(max(float(ttl), DNS_MIN_TTL), DNS_MAX_TTL)


def _negative_ttl(responses: Iterable[dns.message.Message | None]) -> float:
    """RFC 2308: an empty answer lives min(SOA TTL, SOA minimum) of the authority SOA."""
    for response in responses:
        for rrset in response.authority if response is not None else ():
            if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                return _dns_ttl(min(rrset.ttl, rrset[0].minimum))
    return DNS_NEGATIVE_TTL


def _lan_destination(server_name: str, address: str, port: int, what: str) -> Destination:
    """A LAN peer's address as a destination: Host is the server name, no SNI."""
    parse_server_name(server_name)
    ip = _ip_literal(address)
    if ip is None:
        raise ValueError(f"{what} address {address!r} is not an IP address")
    if not 1 <= port <= 65535:
        raise ValueError(f"{what} port {port} is not 1 to 65535")
    return Destination(server_name, ip, port, None, server_name)


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class TTLCache(Generic[K, V]):
    """A bounded LRU map whose entries expire; expired entries stay (until pushed out)
    so a failed look-up can fall back to them."""

    def __init__(self, clock: Callable[[], float], max_entries: int) -> None:
        self._clock = clock
        self._max = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, *, max_stale: float = 0.0) -> V | None:
        """The value if it expired no more than ``max_stale`` seconds ago."""
        entry = self._entries.get(key)
        if entry is None or entry[0] + max_stale <= self._clock():
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: K, value: V, ttl: float) -> None:
        self._entries[key] = (self._clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


# -- the resolver ----------------------------------------------------------------------


class _DnsFailure(Exception):
    """The DNS servers did not answer usefully (SERVFAIL, timeout, refused...)."""


@dataclass(frozen=True, slots=True)
class _WellKnown:
    server: ServerName | None  # None: the fetch failed
    failures: int = 0


class Resolver:
    """Implements node.federation.common.ServerResolver."""

    def __init__(
        self,
        *,
        nameservers: Sequence[str] = (),
        ssl_context_for: Callable[[str], ssl.SSLContext | bool] | None = None,
        well_known_port: int = 443,
        clock: Callable[[], float] = time.monotonic,
        well_known_timeout: float = 10.0,
        dns_timeout: float = 5.0,
        max_cache_entries: int = 4096,
    ) -> None:
        self._nameservers = [parse_nameserver(ns) for ns in nameservers]
        self._ssl_context_for = ssl_context_for or _default_ssl_context
        self._well_known_port = well_known_port
        self._clock = clock
        self._well_known_timeout = well_known_timeout
        self._dns_timeout = dns_timeout
        self._rng = random.Random()
        self._overrides: dict[str, Destination] = {}
        self._fallbacks: dict[str, Destination] = {}
        self._well_known: TTLCache[str, _WellKnown] = TTLCache(clock, max_cache_entries)
        self._srv: TTLCache[str, list[SrvRecord]] = TTLCache(clock, max_cache_entries)
        self._addresses: TTLCache[str, str] = TTLCache(clock, max_cache_entries)
        self._inflight: dict[str, asyncio.Task[ServerName | None]] = {}
        self._dns: dns.asyncresolver.Resolver | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- public interface

    async def resolve(self, server_name: str) -> Destination:
        override = self._overrides.get(server_name)
        if override is not None:
            return override
        fallback = self._fallbacks.get(server_name)
        if fallback is None:
            return await self._resolve(server_name)
        if is_mdns_name(parse_server_name(server_name).host):
            return fallback  # RFC 6762: .local names are never asked of unicast DNS
        try:
            return await self._resolve(server_name)
        except Unreachable:
            return fallback

    async def _resolve(self, server_name: str) -> Destination:
        name = parse_server_name(server_name)
        host, port = name.host, name.port
        # 1. An IP literal: that address, the given port or 8448; no SNI.
        if name.is_ip_literal:
            address = str(ipaddress.ip_address(host))
            return Destination(server_name, address, port or DEFAULT_PORT, None, server_name)
        # 2. A hostname with an explicit port: its address; Host is the whole server name.
        if port is not None:
            address = await self.lookup_address(host)
            return Destination(server_name, address, port, host, server_name)
        # 3. /.well-known/matrix/server on the hostname.
        delegated = await self._delegation(host)
        if delegated is None:
            # 4.-6. No (valid) well-known: SRV on the hostname, then port 8448.
            return await self._via_srv(server_name, host)
        d_host, d_port = delegated.host, delegated.port
        # 3.1 Delegated to an IP literal: Host is the delegated name; no SNI.
        if delegated.is_ip_literal:
            address = str(ipaddress.ip_address(d_host))
            return Destination(server_name, address, d_port or DEFAULT_PORT, None, delegated.name)
        # 3.2 Delegated hostname with a port: Host is "<delegated_hostname>:<port>".
        if d_port is not None:
            address = await self.lookup_address(d_host)
            return Destination(server_name, address, d_port, d_host, delegated.name)
        # 3.3-3.5 Delegated hostname alone: SRV on it, then 8448; Host is that hostname.
        return await self._via_srv(server_name, d_host)

    def set_override(self, server_name: str, address: str, port: int) -> None:
        """Send ``server_name``'s traffic to ``address:port`` (a LAN peer found by mDNS),
        bypassing discovery: Host is the server name, no SNI."""
        self._overrides[server_name] = _lan_destination(server_name, address, port, "override")

    def clear_override(self, server_name: str) -> None:
        self._overrides.pop(server_name, None)

    def set_fallback(self, server_name: str, address: str, port: int) -> None:
        """Where a LAN peer that is not alive right now was last seen: tried when DNS
        finds nothing for ``server_name`` (at once for a ``.local`` name), so a node
        that (re)starts cut off, or before discovery has checked its peers again, can
        still answer a peer that reaches it first."""
        self._fallbacks[server_name] = _lan_destination(server_name, address, port, "fallback")

    def clear_fallback(self, server_name: str) -> None:
        self._fallbacks.pop(server_name, None)

    async def lookup_address(self, host: str) -> str:
        """An IP address for ``host`` (A records first, then AAAA) through the configured
        nameservers, else getaddrinfo; raises Unreachable when there is none."""
        literal = _ip_literal(host)
        if literal is not None:
            return literal
        address = self._addresses.get(host)  # "" caches "no such name"
        if address is None:
            try:
                address, ttl = await self._lookup_uncached(host)
            except _DnsFailure as e:
                address = self._addresses.get(host, max_stale=DNS_MAX_STALE)
                if not address:
                    raise Unreachable(f"{host}: address look-up failed: {e}") from None
                log.info("address look-up for %s failed (%s); using the expired answer", host, e)
                return address
            self._addresses.put(host, address, ttl)
        if not address:
            raise Unreachable(f"{host}: no A or AAAA record")
        return address

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        self._inflight.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- SRV (steps 3.3-3.5 and 4-6)

    async def _via_srv(self, server_name: str, host: str) -> Destination:
        for service in SERVICES:
            records = await self._srv_records(f"{service}.{host}")
            if records:
                return await self._from_srv(server_name, host, records)
        address = await self.lookup_address(host)
        return Destination(server_name, address, DEFAULT_PORT, host, host)

    async def _from_srv(self, server_name: str, host: str, records: list[SrvRecord]) -> Destination:
        usable = [r for r in records if r.target not in ("", ".")]
        if not usable:
            raise Unreachable(f"{server_name}: its SRV record says there is no service")
        errors = []
        for record in order_srv(usable, self._rng):
            try:
                address = await self.lookup_address(record.target)
            except Unreachable as e:
                errors.append(str(e))
                continue
            return Destination(server_name, address, record.port, host, host)
        raise Unreachable(f"{server_name}: no SRV target could be resolved: {'; '.join(errors)}")

    async def _srv_records(self, qname: str) -> list[SrvRecord]:
        cached = self._srv.get(qname)
        if cached is not None:
            return cached
        try:
            rdatas, ttl = await self._query(qname, dns.rdatatype.SRV)
        except _DnsFailure as e:
            stale = self._srv.get(qname, max_stale=DNS_MAX_STALE)
            log.info("SRV look-up for %s failed (%s)", qname, e)
            return stale or []  # not cached: the next look-up asks again
        records = [
            SrvRecord(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))
            for r in rdatas
        ]
        self._srv.put(qname, records, ttl)
        return records

    # -- addresses

    async def _lookup_uncached(self, host: str) -> tuple[str, float]:
        if not self._nameservers:
            return await self._getaddrinfo(host), SYSTEM_ADDRESS_TTL
        ttls = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            rdatas, ttl = await self._query(host, rdtype)
            if rdatas:
                return str(rdatas[0].address), ttl
            ttls.append(ttl)
        return "", min(ttls)

    async def _getaddrinfo(self, host: str) -> str:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
                return ""
            raise _DnsFailure(str(e)) from None
        except (OSError, UnicodeError) as e:
            raise _DnsFailure(str(e)) from None
        infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first
        return str(infos[0][4][0]) if infos else ""

    # -- DNS

    def _dns_resolver(self) -> dns.asyncresolver.Resolver:
        if self._dns is None:
            if self._nameservers:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [
                    dns.nameserver.Do53Nameserver(ip, port) for ip, port in self._nameservers
                ]
            else:
                try:
                    resolver = dns.asyncresolver.Resolver()  # /etc/resolv.conf
                except dns.exception.DNSException as e:
                    raise _DnsFailure(f"no system DNS configuration: {e}") from None
            resolver.timeout = min(self._dns_timeout, 2.0)
            resolver.lifetime = self._dns_timeout
            self._dns = resolver
        return self._dns

    async def _query(self, qname: str, rdtype: dns.rdatatype.RdataType) -> tuple[list[Any], float]:
        """The records of ``qname`` (empty when the name or type does not exist) and how
        long to cache them; _DnsFailure when the servers do not say."""
        try:
            answer = await self._dns_resolver().resolve(
                dns.name.from_text(qname), rdtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN as e:
            return [], _negative_ttl(e.responses().values())
        except (dns.exception.DNSException, OSError, ValueError) as e:
            raise _DnsFailure(f"{type(e).__name__}: {e}") from None
        if answer.rrset is None:
            return [], _negative_ttl([answer.response])
        return list(answer.rrset), _dns_ttl(min(r.ttl for r in answer.response.answer))

    # -- /.well-known/matrix/server (step 3)

    async def _delegation(self, host: str) -> ServerName | None:
        cached = self._well_known.get(host)
        if cached is not None:
            return cached.server
        task = self._inflight.get(host)
        if task is None:
            task = asyncio.create_task(self._refresh_well_known(host))
            self._inflight[host] = task
            task.add_done_callback(
                lambda done: self._inflight.pop(host) if self._inflight.get(host) is done else None
            )
        return await asyncio.shield(task)

    async def _refresh_well_known(self, host: str) -> ServerName | None:
        try:
            server, period = await self._fetch_well_known(host)
        except _WellKnownError as e:
            previous = self._well_known.get(host, max_stale=float("inf"))
            failures = (previous.failures if previous is not None else 0) + 1
            period = well_known_error_period(failures)
            log.info("no usable well-known for %s (%s); cached for %.0f s", host, e, period)
            self._well_known.put(host, _WellKnown(None, failures), period)
            return None
        log.debug("%s delegates to %s for %.0f s", host, server, period)
        self._well_known.put(host, _WellKnown(server), period)
        return server

    async def _fetch_well_known(self, host: str) -> tuple[ServerName, float]:
        try:
            url = URL.build(
                scheme="https", host=host, port=self._well_known_port, path=WELL_KNOWN_PATH
            )
            seen = {url}
            async with asyncio.timeout(self._well_known_timeout):
                for _ in range(WELL_KNOWN_MAX_REDIRECTS + 1):
                    ssl_context = self._ssl_context_for(url.host or "")
                    if ssl_context is True:
                        ssl_context = _default_ssl_context(url.host or "")
                    async with self._http().get(
                        url, allow_redirects=False, ssl=ssl_context
                    ) as response:
                        if response.status in REDIRECT_STATUSES:
                            url = _redirect_target(url, response.headers.get("Location"), seen)
                            continue
                        if response.status != 200:
                            raise _WellKnownError(f"HTTP {response.status} from {url}")
                        body = await _read_capped(response, WELL_KNOWN_MAX_BYTES)
                        server = parse_well_known(body)
                        return server, well_known_cache_period(response.headers, time.time())
        except TimeoutError:
            raise _WellKnownError(f"no answer in {self._well_known_timeout} s") from None
        except (aiohttp.ClientError, OSError, ValueError) as e:  # TLS, refused, bad body ...
            raise _WellKnownError(f"{type(e).__name__}: {e}") from None
        raise _WellKnownError(f"more than {WELL_KNOWN_MAX_REDIRECTS} redirects")

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_AddressResolver(self.lookup_address), use_dns_cache=False
            )
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, auto_decompress=True
            )
        return self._session


class _WellKnownError(Exception):
    """No usable /.well-known/matrix/server (step 3: go on with step 4)."""


def _redirect_target(url: URL, location: str | None, seen: set[URL]) -> URL:
    if not location:
        raise _WellKnownError(f"a redirect without Location from {url}")
    target = url.join(URL(location))
    if target.scheme != "https":
        raise _WellKnownError(f"a redirect to a non-HTTPS URL: {target}")
    if target in seen:
        raise _WellKnownError(f"a redirect loop at {target}")
    seen.add(target)
    return target


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise _WellKnownError(f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(8192):
        size += len(chunk)
        if size > limit:
            raise _WellKnownError(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _default_ssl_context(host: str) -> ssl.SSLContext:
    from node.federation.tls import client_ssl_context

    return client_ssl_context()


class _AddressResolver(AbstractResolver):
    """Lets aiohttp connect to a host name through the Resolver's own address look-up
    (configured nameservers and cache) while it still sends that name as SNI and Host."""

    def __init__(self, lookup: Callable[[str], Any]) -> None:
        self._lookup = lookup

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            address = await self._lookup(host)
        except Unreachable as e:
            raise OSError(str(e)) from None
        af = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=af,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None
