"""Outbound federation: a durable queue per destination, sent as transactions.

Spec: content/server-server-api.md "Transactions" (at most 50 PDUs and 100 EDUs per
transaction; wait for a 200 before sending a transaction with a different txnId),
"PDUs", "EDUs"; api/server-server/transactions.yaml (PUT /_matrix/federation/v1/send/{txnId}).

Design:

- The queue lives in SQLite (migration 0015): PDU rows (destination, event ID, in
  ``seq`` order; the JSON is read from ``events`` at send time) and durable EDU rows;
  non-durable EDUs (typing, presence) are kept in memory. An EDU with a key replaces a
  queued one with the same (destination, type, key) and moves to the end of the queue.
- One worker task per destination with something queued, so one transaction in flight
  per destination. A worker takes up to 50 PDUs and 100 EDUs in queue order, sends
  them, and after a 200 deletes exactly the rows it sent (one write); rows queued
  meanwhile stay. It exits when the queue is empty; :meth:`FederationSender.wake`
  starts it again.
- A failed attempt keeps the batch (its row IDs and its txnId) and retries it after a
  backoff; the body is read again each time, so it can only shrink (rows replaced or
  thinned out meanwhile), never grow: a receiver that saw the txnId before answers
  from its cache, and we then delete only rows it did receive.
- Transaction IDs are ``<epoch>.<n>``: the epoch, stored, grows at every start, so an
  ID is never reused across restarts (receivers dedupe on (origin, txnId)).
- Backoff per destination, stored so it survives restarts: ``initial * factor**(n-1)``
  after the n-th consecutive failure, capped at ``maximum``, times a random factor in
  [1 - jitter, 1 + jitter] (defaults 2 s, x2, 1 h, 20%: a LAN peer that blinked is
  retried within seconds, a server gone for good costs one request an hour; mDNS or a
  request from the peer calls :meth:`FederationSender.peer_is_back` to retry at once;
  when mDNS liveness checks lose a peer, :meth:`FederationSender.peer_is_lost` gives up
  the request in flight to it).
  A 429's ``retry_after_ms`` is honoured. 401, 408, 429, 5xx, unreachable and invalid
  answers are retried; another 4xx means the transaction will never succeed: it is
  logged and dropped. (401: a peer that cannot fetch our key yet, or that pinned
  another key for us on the LAN until its owner accepts ours, may accept us later.)
- Catch-up: when a failing destination has more than ``catch_up_cap`` PDUs queued,
  the older ones beyond the newest ``catch_up_cap`` are thinned to the newest per room:
  the peer fetches the gap with /get_missing_events when it gets the newer events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Protocol

from node.federation.common import InvalidResponse, RemoteError, Unreachable
from node.storage import federation_outbox as outbox
from node.storage.database import Database

log = logging.getLogger(__name__)

MAX_PDUS_PER_TXN = 50  # spec "Transactions"
MAX_EDUS_PER_TXN = 100
# Queued PDUs per destination beyond which the older ones are thinned (see catch-up).
CATCH_UP_CAP = 5000
# Non-durable EDUs kept in memory per destination (oldest dropped first).
MAX_MEMORY_EDUS = 500
# Concurrent transactions (all destinations together).
MAX_IN_FLIGHT = 16
# HTTP statuses after which the same transaction is retried later.
RETRY_STATUSES = frozenset({401, 408, 429})


class Transport(Protocol):
    async def send_transaction(
        self, destination: str, txn_id: str, body: Mapping[str, Any]
    ) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Seconds to wait after consecutive failures (see the module docstring)."""

    initial: float = 2.0
    factor: float = 2.0
    maximum: float = 3600.0
    jitter: float = 0.2

    def interval(self, failures: int, rng: random.Random) -> float:
        exponent = min(max(failures - 1, 0), 64)
        base = min(self.maximum, self.initial * self.factor**exponent)
        return base * rng.uniform(1 - self.jitter, 1 + self.jitter)

    @property
    def longest(self) -> float:
        return self.maximum * (1 + self.jitter)


@dataclass(slots=True)
class _Batch:
    """The transaction being attempted: which rows it carries, under which txnId."""

    txn_id: str
    pdu_seqs: list[int]
    edu_seqs: list[int]
    memory_ids: list[int]


@dataclass(slots=True)
class _Destination:
    name: str
    failures: int = 0
    interval: float = 0.0
    retry_at: float = 0.0  # clock() time; 0: now
    dirty: bool = False  # something was queued since the worker last read the queue
    error_kind: str | None = None  # what failed last, to log each change once
    last_error: str | None = None
    batch: _Batch | None = None
    sending: asyncio.Future[Mapping[str, Any]] | None = None  # the request in flight
    resend: bool = False  # the request in flight was cancelled to be sent again now
    poke: asyncio.Event = field(default_factory=asyncio.Event)
    # (edu_type, key or a unique int) -> (memory id, edu_type, content)
    memory: OrderedDict[tuple[str, Any], tuple[int, str, dict[str, Any]]] = field(
        default_factory=OrderedDict
    )


class FederationSender:
    def __init__(
        self,
        db: Database,
        transport: Transport,
        server_name: str,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        backoff: Backoff | None = None,
        catch_up_cap: int = CATCH_UP_CAP,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.db = db
        self.transport = transport
        self.server_name = server_name
        self.backoff = backoff or Backoff()
        self.catch_up_cap = catch_up_cap
        self._clock = clock
        self._rng = rng or random.Random()
        self._limit = asyncio.Semaphore(max_in_flight)
        self._dests: dict[str, _Destination] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._greetings: set[asyncio.Future[None]] = set()
        self._epoch = 0
        self._txn_counter = 0
        self._memory_counter = 0
        self._started = False
        self._closed = False
        self._status_conn: sqlite3.Connection | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the destinations with something queued and their retry state; start
        sending."""
        self._epoch, retry_rows, queued = await self.db.write_sync(
            lambda conn: outbox.start_sync(conn, self.server_name, self.catch_up_cap)
        )
        now = self._clock()
        for dest, failures, interval_ms, retry_at_ms in retry_rows:
            state = self._state(dest)
            state.failures, state.interval = failures, interval_ms / 1000
            # A clock set back (a board without a real-time clock) must not park a
            # destination for longer than one backoff interval.
            state.retry_at = min(retry_at_ms / 1000, now + self.backoff.longest)
        self._started = True
        for dest in sorted(set(queued) | {d for d, s in self._dests.items() if s.memory}):
            self._ensure_worker(dest)

    async def close(self) -> None:
        """Stop the workers. Nothing queued is lost: rows are deleted only after a 200."""
        self._closed = True
        tasks = [*self._workers.values(), *self._greetings]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        if self._status_conn is not None:
            self._status_conn.close()
            self._status_conn = None

    def greet(self, destinations: Iterable[str]) -> None:
        """Tell peers this server is up (after a start): an empty transaction to each
        one with nothing queued. Synapse retries at once what it held back for a
        server it just heard from, instead of at its next sweep (a minute or more)."""
        for dest in sorted(set(destinations)):
            if dest and dest != self.server_name and dest not in self._workers:
                task = asyncio.ensure_future(self._greet(dest))
                self._greetings.add(task)
                task.add_done_callback(self._greetings.discard)

    async def _greet(self, dest: str) -> None:
        body = {
            "origin": self.server_name,
            "origin_server_ts": int(self._clock() * 1000),
            "pdus": [],
            "edus": [],
        }
        try:
            async with self._limit:
                await self.transport.send_transaction(dest, f"{self._epoch}.hello", body)
        except Exception as e:  # best effort: the queue, if any, retries on its own
            log.debug("federation: greeting %s failed: %s", dest, _describe(e))

    # -- queueing ------------------------------------------------------------------------

    @staticmethod
    def queue_pdu_sync(
        conn: sqlite3.Connection, event_id: str, destinations: Iterable[str]
    ) -> None:
        """Queue a stored event for ``destinations``, inside the caller's write job (the
        one that stores the event); call :meth:`wake` after it commits. Our own server
        name (as recorded by :meth:`start`) is skipped; an event already queued for a
        destination keeps its place."""
        outbox.queue_pdu_sync(conn, event_id, destinations)

    def wake(self, destinations: Iterable[str]) -> None:
        """Something was queued for ``destinations`` (and committed): send it. A
        destination in backoff waits for its retry time."""
        for dest in destinations:
            if dest and dest != self.server_name:
                self._state(dest).dirty = True
                self._ensure_worker(dest)

    async def send_pdu(self, event_id: str, destinations: Iterable[str]) -> None:
        """Queue a stored event for ``destinations`` in its own write, then send it."""
        dests = [d for d in dict.fromkeys(destinations) if d and d != self.server_name]
        if not dests:
            return
        await self.db.write_sync(lambda conn: self.queue_pdu_sync(conn, event_id, dests))
        self.wake(dests)

    async def send_edu(
        self,
        destination: str,
        edu_type: str,
        content: Mapping[str, Any],
        *,
        key: str | None = None,
        durable: bool = True,
    ) -> None:
        """Queue an EDU. With ``key``, a queued EDU with the same (destination, type,
        key) is replaced. ``durable=False`` keeps it in memory only (typing, presence)."""
        if not destination or destination == self.server_name:
            return
        body = dict(content)
        encoded = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        state = self._state(destination)
        if key is not None:
            state.memory.pop((edu_type, key), None)
        if durable:
            await self.db.write_sync(
                lambda conn: outbox.queue_edu_sync(conn, destination, edu_type, key, encoded)
            )
        else:
            self._memory_counter += 1
            slot = (edu_type, key if key is not None else self._memory_counter)
            state.memory[slot] = (self._memory_counter, edu_type, body)
            while len(state.memory) > MAX_MEMORY_EDUS:
                dropped = state.memory.popitem(last=False)[1]
                log.debug("federation: %s: dropped a queued %s EDU", destination, dropped[1])
        self.wake([destination])

    def peer_is_back(self, destination: str) -> None:
        """A request from ``destination`` succeeded, or mDNS saw it: retry at once."""
        state = self._dests.get(destination)
        if state is None or (state.failures == 0 and state.retry_at == 0):
            return
        log.info("federation: %s is back; retrying now", destination)
        state.failures, state.interval, state.retry_at = 0, 0.0, 0.0
        if state.sending is not None and not state.sending.done():
            # A retry sent while the link was down may sit on a connection whose
            # retransmissions back off for many seconds: send it again now.
            state.resend = True
            state.sending.cancel()
        state.poke.set()
        self._ensure_worker(destination)

    def peer_is_lost(self, destination: str) -> None:
        """LAN discovery lost ``destination``: give up the request in flight to it (on a
        dead link it would hang until its timeout, and a connection from before the cut
        may never recover); the transaction is retried when the peer is back."""
        state = self._dests.get(destination)
        if state is not None and state.sending is not None and not state.sending.done():
            log.info("federation: %s is lost; its transaction is retried later", destination)
            state.sending.cancel()

    def destination_status(self, destination: str) -> dict[str, Any]:
        """What is queued for ``destination`` and its retry state (for logs and tests)."""
        pdus, edus = self._queued_counts(destination)
        state = self._dests.get(destination)
        task = self._workers.get(destination)
        return {
            "destination": destination,
            "pdus_queued": pdus,
            "edus_queued": edus,
            "edus_in_memory": len(state.memory) if state else 0,
            "failures": state.failures if state else 0,
            "retry_interval": state.interval if state else 0.0,
            "retry_at": state.retry_at if state and state.retry_at else None,
            "last_error": state.last_error if state else None,
            "txn_in_flight": state.batch.txn_id if state and state.batch else None,
            "worker_running": task is not None and not task.done(),
        }

    # -- workers -------------------------------------------------------------------------

    def _state(self, dest: str) -> _Destination:
        state = self._dests.get(dest)
        if state is None:
            state = self._dests[dest] = _Destination(dest)
        return state

    def _ensure_worker(self, dest: str) -> None:
        if not self._started or self._closed:
            return  # start() picks it up from the queue
        task = self._workers.get(dest)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(
                self._worker(self._state(dest)), name=f"federation-sender {dest}"
            )
            self._workers[dest] = task

    async def _worker(self, state: _Destination) -> None:
        me = asyncio.current_task()
        try:
            while True:
                try:
                    await self._wait_for_retry(state)
                    if state.batch is None:
                        state.dirty = False
                        state.batch = await self._next_batch(state)
                        if state.batch is None:
                            if state.dirty:
                                continue
                            return
                    await self._attempt(state, state.batch)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # storage trouble: back off, never die
                    await self._record_failure(state, e)
        finally:
            # Synchronous with the return: a wake() from now on starts a new worker.
            if self._workers.get(state.name) is me:
                del self._workers[state.name]
            if state.failures == 0 and not state.memory and state.batch is None:
                self._dests.pop(state.name, None)

    async def _wait_for_retry(self, state: _Destination) -> None:
        while (delay := state.retry_at - self._clock()) > 0:
            state.poke.clear()
            try:
                await asyncio.wait_for(state.poke.wait(), min(delay, self.backoff.longest))
            except TimeoutError:
                pass

    async def _next_batch(self, state: _Destination) -> _Batch | None:
        dest = state.name
        memory = list(state.memory.values())[:MAX_EDUS_PER_TXN]
        room = MAX_EDUS_PER_TXN - len(memory)

        pdu_seqs, edu_seqs = await self.db.read_sync(
            lambda conn: outbox.next_batch_sync(conn, dest, MAX_PDUS_PER_TXN, room)
        )
        if not pdu_seqs and not edu_seqs and not memory:
            return None
        self._txn_counter += 1
        return _Batch(
            f"{self._epoch}.{self._txn_counter}", pdu_seqs, edu_seqs, [m[0] for m in memory]
        )

    async def _attempt(self, state: _Destination, batch: _Batch) -> None:
        """Send ``batch`` once; on success or drop delete its rows, else back off."""
        dest = state.name
        pdus, durable = await self.db.read_sync(
            lambda conn: outbox.load_batch_sync(conn, batch.pdu_seqs, batch.edu_seqs)
        )
        wanted = set(batch.memory_ids)
        # The in-memory EDUs (typing, presence) first: they are the ones that go stale.
        edus = [{"edu_type": t, "content": c} for i, t, c in state.memory.values() if i in wanted]
        edus += durable
        if not pdus and not edus:  # everything was deleted or replaced meanwhile
            await self._done(state, batch, reached=False)
            return
        body = {
            "origin": self.server_name,
            "origin_server_ts": int(self._clock() * 1000),
            "pdus": pdus,
            "edus": edus,
        }
        try:
            async with self._limit:
                send = asyncio.ensure_future(
                    self.transport.send_transaction(dest, batch.txn_id, body)
                )
                state.sending = send
                try:
                    await asyncio.wait({send})
                finally:
                    state.sending = None
                    if not send.done():
                        send.cancel()
            if send.cancelled():
                if state.resend:  # peer_is_back: the same transaction, at once
                    state.resend = False
                    return
                # peer_is_lost: the same transaction is retried later
                raise Unreachable(f"{dest}: lost on the LAN")
            response = send.result()
        except RemoteError as e:
            if e.status in RETRY_STATUSES or e.status >= 500:
                await self._record_failure(state, e)
                return
            log.warning(
                "federation: %s refused transaction %s (%d PDUs, %d EDUs): %s; dropped",
                dest,
                batch.txn_id,
                len(pdus),
                len(edus),
                e,
            )
        except (Unreachable, InvalidResponse) as e:
            await self._record_failure(state, e)
            return
        except Exception as e:  # a transport bug must not kill the worker
            if state.error_kind != _kind(e):
                log.exception("federation: sending to %s failed unexpectedly", dest)
            await self._record_failure(state, e)
            return
        else:
            _log_pdu_errors(dest, response)
        await self._done(state, batch, reached=True)

    async def _done(self, state: _Destination, batch: _Batch, *, reached: bool) -> None:
        """The batch was delivered (or refused for good): delete exactly its rows."""
        sent = set(batch.memory_ids)
        for slot, (mem_id, _, _) in list(state.memory.items()):
            if mem_id in sent:
                del state.memory[slot]
        dest, pdu_seqs, edu_seqs = state.name, batch.pdu_seqs, batch.edu_seqs
        await self.db.write_sync(
            lambda conn: outbox.delete_sent_sync(conn, dest, pdu_seqs, edu_seqs, reset=reached)
        )
        state.batch = None
        if reached:
            if state.failures:
                log.info(
                    "federation: %s reachable again after %d failed attempts",
                    dest,
                    state.failures,
                )
            state.failures, state.interval, state.retry_at = 0, 0.0, 0.0
            state.error_kind = state.last_error = None

    async def _record_failure(self, state: _Destination, error: Exception) -> None:
        """Back off after a failed attempt; store the retry state and thin the queue."""
        state.failures += 1
        interval = self.backoff.interval(state.failures, self._rng)
        retry_after = _retry_after(error)
        if retry_after is not None:
            interval = max(interval, min(retry_after, self.backoff.maximum))
        now = self._clock()
        state.interval, state.retry_at = interval, now + interval
        described, kind = _describe(error), _kind(error)
        if kind != state.error_kind:
            log.warning(
                "federation: cannot send to %s: %s; retrying with backoff (next in %.0f s)",
                state.name,
                described,
                interval,
            )
        else:
            log.debug(
                "federation: %s still failing (%d): %s", state.name, state.failures, described
            )
        state.error_kind, state.last_error = kind, described
        row = (state.name, state.failures, int(interval * 1000), int(state.retry_at * 1000))
        cap = self.catch_up_cap
        try:
            thinned = await self.db.write_sync(
                lambda conn: outbox.record_failure_sync(conn, row, cap)
            )
        except Exception as e:  # the database is closing or broken: keep it in memory
            log.debug("federation: cannot store the retry state of %s: %s", state.name, e)
            return
        if thinned:
            log.warning(
                "federation: %s: over %d PDUs queued; dropped %d older ones (catch-up: the"
                " peer fetches them with /get_missing_events)",
                state.name,
                cap,
                thinned,
            )

    def _queued_counts(self, dest: str) -> tuple[int, int]:
        """Counted on a read-only connection of our own, on the loop's thread (two
        indexed counts; destination_status is synchronous)."""
        if self._status_conn is None:
            conn = sqlite3.connect(str(self.db.path), isolation_level=None)
            conn.execute("PRAGMA query_only=ON")
            if self._closed:  # after close(): do not keep a connection open
                with closing(conn):
                    return outbox.queued_counts_sync(conn, dest)
            self._status_conn = conn
        return outbox.queued_counts_sync(self._status_conn, dest)


# -- helpers -------------------------------------------------------------------------------


def _describe(error: Exception) -> str:
    if isinstance(error, RemoteError):
        return f"HTTP {error.status} {error.errcode}".rstrip()
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _kind(error: Exception) -> str:
    """The kind of a failure: a new kind is logged, a repeat is not."""
    if isinstance(error, RemoteError):
        return f"HTTP {error.status}"
    return type(error).__name__


def _retry_after(error: Exception) -> float | None:
    if isinstance(error, RemoteError) and error.status == 429:
        ms = error.body.get("retry_after_ms")
        if isinstance(ms, int) and not isinstance(ms, bool) and ms > 0:
            return ms / 1000
    return None


def _log_pdu_errors(dest: str, response: Mapping[str, Any]) -> None:
    """The peer answers 200 even when it refused some PDUs; resending would not help."""
    results = response.get("pdus") if isinstance(response, Mapping) else None
    if not isinstance(results, Mapping):
        return
    refused = {e: r["error"] for e, r in results.items() if isinstance(r, Mapping) and "error" in r}
    if refused:
        log.info("federation: %s refused %d of the PDUs sent", dest, len(refused))
        for event_id, error in refused.items():
            log.debug("federation: %s refused %s: %s", dest, event_id, error)
