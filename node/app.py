"""Assembling the node: shared services, the two aiohttp applications, and serving.

The client API (plain HTTP, loopback by default) and the federation API (TLS) are
separate applications on separate listeners; both hold the same :class:`Node`
under the ``NODE`` AppKey. Start-up order: database (migrations) -> keys ->
services -> listeners; shutdown is the reverse, and queued database writes finish
before the database closes.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from node import errors
from node.accounts import AccountService
from node.appkeys import NODE
from node.config import Config, ListenAddress
from node.datadir import OLD_KEYS_FILE, SIGNING_KEY_FILE, remove_run_file, write_run_file
from node.directory.service import DirectoryService
from node.directory.store import DirectoryStore
from node.e2ee.service import E2EEService
from node.ephemeral.presence import PresenceService
from node.ephemeral.receipt_store import ReceiptStore
from node.ephemeral.receipts import ReceiptService
from node.ephemeral.sync import EphemeralSyncExtension
from node.ephemeral.typing import TypingService
from node.federation.client import FederationClient
from node.federation.common import LazyResolver
from node.federation.keyring import KeyRing
from node.federation.keys import ServerKey, load_server_key
from node.federation.outbound_edus import OutboundEdus
from node.federation.queries import RemoteQueries
from node.federation.remote_e2ee import RemoteE2EE
from node.federation.sender import FederationSender
from node.history.cache import HistoryCache
from node.media.service import MediaService
from node.push.service import PushService
from node.push.store import PushStore
from node.push.sync import PushSyncExtension, publish_push_rules
from node.relations.service import RelationsService, ignored_users_from
from node.relations.store import RelationsStore
from node.rooms.context import ContextService
from node.rooms.service import RoomService
from node.search.indexer import SearchIndexer
from node.search.service import SearchService
from node.search.store import SearchStore
from node.storage.account_data import AccountDataStore
from node.storage.accounts import AccountStore
from node.storage.database import Database
from node.storage.events import EventStore
from node.storage.filters import FilterStore
from node.storage.profiles import ProfileStore
from node.storage.state import StateStore
from node.sync.notifier import Notifier
from node.sync.service import SyncService
from node.users.account_data import AccountDataService
from node.users.account_data_sync import AccountDataSync
from node.users.filters import FilterService
from node.users.profile import ProfileService

if TYPE_CHECKING:
    from node.events.pdu import Event, StateKey
    from node.federation.backfill import Backfiller
    from node.federation.edus import EduHandler
    from node.federation.joins import RemoteMembership
    from node.federation.pdus import PduReceiver

log = logging.getLogger(__name__)
T = TypeVar("T")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ListenError(Exception):
    """A listener could not be opened (port in use, no permission, bad address)."""


@dataclass
class Node:
    """The services of one running homeserver, shared by both applications."""

    config: Config
    db: Database
    server_key: ServerKey
    accounts: AccountService
    events: EventStore
    states: StateStore
    rooms: RoomService
    notifier: Notifier
    sync: SyncService
    push: PushService
    media: MediaService
    account_data: AccountDataService
    filters: FilterService
    profiles: ProfileService
    e2ee: E2EEService
    typing: TypingService
    receipts: ReceiptService
    presence: PresenceService
    relations: RelationsService
    context: ContextService
    search: SearchService
    directory: DirectoryService
    federation_client: FederationClient
    keyring: KeyRing
    started_at: float = field(default_factory=time.time)
    # Set once the node is assembled (they take the node itself).
    history: HistoryCache = field(init=False)  # budgets, eviction, evicted history again
    federation_sender: FederationSender = field(init=False)
    remote_e2ee: RemoteE2EE = field(init=False)
    outbound_edus: OutboundEdus = field(init=False)
    # The receiving side of federation, made on first use with its modules (PDUs, state
    # resolution, backfill, joins, EDUs: ~1 MiB that a node nobody federates with never
    # loads). See the properties below.
    _made: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def _once(self, name: str, make: Callable[[], T]) -> T:
        if name not in self._made:
            self._made[name] = make()
        made: T = self._made[name]
        return made

    @property
    def pdu_receiver(self) -> PduReceiver:
        from node.federation.pdus import PduReceiver

        return self._once("pdu_receiver", lambda: PduReceiver(self))

    @property
    def backfiller(self) -> Backfiller:
        """History for /messages from other servers."""
        from node.federation.backfill import Backfiller

        return self._once("backfiller", lambda: Backfiller(self))

    @property
    def remote_rooms(self) -> RemoteMembership:
        from node.federation.joins import RemoteMembership

        return self._once("remote_rooms", lambda: RemoteMembership(self))

    @property
    def edu_handler(self) -> EduHandler:
        """Inbound EDUs (PUT /send)."""
        from node.federation.edus import EduHandler

        return self._once(
            "edu_handler",
            lambda: EduHandler(
                self.db, self.events, self.typing, self.receipts, self.presence, self.remote_e2ee
            ),
        )

    @classmethod
    async def start(cls, config: Config) -> Node:
        server_key = load_server_key(
            config.server_name, config.path(SIGNING_KEY_FILE), config.path(OLD_KEYS_FILE)
        )
        db = await Database.open(config.database_path, cache_kib=config.storage.sqlite_cache_kib)
        try:
            accounts = AccountService(AccountStore(db), config.server_name)
            events = EventStore(db)
            notifier = Notifier()
            notifier.set_initial("events", await events.max_stream_ordering())
            states = StateStore(db)
            await states.start()
            rooms = RoomService(db, events, server_key, notifier, states)
            sync = SyncService(events, notifier)
            account_data_store = AccountDataStore(db)
            notifier.set_initial("account_data", await account_data_store.max_stream_id())
            account_data = AccountDataService(account_data_store, notifier)
            sync.extensions.append(AccountDataSync(account_data_store, account_data.computed))
            filters = FilterService(FilterStore(db))
            profiles = ProfileService(
                ProfileStore(db), accounts.store, events, rooms, config.server_name
            )
            push = PushService(PushStore(db), events, config.server_name)
            rooms.on_persisted.append(push.on_event)
            accounts.on_devices_deleted.append(push.devices_deleted)
            await push.sweep_gone_devices()
            publish_push_rules(push, account_data)
            media = MediaService(config, db)
            await media.start()
            e2ee = await E2EEService.start(db, events, notifier, config.server_name)
            sync.extensions.append(e2ee.sync_extension())
            accounts.on_devices_deleted.append(e2ee.devices_deleted)
            typing = TypingService(notifier)
            receipt_store = ReceiptStore(db)
            notifier.set_initial("receipts", await receipt_store.max_stream_id())
            receipts = ReceiptService(receipt_store, events, notifier, push, account_data)
            presence = PresenceService(
                config.presence.enabled, notifier, events, config.server_name
            )
            rooms.on_persisted += [typing.on_event, presence.on_event]
            sync.extensions.append(EphemeralSyncExtension(typing, receipt_store, presence, events))
            # Last: it reads the rooms the others put in the response.
            sync.extensions.append(PushSyncExtension(push))
            relations = RelationsService(
                RelationsStore(db), events, ignored_users_from(account_data.get)
            )
            sync.bundle_aggregations = relations.bundle
            context = ContextService(db, events)
            indexer = SearchIndexer(db, notifier)
            search = SearchService(SearchStore(db), events, context, relations.bundle, indexer)
            directory = DirectoryService(DirectoryStore(db), events, rooms, config.server_name)

            resolver = LazyResolver(config.federation.nameservers)
            federation_client = FederationClient(
                server_key, resolver, config.federation, data_dir=config.data_dir
            )
            resolver.ssl_context_for = federation_client.well_known_context
            keyring = KeyRing(
                db, server_key, federation_client, config.federation.trusted_key_servers
            )
            node = cls(
                config=config,
                db=db,
                server_key=server_key,
                accounts=accounts,
                events=events,
                states=states,
                rooms=rooms,
                notifier=notifier,
                sync=sync,
                push=push,
                media=media,
                account_data=account_data,
                filters=filters,
                profiles=profiles,
                e2ee=e2ee,
                typing=typing,
                receipts=receipts,
                presence=presence,
                relations=relations,
                context=context,
                search=search,
                directory=directory,
                federation_client=federation_client,
                keyring=keyring,
            )
            node.federation_sender = FederationSender(
                db,
                federation_client,
                config.server_name,
                max_in_flight=config.federation.max_concurrency,
            )
            await node.federation_sender.start()
            node.federation_sender.greet(await _peers(db, events))
            rooms.sender = node.federation_sender
            node.history = HistoryCache(node)
            rooms.remote = _RemoteRooms(node)
            await _attach_edus(node)
            node.history.start()
            indexer.start()
            return node
        except BaseException:
            # A half-started node must not leave the writer thread running: the
            # process could not exit after reporting the error.
            await db.close()
            raise

    async def stop(self) -> None:
        if hasattr(self, "history"):
            await self.history.close()
        await self.outbound_edus.close()
        if self.search.indexer is not None:
            await self.search.indexer.close()
        await self.remote_e2ee.close()
        if hasattr(self, "federation_sender"):
            await self.federation_sender.close()
        self.typing.close()
        self.presence.close()
        await self.push.close()
        await self.keyring.close()
        await self.federation_client.close()
        resolver_close = getattr(self.federation_client.resolver, "close", None)
        if resolver_close is not None:
            await resolver_close()
        await self.db.close()


async def _peers(db: Database, events: EventStore) -> set[str]:
    """Every server sharing a room with a user of this server."""
    servers: set[str] = set()
    for (user_id,) in await db.fetchall("SELECT user_id FROM accounts"):
        servers |= await events.get_servers_sharing_rooms(user_id)
    return servers


async def _attach_edus(node: Node) -> None:
    """EDUs, federation queries and E2EE across servers (node/federation/edus.py,
    queries.py, remote_e2ee.py, outbound_edus.py), hooked into the local services."""
    remote_e2ee = RemoteE2EE(
        node.db, node.notifier, node.federation_client, node.config.server_name
    )
    remote_queries = RemoteQueries(node.federation_client)
    node.e2ee.keys.remote = remote_e2ee
    node.profiles.remote = remote_queries
    node.directory.remote = remote_queries
    outbound = OutboundEdus(
        node.db,
        node.events,
        node.e2ee,
        node.presence,
        node.notifier,
        node.config.server_name,
        getattr(node, "federation_sender", None),
    )
    node.typing.on_change.append(outbound.on_typing)
    node.receipts.on_receipt.append(outbound.on_receipt)
    node.presence.on_change.append(outbound.on_presence)
    node.e2ee.to_device.on_outbox.append(outbound.flush_to_device)
    node.remote_e2ee, node.outbound_edus = remote_e2ee, outbound
    await outbound.start()


class _RemoteRooms:
    """The room service's way to rooms on other servers (``RoomService.remote``):
    ``Node.remote_rooms``, made on the first remote join, knock, leave or invite."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def join(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str:
        return await self.node.remote_rooms.join(user_id, room_id, servers, content)

    async def knock(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str:
        return await self.node.remote_rooms.knock(user_id, room_id, servers, content)

    async def leave(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str:
        return await self.node.remote_rooms.leave(user_id, room_id, servers, content)

    async def invite_remote(self, event: Event, state: Mapping[StateKey, Event]) -> Event:
        return await self.node.remote_rooms.invite_remote(event, state)


# -- the client application ----------------------------------------------------------------

CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
}


def cors_middleware(allow_origin: str) -> Any:
    """Spec: client-server-api "Web Browser Clients": CORS on every response, and
    OPTIONS preflight requests answered for any path."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = allow_origin
        response.headers.update(CORS_HEADERS)
        return response

    return middleware


def create_client_app(node: Node) -> web.Application:
    from node import client_api

    app = web.Application(
        middlewares=[
            cors_middleware(node.config.client.cors_allow_origin),
            errors.error_middleware,
        ],
        # Bounds bodies read whole (JSON). Media uploads stream to disk instead, limited
        # by media.max_upload_bytes in node/media/service.py.
        client_max_size=4 * 1024**2,
    )
    app[NODE] = node
    client_api.add_routes(app)
    return app


def create_federation_app(node: Node) -> web.Application:
    from node.federation import server
    from node.federation.auth import x_matrix_middleware

    app = web.Application(
        middlewares=[
            errors.error_middleware,
            x_matrix_middleware(
                node.keyring,
                node.config.server_name,
                on_origin=node.federation_sender.peer_is_back,
            ),
        ],
        client_max_size=8 * 1024**2,
    )
    app[NODE] = node
    server.add_routes(app)
    return app


# -- serving -------------------------------------------------------------------------------


@dataclass
class RunningNode:
    node: Node
    runners: list[web.AppRunner]
    listeners: dict[str, str]
    discovery: Any = None  # node.discovery.lan.LanDiscovery when it runs
    sensors: Any = None  # node.sensors.service.SensorService when it runs

    async def stop(self) -> None:
        if self.sensors is not None:
            await self.sensors.stop()
        if self.discovery is not None:
            await self.discovery.stop()
        self.node.notifier.close()  # long-polling /sync requests answer now
        for runner in reversed(self.runners):
            await runner.cleanup()
        await self.node.stop()
        remove_run_file(self.node.config.data_dir)
        log.info("stopped")


async def _start_site(runner: web.AppRunner, name: str, addr: ListenAddress, **kw: Any) -> str:
    site = web.TCPSite(runner, addr.host, addr.port, reuse_address=True, **kw)
    try:
        await site.start()
    except OSError as e:
        reason = "address already in use" if e.errno == errno.EADDRINUSE else e.strerror or str(e)
        raise ListenError(f"{name} listener {addr}: {reason}") from None
    # With port 0 the system picks one: report the real port.
    server = site._server  # aiohttp keeps the asyncio Server here
    port = addr.port
    if server is not None and getattr(server, "sockets", None):
        port = server.sockets[0].getsockname()[1]
    return str(ListenAddress(addr.host, port))


async def serve(config: Config, *, discovery: bool = False) -> RunningNode:
    """Start the node and its listeners; the caller waits, then calls ``stop()``.

    LAN discovery (mDNS) starts only when asked (``croft run`` asks) and
    ``features.discovery`` is on: in-process test nodes never advertise."""
    node = await Node.start(config)
    runners: list[web.AppRunner] = []
    listeners: dict[str, str] = {}
    try:
        client = web.AppRunner(create_client_app(node), access_log=None)
        await client.setup()
        runners.append(client)
        listeners["client"] = await _start_site(client, "client", config.client.listen)
        if config.federation.enabled:
            from node.federation.tls import server_ssl_context

            ctx = server_ssl_context(
                config.path(config.federation.tls_certificate),
                config.path(config.federation.tls_private_key),
            )
            fed = web.AppRunner(create_federation_app(node), access_log=None)
            await fed.setup()
            runners.append(fed)
            listeners["federation"] = await _start_site(
                fed, "federation", config.federation.listen, ssl_context=ctx
            )
    except BaseException:
        for runner in reversed(runners):
            await runner.cleanup()
        await node.stop()
        raise
    # Logged once every listener is open: a failed start logs no address it gave up.
    log.info("client API listening on http://%s", listeners["client"])
    if "federation" in listeners:
        log.info("federation API listening on https://%s", listeners["federation"])
    write_run_file(
        config.data_dir,
        {
            "pid": os.getpid(),
            "server_name": config.server_name,
            "profile": config.profile,
            "listeners": listeners,
            "started_at": node.started_at,
        },
    )
    running = RunningNode(node, runners, listeners)
    if discovery and config.features.discovery and "federation" in listeners:
        host = ListenAddress.parse(listeners["federation"]).host
        if _is_loopback(host):
            # Peers on the LAN could not reach it: nothing to announce.
            log.info("discovery: off, the federation listener is on %s only", host)
        else:
            running.discovery = await _start_discovery(node, listeners["federation"])
    running.sensors = await _start_sensors(node)
    log.info("%s is up (profile %s)", config.server_name, config.profile)
    return running


async def _start_sensors(node: Node) -> Any:
    """node/sensors: the sources when features.sensors is on; events that `croft
    publish` queued while the node was stopped are sent either way."""
    if not node.config.features.sensors:
        if node.config.sensors.source:
            log.info("sensors: sources configured, but [features] sensors is off")
        if await node.db.fetchone("SELECT 1 FROM sensor_queue LIMIT 1") is None:
            return None
    from node.sensors.service import SensorService

    try:
        service = await SensorService.for_node(node)
        await service.start()
    except Exception:  # the node serves on without them
        log.exception("sensors: not started")
        return None
    return service


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _discovery_interfaces(config: Config, federation_host: str) -> tuple[str, ...]:
    """The addresses to announce and browse on: those configured, else the federation
    listener's own address when it is bound to one, else every interface."""
    if config.discovery.interfaces:
        return config.discovery.interfaces
    try:
        ip = ipaddress.ip_address(federation_host.strip("[]"))
    except ValueError:
        return ()
    return () if ip.is_unspecified or ip.version != 4 else (str(ip),)


async def _start_discovery(node: Node, federation_listener: str) -> Any:
    from node.discovery.lan import LanDiscovery
    from node.discovery.registry import PeerRegistry

    discovery = LanDiscovery(
        node.server_key,
        ListenAddress.parse(federation_listener).port,
        PeerRegistry(node.db),
        getattr(node.federation_client, "resolver", None),
        node.federation_sender,
        _discovery_interfaces(node.config, ListenAddress.parse(federation_listener).host),
        keys=node.keyring,
    )
    try:
        await discovery.start()
    except OSError as e:  # no usable interface: the node runs without discovery
        log.error("discovery: not started: %s", e)
        await discovery.stop()
        return None
    return discovery
