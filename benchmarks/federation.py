"""Federation: message latency between homeservers, and joining a room with 1,000 state events.

Starts real homeservers on 127.0.0.1, each with its own data directory, federating over
TLS on loopback: two ``croft run`` nodes (A, B) and, unless ``--no-synapse``, one or two
Synapse servers (S1, S2; installed once into a cached venv by the interop harness,
tests/interop/synapse_install.py). Server names are ``127.0.0.1:<federation port>``.

(a) Latency, for each pair (Croft->Croft both ways, Croft->Synapse, Synapse->Croft and,
    for reference, Synapse->Synapse): the sender's owner creates a room and invites the
    receiver, who joins over the client API. Then, ``--samples`` times: the receiver's
    long-polling ``/sync?since=..&timeout=30000`` is issued and given 20 ms to park on
    its server, the clock starts, the sender's ``PUT /rooms/{id}/send/m.room.message/..``
    is issued, and the clock stops when the receiver's /sync returns carrying that event
    (a /sync that wakes for something else is re-issued, still timed from the PUT). The
    time for the PUT to be answered is kept too. ``--warmup`` samples come first and are
    not counted (the first one includes key fetches and new TLS connections).
(b) Join of a room with ``--state-events`` custom state events (``org.example.bench``,
    distinct state keys; the room has ~1,008 state events in all) held by a Croft node
    (and by Synapse): a freshly started Croft node, idle 2 s, joins it with
    ``POST /join/{roomId}?server_name=..``. Measured: the wall time until the join is
    answered, the joining node's RSS sampled every 10 ms from /proc/PID/status during
    the join (and its VmHWM), its RSS 2 s later, its CPU time, and the resident
    server's peak RSS. For reference the same room is joined from a Synapse server.

Everything is bounded (fixed counts; the run stops after ``--max-seconds``); everything
started is stopped on the way out. Prints a table and writes JSON to benchmarks/out/.

    python benchmarks/federation.py [--samples 200] [--warmup 5] [--state-events 1000]
                                    [--no-synapse] [--no-synapse-pair] [--py-spy PREFIX]

``--py-spy PREFIX`` samples nodes A and B with py-spy during the Croft->Croft latency
run, and each joining Croft node during its join (collapsed stacks: PREFIX-A.txt,
PREFIX-B.txt, PREFIX-J1.txt...); it is for finding where the time goes, not for the
numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sends import cpu_s  # a sibling script, not a package
from startup import OUT_DIR, ROOT, child_env, percentile, proc_status, write_report

sys.path.insert(0, str(ROOT))
from tests.interop.croft_node import CroftProcess  # the interop harness
from tests.interop.synapse import SynapseServer
from tests.interop.synapse_install import SynapseError, SynapseInstall, ensure_synapse
from tests.interop.users import MatrixUser, has_event, invited, timeline

TARGET_CROFT_P50_MS = 10.0  # Croft->Croft; Synapse->Synapse is ~45-80 ms
PARK_S = 0.02  # time given to a /sync to park on its server before the send
IDLE_S = 2.0
RSS_INTERVAL_S = 0.01
STATE_TYPE = "org.example.bench"
SYNAPSE_PASSWORD = "benchmark password"


class Deadline(Exception):
    pass


class BenchCroft(CroftProcess):
    """The interop harness's ``croft run`` process, with the benchmarks' clean environment
    (no CROFT_* settings, no proxies; see benchmarks/README.md) plus its own settings
    (LAN discovery off)."""

    def _env(self) -> dict[str, str]:
        return child_env(**self.env)


@dataclass
class Server:
    """One homeserver under test and its logged-in user."""

    name: str  # "A", "B", "S1"...
    kind: str  # "croft" or "synapse"
    proc: BenchCroft | SynapseServer
    user: MatrixUser

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid

    @property
    def server_name(self) -> str:
        return self.proc.server_name


async def start_croft(
    stack: AsyncExitStack, http: aiohttp.ClientSession, work: Path, name: str
) -> Server:
    proc = BenchCroft(work / name)
    stack.push_async_callback(proc.stop)
    await proc.start()
    # The token `croft init` stored for the TUI: a password login would run argon2 (64 MiB
    # of memory for a moment) and leave that peak in VmHWM before the join is measured.
    user = MatrixUser(http, proc.client_url, proc.user_id, proc.tui_token)
    return Server(name, "croft", proc, user)


async def start_synapse(
    stack: AsyncExitStack,
    http: aiohttp.ClientSession,
    work: Path,
    name: str,
    install: SynapseInstall,
) -> Server:
    proc = SynapseServer(install, work / name, log_level="WARNING")
    stack.push_async_callback(proc.stop)
    await proc.start()
    user_id, token, _ = await proc.register(f"user{name.lower()}", SYNAPSE_PASSWORD)
    return Server(name, "synapse", proc, MatrixUser(http, proc.client_url, user_id, token))


async def shared_room(sender: Server, receiver: Server) -> str:
    """A room created on the sender's server with the receiver joined over federation."""
    s, r = sender.user, receiver.user
    room = await s.create_room(name=f"{sender.name} to {receiver.name}")
    await s.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": r.user_id})
    r.since = None
    await r.sync_until(invited(room))
    await r.call("POST", f"/join/{quote(room)}?server_name={quote(sender.server_name)}", {})
    s.since = None
    await s.sync_until(
        lambda b: any(
            e["type"] == "m.room.member" and e.get("state_key") == r.user_id
            for e in timeline(b, room)
        )
    )
    return room


async def long_poll(user: MatrixUser, since: str) -> dict[str, Any]:
    return dict(await user.call("GET", f"/sync?since={quote(since)}&timeout=30000"))


async def latency(
    sender: Server, receiver: Server, room: str, samples: int, warmup: int, deadline: float
) -> dict[str, Any]:
    """Seconds from issuing the PUT to the receiver's parked /sync returning the event."""
    since = (await receiver.user.call("GET", "/sync?timeout=0"))["next_batch"]
    delivered: list[float] = []
    acked: list[float] = []
    extra_syncs = 0
    first: float | None = None
    cpu0 = {"sender": cpu_s(sender.pid), "receiver": cpu_s(receiver.pid)}
    for i in range(warmup + samples):
        if time.monotonic() > deadline:
            raise Deadline("--max-seconds reached")
        sync_task = asyncio.create_task(long_poll(receiver.user, since))
        await asyncio.sleep(PARK_S)
        t0 = time.perf_counter()
        put_task = asyncio.create_task(sender.user.send(room, f"latency {i}"))
        event_id = await put_task
        t_ack = time.perf_counter() - t0
        body = await sync_task
        while not has_event(room, event_id)(body):
            if i >= warmup:
                extra_syncs += 1
            body = await long_poll(receiver.user, body["next_batch"])
        t = time.perf_counter() - t0
        since = body["next_batch"]
        if i == 0:
            first = t
        if i >= warmup:
            delivered.append(t)
            acked.append(t_ack)
    n = warmup + samples
    return {
        "samples": len(delivered),
        "first_sample_ms": (first or 0.0) * 1000,
        "delivered_ms": summarise(delivered),
        "send_answered_ms": summarise(acked),
        "extra_syncs": extra_syncs,
        # CPU of each server (all threads) per message, warm-up included.
        "sender_cpu_ms_per_message": (cpu_s(sender.pid) - cpu0["sender"]) * 1000 / n,
        "receiver_cpu_ms_per_message": (cpu_s(receiver.pid) - cpu0["receiver"]) * 1000 / n,
    }


def summarise(seconds: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(seconds, 0.50) * 1000,
        "p95": percentile(seconds, 0.95) * 1000,
        "max": max(seconds) * 1000,
        "mean": statistics.mean(seconds) * 1000,
    }


class RssSampler:
    """Peak VmRSS of some processes, read from /proc every 10 ms on a thread."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_kib = dict.fromkeys(pids, 0)
        self.reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            for name, pid in self.pids.items():
                self.peak_kib[name] = max(self.peak_kib[name], proc_status(pid)["VmRSS"])
            self.reads += 1
            if self._stop.wait(RSS_INTERVAL_S):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def big_room(host: Server, n: int, concurrency: int = 8) -> tuple[str, float]:
    """A public room on ``host`` with ``n`` extra state events; (room ID, seconds)."""
    room = await host.user.create_room(name=f"{n} state events", preset="public_chat")
    t0 = time.perf_counter()
    keys = iter(range(n))

    async def worker() -> None:
        for i in keys:
            await host.user.put_state(room, STATE_TYPE, {"n": i, "pad": "x" * 32}, key=f"k{i:05}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return room, time.perf_counter() - t0


async def join(host: Server, joiner: Server, room: str, n: int) -> dict[str, Any]:
    """``joiner`` joins ``room`` through ``host``: time, memory, CPU, and a state check."""
    await asyncio.sleep(IDLE_S)
    before = proc_status(joiner.pid)
    cpu0 = cpu_s(joiner.pid)
    path = f"/join/{quote(room)}?server_name={quote(host.server_name)}"
    with RssSampler({"joiner": joiner.pid, "host": host.pid}) as rss:
        t0 = time.perf_counter()
        await joiner.user.call("POST", path, {})
        seconds = time.perf_counter() - t0
    cpu = cpu_s(joiner.pid) - cpu0
    just_after = proc_status(joiner.pid)
    await asyncio.sleep(IDLE_S)
    idle = proc_status(joiner.pid)
    state = await joiner.user.call("GET", f"/rooms/{quote(room)}/state")  # the check
    bench_state = sum(1 for e in state if e["type"] == STATE_TYPE)
    checked = proc_status(joiner.pid)
    return {
        "host": f"{host.name} ({host.kind})",
        "joiner": f"{joiner.name} ({joiner.kind})",
        "join_s": seconds,
        "joiner_cpu_s": cpu,
        "room_state_events": len(state),
        "bench_state_events_seen": bench_state,
        "state_complete": bench_state == n,
        "joiner_rss_before_kib": before["VmRSS"],
        "joiner_hwm_before_kib": before["VmHWM"],
        "joiner_peak_rss_sampled_kib": rss.peak_kib["joiner"],  # every 10 ms during the join
        "joiner_hwm_just_after_kib": just_after["VmHWM"],  # the peak, if above hwm_before
        "joiner_rss_just_after_kib": just_after["VmRSS"],
        "joiner_rss_after_idle_kib": idle["VmRSS"],  # 2 s after the join
        # after GET /rooms/{id}/state, the check (all ~1,000 events in one response)
        "joiner_rss_after_state_read_kib": checked["VmRSS"],
        "host_peak_rss_sampled_kib": rss.peak_kib["host"],
        "rss_reads": rss.reads,
    }


@asynccontextmanager
async def py_spy(prefix: Path | None, servers: list[Server]) -> AsyncIterator[None]:
    """py-spy recording each server while the block runs (nothing without a prefix)."""
    spies: list[subprocess.Popen[bytes]] = []
    if prefix is not None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        prefix.parent.mkdir(parents=True, exist_ok=True)
        for s in servers:
            out = prefix.parent / f"{prefix.name}-{s.name}.txt"
            args = ["record", "--pid", str(s.pid), "--format", "raw", "--rate", "500"]
            spies.append(
                # Popen only forks: it does not wait for the child (ASYNC220 is about run()).
                subprocess.Popen(  # noqa: ASYNC220
                    [exe, *args, "--nonblocking", "--output", str(out.resolve())],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        await asyncio.sleep(1.0)  # let py-spy attach
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(spy.wait, 60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    deadline = time.monotonic() + args.max_seconds
    results: dict[str, Any] = {"latency": {}, "join": []}
    timeout = aiohttp.ClientTimeout(total=120)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
        a = await start_croft(stack, http, work, "A")
        b = await start_croft(stack, http, work, "B")
        synapses: list[Server] = []
        if args.synapse:
            install = await asyncio.to_thread(ensure_synapse)
            results["synapse_version"] = install.version
            synapses.append(await start_synapse(stack, http, work, "S1", install))
            if args.synapse_pair:
                synapses.append(await start_synapse(stack, http, work, "S2", install))

        async def pair(sender: Server, receiver: Server, room: str, spy: list[Server]) -> None:
            key = f"{sender.name}->{receiver.name} ({sender.kind}->{receiver.kind})"
            async with py_spy(args.py_spy if spy else None, spy):
                r = await latency(sender, receiver, room, args.samples, args.warmup, deadline)
            results["latency"][key] = r
            d = r["delivered_ms"]
            print(
                f"(a) {key:34} p50 {d['p50']:7.2f}  p95 {d['p95']:7.2f}  max {d['max']:7.2f} ms"
                f"   (send answered p50 {r['send_answered_ms']['p50']:.2f} ms)",
                flush=True,
            )

        try:
            room = await shared_room(a, b)
            await pair(a, b, room, [a, b])
            await pair(b, a, room, [])
            for s in synapses[:1]:
                room = await shared_room(a, s)
                await pair(a, s, room, [])
                await pair(s, a, room, [])
            if len(synapses) == 2:
                room = await shared_room(synapses[0], synapses[1])
                await pair(synapses[0], synapses[1], room, [])

            hosts = [a, *synapses[:1]]
            for i, host in enumerate(hosts):
                room, fill_s = await big_room(host, args.state_events)
                print(
                    f"(b) room on {host.name} with {args.state_events} state events made in "
                    f"{fill_s:.1f} s",
                    flush=True,
                )
                results[f"fill_s_{host.kind}"] = fill_s
                joiners = [await start_croft(stack, http, work, f"J{i + 1}")]
                joiners += [s for s in synapses[-1:] if s is not host]
                for joiner in joiners:
                    if time.monotonic() > deadline:
                        raise Deadline("--max-seconds reached")
                    spy = [joiner] if joiner.kind == "croft" else []
                    async with py_spy(args.py_spy if spy else None, spy):
                        j = await join(host, joiner, room, args.state_events)
                    results["join"].append(j)
                    print(
                        f"(b) {j['joiner']:13} joins room on {j['host']:13}: {j['join_s']:6.2f} s,"
                        f" RSS {j['joiner_rss_before_kib'] / 1024:.1f} -> peak "
                        f"{j['joiner_hwm_just_after_kib'] / 1024:.1f} -> "
                        f"{j['joiner_rss_after_idle_kib'] / 1024:.1f} MiB, "
                        f"state {j['bench_state_events_seen']}/{args.state_events}",
                        flush=True,
                    )
        except Deadline:
            results["stopped_early"] = f"--max-seconds {args.max_seconds} reached"
        except (SynapseError, AssertionError) as e:
            results["failed"] = repr(e)
            print(f"failed: {e!r}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="latency samples per pair")
    parser.add_argument("--warmup", type=int, default=5, help="uncounted samples first")
    parser.add_argument("--state-events", type=int, default=1000, help="state events for (b)")
    parser.add_argument("--no-synapse", dest="synapse", action="store_false", help="Croft only")
    parser.add_argument(
        "--no-synapse-pair", dest="synapse_pair", action="store_false", help="one Synapse only"
    )
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop after this")
    parser.add_argument("--py-spy", type=Path, default=None, help="py-spy into PREFIX-*.txt")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory for the JSON")
    args = parser.parse_args(argv)
    if args.samples < 1 or args.warmup < 0 or args.state_events < 1:
        parser.error("--samples and --state-events must be at least 1, --warmup at least 0")

    work = Path(tempfile.mkdtemp(prefix="croft-bench-fed-"))
    try:
        results = asyncio.run(measure(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    targets: dict[str, bool] = {}
    c2c = results["latency"].get("A->B (croft->croft)")
    if c2c is not None:
        targets["croft_to_croft_p50_under_10_ms"] = c2c["delivered_ms"]["p50"] < TARGET_CROFT_P50_MS
    write_report(
        "federation",
        args,
        [sys.executable, "-m", "node.cli", "run", "--data-dir", "DIR"],
        results,
        targets,
    )
    return 1 if "failed" in results else 0


if __name__ == "__main__":
    sys.exit(main())
