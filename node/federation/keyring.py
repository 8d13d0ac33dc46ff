"""Other servers' signing keys: fetched, verified, cached, and used to check signatures.

Spec: content/server-server-api.md "Retrieving server keys" ("Publishing Keys",
"Querying Keys Through Another Server"), api/server-server/keys_server.yaml (a key may
be used until the document's ``valid_until_ts``, capped at 7 days after it was fetched;
``old_verify_keys`` until their ``expired_ts``, for events only), keys_query.yaml, and
"Validating hashes and signatures on received events" (keys that expired before an
event's ``origin_server_ts`` are ignored; room versions 5 and later enforce
``valid_until_ts``, and Croft serves only later versions).

Where a key comes from, in order: our own keys (no request); the database (table
``server_keys``, migration 0014); the server itself (GET /_matrix/key/v2/server); then
each trusted notary (POST /_matrix/key/v2/query), whose answer must carry both the
server's own signature and the notary's. Every fetched document is checked against its
server's own signature before it is stored.

Fetches are shared: concurrent look-ups for one server wait on one fetch. After any
fetch attempt a server is not asked again for a minute (``RETRY_AFTER_MS``), so a flood
of requests or events naming a dead server, or an unknown key ID, costs no traffic.
Memory holds a bounded LRU of keys and a bounded table of recent attempts.

Keys pinned on the LAN (node/discovery/registry.py, trust on first use): when the
optional ``pins`` hook names a pin for a server, (key ID, fingerprint), that key is the
only one of the server's keys the ring uses; another key ID is refused without a fetch,
a stored key with another fingerprint is ignored, and a fetched document (directly or
through a notary) that does not carry the pinned key, signed by it, is refused and not
stored. So a LAN node claiming a pinned name with its own key cannot authenticate as
it. :meth:`KeyRing.forget` drops what is known of a server whose pin changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.discovery.service import key_fingerprint
from node.events.canonical import encode_canonical_json, parse_json
from node.events.redaction import redact
from node.events.room_versions import RoomVersion
from node.events.signing import (
    ED25519,
    SignatureError,
    VerifyKey,
    decode_verify_key_base64,
    encode_verify_key_base64,
    servers_that_must_sign,
    verify_json,
)
from node.federation.client import FederationClient
from node.federation.common import FederationRequestError
from node.federation.keys import ServerKey
from node.storage.database import Database

log = logging.getLogger(__name__)

# keys_server.yaml: "the lesser of this field and 7 days into the future".
MAX_VALIDITY_MS = 7 * 24 * 3600 * 1000
RETRY_AFTER_MS = 60_000
FETCH_TIMEOUT = 20.0
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_NOTARY_ANSWER_BYTES = 2 * 1024**2
# At most this many of one server's signatures on an object are looked at.
MAX_SIGNATURES_PER_SERVER = 8
MEMORY_KEYS = 1024
MEMORY_SERVERS = 4096

# server name -> its pinned (key ID, key fingerprint), or None when it has no pin.
PinLookup = Callable[[str], tuple[str, str] | None]


class KeyNotFound(Exception):
    """No usable key: unknown, expired for the time asked about, or unreachable."""


@dataclass(frozen=True, slots=True)
class StoredKey:
    verify_key: VerifyKey
    valid_until_ts: int  # effective: capped valid_until_ts, or expired_ts for an old key
    expired_ts: int | None

    def usable_at(self, ts: int | None) -> bool:
        return ts is None or ts <= self.valid_until_ts


@dataclass(frozen=True)
class KeyDocument:
    """A key document whose self-signature checked out. ``document`` keeps only the
    server's own signatures."""

    server_name: str
    valid_until_ts: int
    verify_keys: Mapping[str, VerifyKey]
    old_verify_keys: Mapping[str, tuple[VerifyKey, int]]
    document: Mapping[str, Any]


def parse_key_document(doc: object, server_name: str) -> KeyDocument:
    """Check a key document (keys.yaml) from or about ``server_name``: shape, server
    name, and its signature by at least one of its ``verify_keys`` (every such
    signature must verify). Entries of other algorithms, and malformed entries, are
    skipped. Raises ValueError."""
    if not isinstance(doc, Mapping):
        raise ValueError("key document is not a JSON object")
    if doc.get("server_name") != server_name:
        raise ValueError(f"key document is for {doc.get('server_name')!r}, not {server_name}")
    valid_until = doc.get("valid_until_ts")
    if not isinstance(valid_until, int) or isinstance(valid_until, bool):
        raise ValueError("key document has no integer valid_until_ts")
    verify_keys = _keys(doc.get("verify_keys"), old=False)
    old_keys = _keys(doc.get("old_verify_keys") or {}, old=True)
    signatures = doc.get("signatures")
    own = signatures.get(server_name) if isinstance(signatures, Mapping) else None
    if not isinstance(own, Mapping):
        raise ValueError(f"key document is not signed by {server_name}")
    checked = 0
    for key_id in own:
        found = verify_keys.get(key_id)
        if found is None:
            continue
        try:
            verify_json(doc, server_name, found[0])
        except SignatureError as e:
            raise ValueError(f"key document: {e}") from None
        checked += 1
    if not checked:
        raise ValueError(f"key document is not signed by any of {server_name}'s verify_keys")
    stripped = {k: v for k, v in doc.items() if k != "signatures"}
    stripped["signatures"] = {server_name: dict(own)}
    return KeyDocument(
        server_name,
        valid_until,
        {k: v[0] for k, v in verify_keys.items()},
        {k: (v[0], v[1]) for k, v in old_keys.items() if v[1] is not None},
        stripped,
    )


def _keys(value: object, *, old: bool) -> dict[str, tuple[VerifyKey, int | None]]:
    what = "old_verify_keys" if old else "verify_keys"
    if not isinstance(value, Mapping):
        raise ValueError(f"key document: {what} is not an object")
    out: dict[str, tuple[VerifyKey, int | None]] = {}
    for key_id, entry in value.items():
        alg, _, version = key_id.partition(":")
        if alg != ED25519 or not isinstance(entry, Mapping):
            continue
        expired = entry.get("expired_ts")
        if old and (not isinstance(expired, int) or isinstance(expired, bool)):
            continue
        key = entry.get("key")
        try:
            if not isinstance(key, str):
                raise ValueError("no key")
            verify_key = decode_verify_key_base64(alg, version, key)
        except ValueError as e:
            log.info("key document: skipping %s %s: %s", what, key_id, e)
            continue
        out[key_id] = (verify_key, expired if old else None)
    return out


class KeyRing:
    """See the module docstring."""

    def __init__(
        self,
        db: Database,
        server_key: ServerKey,
        client: FederationClient | None,
        trusted_key_servers: Sequence[str] = (),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.server_key = server_key
        self.client = client
        self.trusted_key_servers = tuple(trusted_key_servers)
        self._clock = clock
        self._memory: OrderedDict[tuple[str, str], StoredKey] = OrderedDict()
        self._attempted: OrderedDict[str, int] = OrderedDict()  # server -> ms
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # Set by LAN discovery (node/discovery/lan.py): see the module docstring.
        self.pins: PinLookup | None = None

    @property
    def server_name(self) -> str:
        return self.server_key.server_name

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- keys --------------------------------------------------------------------------

    async def get_verify_key(
        self, server_name: str, key_id: str, *, valid_at_ms: int | None = None
    ) -> VerifyKey:
        """``server_name``'s key ``key_id``, usable at ``valid_at_ms`` (any time when
        None). Raises :class:`KeyNotFound`."""
        if not key_id.startswith(ED25519 + ":"):
            raise KeyNotFound(f"key {key_id} of {server_name}: unsupported algorithm")
        if server_name == self.server_name:
            own = self.server_key.verify_key(key_id)
            if own is None:
                raise KeyNotFound(f"{server_name} (this server) has no key {key_id}")
            if own[1] is not None and valid_at_ms is not None and valid_at_ms > own[1]:
                raise KeyNotFound(f"this server's key {key_id} expired at {own[1]}")
            return own[0]
        pin = self._pin(server_name)
        if pin is not None and key_id != pin[0]:
            log.info("keys of %s: refused %s, the LAN pin is %s", server_name, key_id, pin[0])
            raise KeyNotFound(f"{server_name} is pinned on the LAN to key {pin[0]}, not {key_id}")
        stored = await self._stored(server_name, key_id)
        if stored is not None and stored.usable_at(valid_at_ms):
            return stored.verify_key
        if stored is None or stored.expired_ts is None:
            await self._fetch(server_name, key_id, valid_at_ms or self._now_ms(), notaries=True)
            stored = await self._stored(server_name, key_id)
        if stored is None:
            raise KeyNotFound(f"no key {key_id} known for {server_name}")
        if not stored.usable_at(valid_at_ms):
            raise KeyNotFound(
                f"{server_name}'s key {key_id} is valid until {stored.valid_until_ts}, "
                f"not at {valid_at_ms}"
            )
        return stored.verify_key

    async def verify_json(
        self, obj: Mapping[str, Any], server_name: str, *, valid_at_ms: int | None = None
    ) -> None:
        """Check ``server_name``'s signatures on ``obj`` (appendices "Checking for a
        Signature") with each of its keys we can get: at least one must be there, and
        every one checked must verify. Raises SignatureError."""
        signatures = obj.get("signatures")
        by_server = signatures.get(server_name) if isinstance(signatures, Mapping) else None
        if not isinstance(by_server, Mapping) or not by_server:
            raise SignatureError(f"not signed by {server_name}")
        key_ids = [k for k in by_server if isinstance(k, str) and k.startswith(ED25519 + ":")]
        unusable: list[str] = []
        verified = False
        for key_id in sorted(key_ids)[:MAX_SIGNATURES_PER_SERVER]:
            try:
                key = await self.get_verify_key(server_name, key_id, valid_at_ms=valid_at_ms)
            except KeyNotFound as e:
                unusable.append(str(e))
                continue
            verify_json(obj, server_name, key)
            verified = True
        if not verified:
            why = "; ".join(unusable) or "no ed25519 signature"
            raise SignatureError(f"no usable signature from {server_name} ({why})")

    async def verify_event_signatures(
        self, pdu: Mapping[str, Any], room_version: RoomVersion
    ) -> None:
        """Check the signatures every required server must have on ``pdu`` (on its
        redacted form), with keys valid at its ``origin_server_ts``. Raises
        SignatureError naming the server."""
        ts = pdu.get("origin_server_ts")
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise SignatureError("event has no integer origin_server_ts")
        redacted = redact(pdu, room_version)
        for server in sorted(servers_that_must_sign(pdu)):
            try:
                await self.verify_json(redacted, server, valid_at_ms=ts)
            except SignatureError as e:
                raise SignatureError(f"signature of {server}: {e}") from None

    # -- the notary --------------------------------------------------------------------

    async def key_documents_for(
        self, server_name: str, key_ids: Sequence[str], minimum_valid_until_ts: int
    ) -> list[dict[str, Any]]:
        """The key documents to serve for ``server_name`` (all its keys when
        ``key_ids`` is empty), each with our signature added. When the stored ones do
        not cover the keys or are not valid until ``minimum_valid_until_ts``, the
        server is asked again; if that fails, what is stored is served (spec: notaries
        keep serving the last answer of a server that is down)."""
        if server_name == self.server_name:
            return [self.server_key.key_document(self._now_ms())]
        docs, covered = await self._documents(server_name, key_ids)
        stale = any(valid < minimum_valid_until_ts for _, valid in docs)
        if not docs or stale or not set(key_ids) <= covered:
            await self._fetch(server_name, None, minimum_valid_until_ts, notaries=False)
            docs, covered = await self._documents(server_name, key_ids)
        return [self.server_key.sign(doc) for doc, _ in docs]

    async def _documents(
        self, server_name: str, key_ids: Sequence[str]
    ) -> tuple[list[tuple[dict[str, Any], int]], set[str]]:
        sql = (
            "SELECT k.key_id, d.doc_id, d.document, d.valid_until_ts FROM server_keys k"
            " JOIN server_key_documents d ON d.doc_id = k.doc_id WHERE k.server_name = ?"
        )
        rows = await self.db.fetchall(sql, (server_name,))
        wanted = set(key_ids)
        docs: dict[int, tuple[dict[str, Any], int]] = {}
        covered: set[str] = set()
        for row in rows:
            if wanted and row["key_id"] not in wanted:
                continue
            covered.add(row["key_id"])
            if row["doc_id"] not in docs:
                docs[row["doc_id"]] = (parse_json(row["document"]), row["valid_until_ts"])
        return list(docs.values()), covered

    # -- cache -------------------------------------------------------------------------

    async def _stored(self, server_name: str, key_id: str) -> StoredKey | None:
        cache_key = (server_name, key_id)
        found = self._memory.get(cache_key)
        if found is not None:
            self._memory.move_to_end(cache_key)
            return found if self._pinned_or_free(server_name, key_id, found.verify_key) else None
        row = await self.db.fetchone(
            "SELECT verify_key, valid_until_ts, expired_ts FROM server_keys"
            " WHERE server_name = ? AND key_id = ?",
            (server_name, key_id),
        )
        if row is None:
            return None
        alg, _, version = key_id.partition(":")
        stored = StoredKey(
            decode_verify_key_base64(alg, version, row["verify_key"]),
            row["valid_until_ts"],
            row["expired_ts"],
        )
        self._memory[cache_key] = stored
        while len(self._memory) > MEMORY_KEYS:
            self._memory.popitem(last=False)
        return stored if self._pinned_or_free(server_name, key_id, stored.verify_key) else None

    # -- LAN pins ----------------------------------------------------------------------

    def _pin(self, server_name: str) -> tuple[str, str] | None:
        return self.pins(server_name) if self.pins is not None else None

    def _pinned_or_free(self, server_name: str, key_id: str, key: VerifyKey) -> bool:
        """False when ``server_name`` is pinned on the LAN to another key than this."""
        pin = self._pin(server_name)
        return pin is None or (key_id, key_fingerprint(encode_verify_key_base64(key))) == pin

    def _admit(self, doc: KeyDocument, fetched_from: str) -> bool:
        """False when ``doc``'s server is pinned on the LAN and the document lacks the
        pinned key or its signature (parse_key_document checked every signature by a
        listed key)."""
        pin = self._pin(doc.server_name)
        if pin is None:
            return True
        key = doc.verify_keys.get(pin[0])
        if key is not None and pin[0] in doc.document["signatures"][doc.server_name]:
            if self._pinned_or_free(doc.server_name, pin[0], key):
                return True
        log.warning(
            "keys of %s from %s: refused, not the key pinned on the LAN (%s %s)",
            doc.server_name,
            fetched_from,
            *pin,
        )
        return False

    async def forget(self, server_name: str) -> None:
        """Drop every key of ``server_name``, cached or stored, and the memory of a
        recent fetch, so the next look-up fetches again (its LAN pin changed)."""
        for cache_key in [k for k in self._memory if k[0] == server_name]:
            del self._memory[cache_key]
        self._attempted.pop(server_name, None)

        def txn(conn: Any) -> None:
            conn.execute("DELETE FROM server_keys WHERE server_name = ?", (server_name,))
            conn.execute("DELETE FROM server_key_documents WHERE server_name = ?", (server_name,))

        await self.db.write_sync(txn)
        log.info("keys of %s: forgotten (its LAN pin changed)", server_name)

    async def store(self, doc: KeyDocument, fetched_from: str) -> None:
        """Store a checked key document and the keys it lists. A key already described
        by a document with a later ``valid_until_ts`` keeps that description."""
        now = self._now_ms()
        capped = min(doc.valid_until_ts, now + MAX_VALIDITY_MS)
        rows: list[tuple[str, str, int, int | None]] = [
            (key_id, encode_verify_key_base64(key), capped, None)
            for key_id, key in doc.verify_keys.items()
        ]
        rows += [
            (key_id, encode_verify_key_base64(key), expired, expired)
            for key_id, (key, expired) in doc.old_verify_keys.items()
            if key_id not in doc.verify_keys
        ]
        text = encode_canonical_json(doc.document).decode("utf-8")
        server = doc.server_name
        # A server pinned on the LAN has only the keys of its latest admitted document:
        # a key stored before its pin changed must not outlive it (nor, under the same
        # key ID, shadow the pinned one with a later valid_until_ts).
        replace = self._pin(server) is not None

        def txn(conn: Any) -> None:
            if replace:
                conn.execute("DELETE FROM server_keys WHERE server_name = ?", (server,))
            doc_id = conn.execute(
                "INSERT INTO server_key_documents"
                " (server_name, document, valid_until_ts, fetched_ts, fetched_from)"
                " VALUES (?, ?, ?, ?, ?)",
                (server, text, doc.valid_until_ts, now, fetched_from),
            ).lastrowid
            for key_id, key_b64, valid_until, expired in rows:
                newer = conn.execute(
                    "SELECT 1 FROM server_keys k JOIN server_key_documents d"
                    " ON d.doc_id = k.doc_id WHERE k.server_name = ? AND k.key_id = ?"
                    " AND d.valid_until_ts > ?",
                    (server, key_id, doc.valid_until_ts),
                ).fetchone()
                if newer is not None:
                    continue
                conn.execute(
                    "INSERT INTO server_keys (server_name, key_id, verify_key, valid_until_ts,"
                    " expired_ts, doc_id, fetched_ts) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (server_name, key_id) DO UPDATE SET"
                    " verify_key = excluded.verify_key, valid_until_ts = excluded.valid_until_ts,"
                    " expired_ts = excluded.expired_ts, doc_id = excluded.doc_id,"
                    " fetched_ts = excluded.fetched_ts",
                    (server, key_id, key_b64, valid_until, expired, doc_id, now),
                )
            conn.execute(
                "DELETE FROM server_key_documents WHERE server_name = ? AND doc_id NOT IN"
                " (SELECT doc_id FROM server_keys WHERE server_name = ?)",
                (server, server),
            )

        await self.db.write_sync(txn)
        for cache_key in [k for k in self._memory if k[0] == server]:
            del self._memory[cache_key]

    # -- fetching ----------------------------------------------------------------------

    async def _fetch(
        self, server_name: str, key_id: str | None, min_valid_ms: int, *, notaries: bool
    ) -> None:
        """Fetch ``server_name``'s keys unless a fetch is running (then wait for it) or
        one was tried in the last ``RETRY_AFTER_MS``. Never raises for a failed fetch."""
        task = self._inflight.get(server_name)
        if task is None:
            last = self._attempted.get(server_name)
            if last is not None and self._now_ms() - last < RETRY_AFTER_MS:
                return
            if self.client is None:
                return
            task = asyncio.get_running_loop().create_task(
                self._fetch_task(server_name, key_id, min_valid_ms, notaries),
                name=f"keys-{server_name}",
            )
            self._inflight[server_name] = task
        # shield: one waiter giving up (a peer hung up) must not cancel the others' fetch.
        await asyncio.shield(task)

    async def _fetch_task(
        self, server_name: str, key_id: str | None, min_valid_ms: int, notaries: bool
    ) -> None:
        try:
            if await self._fetch_direct(server_name, key_id):
                return
            if not notaries:
                return
            for notary in self.trusted_key_servers:
                if notary in (server_name, self.server_name):
                    continue
                if await self._fetch_via_notary(notary, server_name, key_id, min_valid_ms):
                    return
        except Exception:  # a bug, not a peer's doing: log it, the look-up fails
            log.exception("fetching the keys of %s failed", server_name)
        finally:
            self._inflight.pop(server_name, None)
            self._attempted[server_name] = self._now_ms()
            self._attempted.move_to_end(server_name)
            while len(self._attempted) > MEMORY_SERVERS:
                self._attempted.popitem(last=False)

    async def _fetch_direct(self, server_name: str, key_id: str | None) -> bool:
        """GET the server's own key document; True if it lists ``key_id`` (or any key
        when None)."""
        assert self.client is not None
        try:
            answer = await self.client.get_json(
                server_name,
                "/_matrix/key/v2/server",
                signed=False,
                timeout=FETCH_TIMEOUT,
                max_bytes=MAX_DOCUMENT_BYTES,
            )
            doc = parse_key_document(answer, server_name)
        except (FederationRequestError, ValueError) as e:
            log.info("keys of %s: direct fetch failed: %s", server_name, e)
            return False
        if not self._admit(doc, server_name):
            return False
        await self.store(doc, server_name)
        return key_id is None or key_id in doc.verify_keys or key_id in doc.old_verify_keys

    async def _fetch_via_notary(
        self, notary: str, server_name: str, key_id: str | None, min_valid_ms: int
    ) -> bool:
        """Ask ``notary`` for ``server_name``'s keys; store every document signed by
        both. True if one lists ``key_id`` (or any key when None)."""
        assert self.client is not None
        criteria = {key_id: {"minimum_valid_until_ts": min_valid_ms}} if key_id else {}
        try:
            answer = await self.client.post_json(
                notary,
                "/_matrix/key/v2/query",
                {"server_keys": {server_name: criteria}},
                signed=False,
                timeout=FETCH_TIMEOUT,
                max_bytes=MAX_NOTARY_ANSWER_BYTES,
            )
        except FederationRequestError as e:
            log.info("keys of %s: notary %s failed: %s", server_name, notary, e)
            return False
        docs = answer.get("server_keys") if isinstance(answer, Mapping) else None
        if not isinstance(docs, list):
            log.info("keys of %s: notary %s answered without server_keys", server_name, notary)
            return False
        found = False
        for raw in docs:
            if not isinstance(raw, Mapping) or raw.get("server_name") != server_name:
                continue
            try:
                await self._check_notary_signature(raw, notary)
                doc = parse_key_document(raw, server_name)
            except (SignatureError, ValueError) as e:
                log.info("keys of %s from notary %s: %s", server_name, notary, e)
                continue
            if not self._admit(doc, notary):
                continue
            await self.store(doc, notary)
            found = found or key_id is None or key_id in doc.verify_keys
            found = found or (key_id is not None and key_id in doc.old_verify_keys)
        return found

    async def _check_notary_signature(self, doc: Mapping[str, Any], notary: str) -> None:
        signatures = doc.get("signatures")
        by_notary = signatures.get(notary) if isinstance(signatures, Mapping) else None
        if not isinstance(by_notary, Mapping):
            raise SignatureError(f"not signed by the notary {notary}")
        for key_id in list(by_notary)[:MAX_SIGNATURES_PER_SERVER]:
            key = await self._notary_key(notary, key_id)
            if key is not None:
                verify_json(doc, notary, key)
                return
        raise SignatureError(f"no usable key of the notary {notary}")

    async def _notary_key(self, notary: str, key_id: str) -> VerifyKey | None:
        """A notary's current key: stored, or fetched from the notary itself. Not
        through the shared fetches, which may be waiting on this one."""
        now = self._now_ms()
        stored = await self._stored(notary, key_id)
        if stored is None or not stored.usable_at(now):
            await self._fetch_direct(notary, key_id)
            stored = await self._stored(notary, key_id)
        if stored is None or not stored.usable_at(now):
            return None
        return stored.verify_key
