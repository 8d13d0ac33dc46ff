"""LAN discovery: advertise this node and browse for peers over mDNS / DNS-SD.

The record format is in node/discovery/service.py (RFC 6763 DNS-SD over RFC 6762
mDNS, via python-zeroconf's asyncio API). mDNS keeps records of a vanished host for
minutes, so liveness is the node's own check: every ``PROBE_INTERVAL_S`` it fetches
the peer's signed key document (server-server-api "Retrieving server keys",
GET /_matrix/key/v2/server) over the federation port. A peer is alive when the
document is signed by the key whose fingerprint it announced; it is lost after
``LOST_AFTER`` failed checks in a row (about 5.5-7.5 s) and alive again at the first
good one (a peer not alive is checked every ``LOST_INTERVAL_S``, or as soon as the
last check timed out). While alive its server name resolves to its LAN
address ahead of DNS (LazyResolver.set_override) and the federation sender retries
it at once (FederationSender.peer_is_back); when lost, the sender gives up the request
in flight to it (FederationSender.peer_is_lost) and its name falls back to its last
LAN address when DNS knows nothing of it (LazyResolver.set_fallback). Peers pinned in
earlier runs are checked from the start, at their last addresses, before mDNS hears
of them again.

Trust (node/discovery/registry.py): an announcement naming a pinned server with
another key is refused and reported, whatever its instance name (mDNS renames a
service whose name is taken, RFC 6762 section 9, e.g. ``host1.local-2``: the TXT
``sn`` is what counts); nothing from it is used, and the keyring accepts only the
pinned key for that name (KeyRing.pins, node/federation/keyring.py). While refused
announcements are held, their names' pins are read again every ``TRUST_POLL_S``:
when `croft peers trust` has pinned the refused key, the peer is checked at the
addresses it announced, and the keyring forgets what it knew of the name.

zeroconf is imported only here (through mdns.py), and this module only when discovery
is enabled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp

from node.discovery.mdns import (
    AsyncServiceBrowser,
    AsyncServiceInfo,
    AsyncZeroconf,
    InterfaceChoice,
    IPVersion,
    ServiceStateChange,
)
from node.discovery.registry import KeyConflict, PeerRegistry
from node.discovery.service import (
    SERVICE_TYPE,
    Announcement,
    InvalidRecord,
    build_txt,
    instance_name,
    key_fingerprint,
    parse_txt,
)
from node.events.signing import decode_verify_key_base64, verify_json
from node.federation.keys import ServerKey

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 2.0
LOST_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 1.5
LOST_AFTER = 3
RESOLVE_TIMEOUT_MS = 3000
TRUST_POLL_S = 1.0

# What to do with a resolved record (see :func:`judge`).
IGNORE, REFUSE, CHECK = "ignore", "refuse", "check"


class Resolver(Protocol):
    def set_override(self, server_name: str, address: str, port: int) -> None: ...
    def clear_override(self, server_name: str) -> None: ...
    def set_fallback(self, server_name: str, address: str, port: int) -> None: ...


class Sender(Protocol):
    def peer_is_back(self, destination: str) -> None: ...
    def peer_is_lost(self, destination: str) -> None: ...


class Keys(Protocol):
    """The keyring (node/federation/keyring.py): its LAN pin hook, and forgetting."""

    pins: Callable[[str], tuple[str, str] | None] | None

    async def forget(self, server_name: str) -> None: ...


class ProbeFailed(Exception):
    """The peer did not answer with a key document matching its announcement."""


def own_addresses(interfaces: tuple[str, ...]) -> list[str]:
    """This host's IPv4 addresses to announce: those named, else every non-loopback one
    (loopback only when there is nothing else)."""
    if interfaces:
        return list(interfaces)
    import ifaddr  # a dependency of zeroconf

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and ip.ip not in found:
                found.append(ip.ip)
    outside = [a for a in found if not a.startswith("127.")]
    return outside or found


def _mdns_host(server_name: str) -> str:
    """The host name in the SRV record: the server name itself when it is .local."""
    host = server_name.rsplit(":", 1)[0] if not server_name.endswith("]") else server_name
    if host.endswith(".local"):
        return host + "."
    return host.replace(".", "-") + ".local."


def judge(own_name: str, instance: str, a: Announcement, pin: tuple[str, str] | None) -> str:
    """What to do with the record of service instance ``instance`` announcing ``a``,
    given the pin of ``a.server_name``: :data:`CHECK` it, :data:`REFUSE` it (a pinned
    name with another key, under any instance name), or :data:`IGNORE` it (ourselves,
    or a record under another instance name than the server's own that names an
    unknown server or the pinned key)."""
    if a.server_name == own_name:
        return IGNORE
    if pin is not None and pin != (a.key_id, a.fingerprint):
        return REFUSE
    return CHECK if instance_name(a.server_name) == instance else IGNORE


def check_key_document(doc: Any, a: Announcement) -> str:
    """Check a GET /_matrix/key/v2/server answer against an announcement; return the
    verify key (unpadded base64). Raises :class:`ProbeFailed`."""
    if not isinstance(doc, dict) or doc.get("server_name") != a.server_name:
        raise ProbeFailed("key document for another server")
    entry = (doc.get("verify_keys") or {}).get(a.key_id)
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise ProbeFailed(f"key document lacks {a.key_id}")
    try:
        if key_fingerprint(entry["key"]) != a.fingerprint:
            raise ProbeFailed("the key does not match the announced fingerprint")
        alg, _, version = a.key_id.partition(":")
        verify_json(doc, a.server_name, decode_verify_key_base64(alg, version, entry["key"]))
    except ProbeFailed:
        raise
    except Exception as e:  # bad base64, bad signature: the peer is not who it says
        raise ProbeFailed(f"key document does not verify: {e}") from None
    return str(entry["key"])


class _Peer:
    """One announced peer being checked."""

    def __init__(
        self, a: Announcement, addresses: tuple[str, ...], instance: str | None = None
    ) -> None:
        self.announcement = a
        self.addresses = addresses
        # the DNS-SD instance it was heard under: its goodbye means it left
        self.instance = instance or instance_name(a.server_name)
        self.failures = 0
        self.alive_at: str | None = None  # the address that answered the last check
        self.task: asyncio.Task[None] | None = None


class LanDiscovery:
    def __init__(
        self,
        server_key: ServerKey,
        federation_port: int,
        registry: PeerRegistry,
        resolver: Resolver | None,
        sender: Sender | None,
        interfaces: tuple[str, ...] = (),
        keys: Keys | None = None,
    ) -> None:
        self.server_key = server_key
        self.server_name = server_key.server_name
        self.port = federation_port
        self.registry = registry
        self.resolver = resolver
        self.sender = sender
        self.interfaces = interfaces
        self.keys = keys
        if keys is not None:
            keys.pins = registry.pin
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._announcing: asyncio.Task[None] | None = None
        self._registered = False
        self._peers: dict[str, _Peer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reported: set[tuple[str, str]] = set()
        # server name -> its last refused announcement: addresses, instance name
        self._refused: dict[str, tuple[Announcement, tuple[str, ...], str]] = {}
        self._watching: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, *, mdns: bool = True) -> None:
        """Load the registry, check the known peers, announce and browse. Without
        ``mdns`` (tests on loopback) nothing is announced or browsed."""
        await self.registry.load()
        # The peers known from earlier runs are checked at once at their last addresses
        # (mDNS may take long to hear of them again, e.g. after a restart while cut
        # off); until then their server names fall back to those addresses.
        for known in self.registry.peers():
            a = Announcement(known.server_name, known.port, known.key_id, known.fingerprint)
            self._fallback(known.server_name, known.addresses, known.port)
            self._peers[known.server_name] = _Peer(a, known.addresses)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # A LAN peer's identity is its signing key, checked in check_key_document.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, force_close=True),
            timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S),
        )
        if mdns:
            self._start_mdns()
        for peer in self._peers.values():
            if peer.task is None:
                peer.task = asyncio.get_running_loop().create_task(self._probe_loop(peer))

    def _start_mdns(self) -> None:
        choice: Any = list(self.interfaces) if self.interfaces else InterfaceChoice.All
        self._zc = AsyncZeroconf(interfaces=choice, ip_version=IPVersion.V4Only)
        a = Announcement(
            self.server_name,
            self.port,
            self.server_key.key_id,
            key_fingerprint(self.server_key.verify_key_base64),
        )
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            instance_name(self.server_name),
            addresses=[socket.inet_aton(x) for x in own_addresses(self.interfaces)],
            port=self.port,
            properties=build_txt(a),
            server=_mdns_host(self.server_name),
        )
        # Registration probes the name for ~1.5 s first (RFC 6762 8.1): the node does
        # not wait for it; browsing and checks of known peers start now.
        self._announcing = asyncio.get_running_loop().create_task(self._announce())
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change]
        )

    async def _announce(self) -> None:
        assert self._zc is not None and self._info is not None
        try:
            await (await self._zc.async_register_service(self._info))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # another host holds this name: browse anyway
            log.error("discovery: cannot announce %s: %s", self.server_name, e)
            return
        self._registered = True
        log.info("discovery: announcing %s as %s", self.server_name, SERVICE_TYPE)

    async def stop(self) -> None:
        # The announcement, the pin watch and the checks stop; resolutions under way
        # (bounded by RESOLVE_TIMEOUT_MS) finish.
        cancelled = [self._announcing, self._watching, *(p.task for p in self._peers.values())]
        for task in cancelled:
            if task is not None:
                task.cancel()
        for task in [*cancelled, *self._tasks]:
            if task is None:
                continue
            try:
                await task
            except BaseException:
                pass
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            if self._registered and self._info is not None:
                await (await self._zc.async_unregister_service(self._info))
            await self._zc.async_close()
        if self._session is not None:
            await self._session.close()
        if self.resolver is not None:
            for name in self._peers:
                self.resolver.clear_override(name)

    # -- browsing (zeroconf calls handlers synchronously: start tasks, keep them)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_change(
        self,
        zeroconf: Any,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            self._spawn(self._removed(name))
        else:
            self._spawn(self._resolve(name))

    async def _resolve(self, name: str) -> None:
        assert self._zc is not None
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(self._zc.zeroconf, RESOLVE_TIMEOUT_MS):
            return
        try:
            a = parse_txt(info.properties)
        except InvalidRecord as e:
            log.debug("discovery: ignoring %s: %s", name, e)
            return
        verdict = judge(self.server_name, name, a, self.registry.pin(a.server_name))
        if verdict == IGNORE:
            return
        addresses = tuple(info.parsed_addresses(IPVersion.V4Only))
        if not addresses:
            return
        if verdict == REFUSE:
            await self._report(a, addresses, name)
            return
        peer = self._peers.get(a.server_name)
        if peer is None:
            peer = self._peers[a.server_name] = _Peer(a, addresses)
        peer.announcement, peer.addresses = a, addresses
        if peer.task is None or peer.task.done():
            peer.task = asyncio.get_running_loop().create_task(self._probe_loop(peer))

    async def _removed(self, name: str) -> None:
        """An mDNS goodbye (the peer stops): lost at once. It is still checked (every
        ``LOST_INTERVAL_S``), so that its return is noticed even when its next
        announcement is not heard (a restart while our link was down)."""
        for server_name, peer in list(self._peers.items()):
            if peer.instance == name:
                peer.alive_at = None
                peer.failures = max(peer.failures, LOST_AFTER)
                await self._lost(server_name)

    async def _report(self, a: Announcement, addresses: tuple[str, ...], instance: str) -> None:
        self._refused[a.server_name] = (a, addresses, instance)
        if self._watching is None or self._watching.done():
            self._watching = asyncio.get_running_loop().create_task(self._watch_pins())
        if (a.server_name, a.fingerprint) in self._reported:
            return
        self._reported.add((a.server_name, a.fingerprint))
        await self.registry.report_conflict(a, addresses)

    # -- trust: `croft peers trust` changes a pin in the database

    async def _watch_pins(self) -> None:
        while self._refused:
            await asyncio.sleep(TRUST_POLL_S)
            try:
                stored = await self.registry.stored_pins(list(self._refused))
            except Exception as e:  # the database is busy or closing: try again
                log.debug("discovery: cannot read the pins: %s", e)
                continue
            for server_name in list(self._refused):
                if stored.get(server_name) == self.registry.pin(server_name):
                    continue
                try:
                    await self._pin_changed(server_name)
                except Exception:  # a bug: log it, the watch goes on
                    log.exception("discovery: taking up the new pin of %s failed", server_name)

    async def _pin_changed(self, server_name: str) -> None:
        """The owner changed ``server_name``'s pin: stop checking the old key holder,
        forget its keys, and check the refused announcement if it holds the new key."""
        old = self._peers.pop(server_name, None)
        if old is not None and old.task is not None:
            old.task.cancel()
        pinned = await self.registry.reload(server_name)
        if self.keys is not None:
            await self.keys.forget(server_name)
        if self.resolver is not None:
            self.resolver.clear_override(server_name)
        if self.sender is not None:
            self.sender.peer_is_lost(server_name)
        a, addresses, instance = self._refused[server_name]
        try:
            self.registry.check(a)
        except KeyConflict:  # pinned to yet another key: check that one where it was
            if pinned is not None:
                a = Announcement(server_name, pinned.port, pinned.key_id, pinned.fingerprint)
                self._check(_Peer(a, pinned.addresses))
            return
        del self._refused[server_name]
        self._reported.discard((server_name, a.fingerprint))
        log.info("discovery: %s is trusted with key %s %s", server_name, a.key_id, a.fingerprint)
        self._fallback(server_name, addresses, a.port)
        self._check(_Peer(a, addresses, instance))

    def _check(self, peer: _Peer) -> None:
        self._peers[peer.announcement.server_name] = peer
        peer.task = asyncio.get_running_loop().create_task(self._probe_loop(peer))

    # -- liveness

    async def _probe_loop(self, peer: _Peer) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self._probe_once(peer)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # one failed check; the loop goes on
                log.debug("discovery: check of %s failed: %s", peer.announcement.server_name, e)
            # A check every PROBE_INTERVAL_S, however long the last one took; a peer
            # not alive is checked more often, so that its return is noticed sooner.
            interval = PROBE_INTERVAL_S if peer.alive_at is not None else LOST_INTERVAL_S
            await asyncio.sleep(max(0.0, started + interval - loop.time()))

    async def _probe_once(self, peer: _Peer) -> None:
        a = peer.announcement
        for address in peer.addresses:
            try:
                verify_key = await self._fetch_key(address, a)
            except (TimeoutError, ProbeFailed, aiohttp.ClientError, OSError) as e:
                log.debug("discovery: %s at %s: %s", a.server_name, address, e)
                continue
            failed_before, peer.failures = peer.failures, 0
            try:
                came_alive = await self.registry.mark_alive(a, peer.addresses, verify_key)
            except KeyConflict:
                await self._report(a, peer.addresses, peer.instance)
                return
            if came_alive:
                log.info("discovery: %s is alive at %s:%d", a.server_name, address, a.port)
            if came_alive or address != peer.alive_at:
                peer.alive_at = address
                if self.resolver is not None:
                    self.resolver.set_override(a.server_name, address, a.port)
                    self._fallback(a.server_name, (address,), a.port)
            if (came_alive or failed_before) and self.sender is not None:
                self.sender.peer_is_back(a.server_name)
            return
        peer.failures += 1
        if peer.failures >= LOST_AFTER:
            peer.alive_at = None
            await self._lost(a.server_name)

    async def _fetch_key(self, address: str, a: Announcement) -> str:
        assert self._session is not None
        url = f"https://{address}:{a.port}/_matrix/key/v2/server"
        async with self._session.get(url, headers={"Host": a.server_name}) as resp:
            if resp.status != 200:
                raise ProbeFailed(f"HTTP {resp.status}")
            body = await resp.read()
        try:
            doc = json.loads(body)
        except ValueError:
            raise ProbeFailed("not JSON") from None
        return check_key_document(doc, a)

    async def _lost(self, server_name: str) -> None:
        if await self.registry.mark_lost(server_name):
            log.info("discovery: %s is lost", server_name)
            if self.resolver is not None:
                self.resolver.clear_override(server_name)
            if self.sender is not None:
                self.sender.peer_is_lost(server_name)

    def _fallback(self, server_name: str, addresses: tuple[str, ...], port: int) -> None:
        if self.resolver is not None and addresses:
            try:
                self.resolver.set_fallback(server_name, addresses[0], port)
            except ValueError as e:  # a stored row from an older run that does not parse
                log.debug("discovery: no fallback for %s: %s", server_name, e)
