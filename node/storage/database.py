"""The SQLite database: one writer connection with group commit, one reader, migrations.

Every write goes through :meth:`Database.write` as a ``*_txn`` coroutine function that
receives the writer connection inside an open transaction, or through
:meth:`Database.write_sync` / :meth:`Database.submit_sync` as a plain function that
receives the raw ``sqlite3`` connection and runs on the writer's thread. The writer
task runs the queued functions one after the other in a single transaction (each under
its own SAVEPOINT, so one failure does not undo the others), commits with
``synchronous=FULL`` and only then resolves the callers' futures: an acknowledged
write is on disk. (A write submitted with ``durable=False`` is made durable by a later
:meth:`Database.sync`; node/federation/pdus.py answers a transaction only after it.)
A caller that is cancelled (a client hung up) does not cancel its write.

Each ``await`` on an aiosqlite call is a round trip to the connection's thread (a
queue put, a thread wake-up, a wake-up of the event loop). Hot paths therefore use
the plain-function forms: a batch made only of them (BEGIN, every job, COMMIT) is one
round trip, and :meth:`fetchone`, :meth:`fetchall` and :meth:`read_sync` are one each.

Migrations are the numbered files in ``node/storage/migrations`` (``NNNN_name.sql``);
``PRAGMA user_version`` records the last one applied.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

log = logging.getLogger(__name__)

T = TypeVar("T")
TxnFn = Callable[[aiosqlite.Connection], Awaitable[T]]
SyncFn = Callable[[sqlite3.Connection], T]

# How many queued writes one transaction may carry.
MAX_GROUP = 256


class StorageError(Exception):
    """The database cannot be used (corrupt, newer schema, disk problem)."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def bundled_migrations() -> list[Migration]:
    """The migrations shipped with this version of Croft, in order."""
    out = []
    root = Path(__file__).resolve().parent / "migrations"  # shipped as package data
    for entry in root.iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    out.sort(key=lambda m: m.version)
    for expected, mig in enumerate(out, start=1):
        if mig.version != expected:
            raise StorageError(f"migration numbering has a gap before {mig.version:04d}")
    return out


class _Job:
    __slots__ = ("durable", "fn", "future", "sync")

    def __init__(
        self, fn: Any, future: asyncio.Future[Any], sync: bool, durable: bool = True
    ) -> None:
        self.fn = fn
        self.future = future
        self.sync = sync  # fn takes the raw sqlite3 connection and runs on its thread
        self.durable = durable  # committed with an fsync (else: see write_sync)


async def in_thread(conn: aiosqlite.Connection, fn: SyncFn[T]) -> T:
    """Run ``fn(raw sqlite3 connection)`` on ``conn``'s own thread: one round trip.

    aiosqlite runs every call of a connection on one thread; ``_execute`` queues a
    function there (the library's own mechanism behind ``execute``). The version
    range in pyproject.toml pins the aiosqlite this relies on.
    """
    raw = conn._conn
    result: T = await conn._execute(fn, raw)
    return result


def _run_sync_job(raw: sqlite3.Connection, fn: SyncFn[Any]) -> tuple[bool, Any]:
    """One job under its own SAVEPOINT (on the writer's thread)."""
    raw.execute("SAVEPOINT job")
    try:
        value = fn(raw)
    except Exception as e:
        raw.execute("ROLLBACK TO job")
        raw.execute("RELEASE job")
        return False, e
    raw.execute("RELEASE job")
    return True, value


def _run_sync_batch(
    raw: sqlite3.Connection, fns: list[SyncFn[Any]], durable: bool = True
) -> list[tuple[bool, Any]]:
    """BEGIN, every job under its SAVEPOINT, COMMIT: a whole batch on the writer's
    thread. A failed BEGIN or COMMIT rolls back and raises. Not ``durable``: the
    commit is not fsynced (``synchronous=NORMAL`` for it; Database.sync does it later)."""
    if not durable:
        raw.execute("PRAGMA synchronous=NORMAL")
        try:
            return _run_sync_batch(raw, fns)
        finally:
            raw.execute("PRAGMA synchronous=FULL")
    raw.execute("BEGIN IMMEDIATE")
    try:
        if len(fns) == 1:  # alone in its transaction: no SAVEPOINT needed
            try:
                results = [(True, fns[0](raw))]
            except Exception as e:
                raw.execute("ROLLBACK")
                return [(False, e)]
        else:
            results = [_run_sync_job(raw, fn) for fn in fns]
        raw.execute("COMMIT")
    except BaseException:
        try:
            raw.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise
    return results


def _settle(batch: list[_Job], results: list[tuple[bool, Any]]) -> None:
    """Resolve each job's future with its outcome (on the event loop)."""
    for job, (ok, value) in zip(batch, results, strict=True):
        if job.future.done():
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


def _fetchone(sql: str, params: tuple[Any, ...]) -> SyncFn[sqlite3.Row | None]:
    return lambda raw: raw.execute(sql, params).fetchone()


def _fetchall(sql: str, params: tuple[Any, ...]) -> SyncFn[list[sqlite3.Row]]:
    return lambda raw: raw.execute(sql, params).fetchall()


def _in_snapshot(fn: SyncFn[T]) -> SyncFn[T]:
    def run(raw: sqlite3.Connection) -> T:
        raw.execute("BEGIN")
        try:
            return fn(raw)
        finally:
            raw.execute("COMMIT")

    return run


class Database:
    """An open Croft database. Create with :meth:`open`, finish with :meth:`close`."""

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        inline: sqlite3.Connection,
    ):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._inline = inline
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._reader_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        cache_kib: int = 8192,
        migrations: list[Migration] | None = None,
    ) -> Database:
        """Open (creating if needed) and migrate the database at ``path``."""
        try:
            await asyncio.to_thread(_create, path)
            writer = await _connect(path, cache_kib)
        except sqlite3.Error as e:
            raise StorageError(f"{path}: cannot open database: {e}") from None
        try:
            await migrate(writer, bundled_migrations() if migrations is None else migrations)
            reader = await _connect(path, cache_kib)
        except sqlite3.Error as e:
            await writer.close()
            raise StorageError(f"{path}: cannot open database: {e}") from None
        except BaseException:
            await writer.close()
            raise
        try:
            await reader.execute("PRAGMA query_only=ON")
            inline = _connect_inline(path, max(1024, cache_kib // 4))
        except BaseException as e:
            await writer.close()
            await reader.close()
            if isinstance(e, sqlite3.Error):
                raise StorageError(f"{path}: cannot open database: {e}") from None
            raise
        db = cls(path, writer, reader, inline)
        db._task = asyncio.get_running_loop().create_task(db._writer_loop(), name="db-writer")
        return db

    async def close(self) -> None:
        """Finish the queued writes, then close both connections."""
        if self._task is not None:
            await self._queue.put(None)
            await self._task
            self._task = None
        await self._writer.close()
        await self._reader.close()
        self._inline.close()

    # -- writes --------------------------------------------------------------------------

    async def write(self, fn: TxnFn[T]) -> T:
        """Run ``fn(conn)`` in a write transaction; return once it is committed to disk."""
        # shield: a cancelled caller must not abandon a write that is about to commit.
        return await asyncio.shield(self._submit(fn, sync=False))

    async def write_sync(self, fn: SyncFn[T], *, durable: bool = True) -> T:
        """Like :meth:`write` for a plain function of the raw ``sqlite3`` connection,
        run on the writer's thread (it must not touch the event loop).

        ``durable=False``: the commit is not fsynced when the batch holds only such
        writes (``synchronous=NORMAL`` for it): it survives a crash of the process, not
        of the machine, until :meth:`sync`. For work that is acknowledged as a whole
        later (a federation transaction's PDUs): call :meth:`sync` before the answer."""
        return await asyncio.shield(self._submit(fn, sync=True, durable=durable))

    async def sync(self) -> None:
        """Make every write committed so far durable (fsync the WAL), as if each had
        been committed with ``synchronous=FULL``."""
        wal = f"{self.path}-wal"

        def fsync_wal(raw: sqlite3.Connection) -> None:
            try:
                fd = os.open(wal, os.O_RDONLY)
            except FileNotFoundError:  # checkpointed and gone: already in the database
                return
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        await asyncio.shield(self._submit(fsync_wal, sync=True))

    def submit_sync(self, fn: SyncFn[T]) -> asyncio.Future[T]:
        """Queue ``fn`` as :meth:`write_sync` does, without waiting: the future
        resolves once it is committed. Writes run in the order they are submitted,
        so a caller may submit under a lock and wait after releasing it."""
        return self._submit(fn, sync=True)

    def _submit(self, fn: Any, *, sync: bool, durable: bool = True) -> asyncio.Future[Any]:
        if self._task is None or self._task.done():
            raise StorageError("database is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(fn, future, sync, durable))
        return future

    async def _writer_loop(self) -> None:
        stop = False
        while not stop:
            job = await self._queue.get()
            if job is None:
                break
            batch = [job]
            while len(batch) < MAX_GROUP and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Job]) -> None:
        conn = self._writer
        results: list[tuple[bool, Any]] = []
        try:
            if all(job.sync for job in batch):
                fns = [job.fn for job in batch]
                durable = any(job.durable for job in batch)
                loop = asyncio.get_running_loop()

                def run(raw: sqlite3.Connection) -> list[tuple[bool, Any]]:
                    done = _run_sync_batch(raw, fns, durable)
                    # Answer the callers from this thread at once: one wake-up of the
                    # loop, not two (aiosqlite's answer to this task, then its to them).
                    loop.call_soon_threadsafe(_settle, batch, done)
                    return done

                results = await in_thread(conn, run)
            else:
                results = await self._run_mixed_batch(conn, batch)
        except Exception as e:  # rolled back: every job of the batch fails
            log.error("database commit failed: %s", e)
            err = StorageError(f"database write failed: {e}")
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        _settle(batch, results)

    @staticmethod
    async def _run_mixed_batch(
        conn: aiosqlite.Connection, batch: list[_Job]
    ) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for job in batch:
                if job.sync:
                    results.append(await in_thread(conn, partial(_run_sync_job, fn=job.fn)))
                    continue
                await conn.execute("SAVEPOINT job")
                try:
                    value = await job.fn(conn)
                except Exception as e:
                    await conn.execute("ROLLBACK TO job")
                    await conn.execute("RELEASE job")
                    results.append((False, e))
                else:
                    await conn.execute("RELEASE job")
                    results.append((True, value))
            await conn.execute("COMMIT")
        except BaseException:
            try:
                await conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        return results

    # -- reads ---------------------------------------------------------------------------

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self._reader_lock:
            return await in_thread(self._reader, _fetchone(sql, tuple(params)))

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._reader_lock:
            return await in_thread(self._reader, _fetchall(sql, tuple(params)))

    async def read_sync(self, fn: SyncFn[T]) -> T:
        """Run ``fn(raw sqlite3 connection)`` on the reader's thread in one consistent
        snapshot: one round trip however many queries it makes. ``fn`` must not touch
        the event loop."""
        async with self._reader_lock:
            return await in_thread(self._reader, _in_snapshot(fn))

    async def read_now(self, fn: SyncFn[T]) -> T:
        """Like :meth:`read_sync`, but run ``fn`` right here on the event loop's thread,
        with no thread round trip (each costs ~0.1 ms of wake-ups on a small board,
        more than a short read). Only for short reads on hot paths: indexed lookups of
        a bounded number of rows (what /sync and /messages read). In WAL mode a reader
        does not wait for the writer; if SQLite ever answers "busy" (a WAL index being
        rebuilt), the read goes to the reader thread instead of blocking the loop."""
        try:
            return _in_snapshot(fn)(self._inline)
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            if self._inline.in_transaction:
                self._inline.execute("ROLLBACK")
        return await self.read_sync(fn)

    async def read(self, fn: TxnFn[T]) -> T:
        """Run several reads in one consistent snapshot."""
        async with self._reader_lock:
            await self._reader.execute("BEGIN")
            try:
                return await fn(self._reader)
            finally:
                await self._reader.execute("COMMIT")


def _create(path: Path) -> None:
    """If there is no database at ``path`` yet: a new database file that gives freed pages
    back to the file system on request (``PRAGMA incremental_vacuum``: node/history
    evicts events and returns the space).
    auto_vacuum can only be chosen before the file's first page is written."""
    if path.exists() and path.stat().st_size > 0:
        return  # a database already (an empty file, made 0600 by `croft init`, is not)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


async def _connect(path: Path, cache_kib: int) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is fsynced before it returns, so an acknowledged write survives
        # a crash of the process and of the machine.
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=10000")
        await conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        # Statement journals (one per SAVEPOINT'd job) in memory, not temporary files.
        await conn.execute("PRAGMA temp_store=MEMORY")
        # The -wal file shrinks back to this after a checkpoint (it counts on disk).
        await conn.execute("PRAGMA journal_size_limit=4194304")
    except BaseException:
        # aiosqlite runs each connection in a non-daemon thread: close it, or the
        # process cannot exit after reporting the error.
        await conn.close()
        raise
    return conn


def _connect_inline(path: Path, cache_kib: int) -> sqlite3.Connection:
    """The read-only connection used on the event loop's thread (Database.read_now)."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA busy_timeout=0")  # never wait on the loop: fall back instead
        conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        conn.execute("PRAGMA temp_store=MEMORY")
    except BaseException:
        conn.close()
        raise
    return conn


async def schema_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: aiosqlite.Connection, migrations: list[Migration]) -> int:
    """Apply the migrations newer than the database's ``user_version``; return the version."""
    current = await schema_version(conn)
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise StorageError(
            f"database schema {current} is newer than this Croft understands ({latest}); "
            "upgrade Croft"
        )
    for mig in migrations:
        if mig.version <= current:
            continue
        log.info("applying database migration %04d_%s", mig.version, mig.name)
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_sql(mig.sql):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version={mig.version}")
            await conn.execute("COMMIT")
        except sqlite3.Error as e:
            await conn.execute("ROLLBACK")
            raise StorageError(f"migration {mig.version:04d}_{mig.name} failed: {e}") from None
    return max(current, latest)


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (sqlite3.complete_statement aware)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        if not buf and line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements
