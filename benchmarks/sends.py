"""Send throughput, send-to-/sync latency and memory of `croft run`.

Makes a fresh data directory with `croft init` (listeners on free 127.0.0.1 ports),
starts `croft run` on it, logs in as the owner and creates one room, then measures:

(a) sequential sends: ``--sends`` PUT /rooms/{id}/send/m.room.message/{txnId}, one
    after another, one aiohttp session (one keep-alive connection);
(b) concurrent sends: the same number split over ``--senders`` tasks, each with its
    own session and connection, all on the same access token;
(c) send-to-/sync latency: a long-polling ``/sync?since=..&timeout=30000`` on a
    second connection is parked on the server (a 20 ms pause after issuing it), then
    the clock starts, the PUT is issued, and the clock stops when that /sync returns
    with the event (``--samples`` times). The device that syncs is the device that
    sends, so each /sync also looks up its transaction IDs (``unsigned.transaction_id``);
(d) RSS (VmRSS, VmHWM from /proc) after ``--idle`` seconds idle before any request,
    and after the room holds ``--events`` events (topped up with 8 concurrent senders).

Everything is bounded: counts are fixed and the whole run stops after
``--max-seconds``. Everything started is killed on the way out. Prints a table and
writes JSON to benchmarks/out/.

    python benchmarks/sends.py [--sends 2000] [--senders 8] [--samples 300]
                               [--events 10000] [--cprofile FILE] [--py-spy FILE]

``--py-spy FILE`` samples the running node with py-spy (``pip install py-spy``) and
writes collapsed stacks; it distorts less than cProfile. ``--cprofile FILE`` runs the
node under ``python -m cProfile -o FILE`` (slower). Both are for finding where the time
goes, not for the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import (  # a sibling script, not a package
    OUT_DIR,
    ROOT,
    START_DEADLINE_S,
    answers,
    child_env,
    croft_command,
    free_port,
    percentile,
    proc_status,
    stop,
    write_report,
)

OWNER = "bench"
PASSWORD = "benchmark password"
V3 = "/_matrix/client/v3"

TARGET_SEQUENTIAL = 450.0  # sends/s; Synapse ~45
TARGET_CONCURRENT = 1500.0  # sends/s with 8 senders
TARGET_P50_MS = 3.0  # send-to-sync; Synapse ~25 ms
TARGET_IDLE_RSS_MIB = 45.0  # Synapse ~122 MB


class Deadline(Exception):
    pass


class Bench:
    def __init__(self, url: str, token: str, room_id: str, deadline: float) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.room_id = room_id
        self.deadline = deadline
        self.txn = 0
        self.sent = 0
        self.syncs = 0  # /sync requests made while measuring latency

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise Deadline("--max-seconds reached")

    async def send(self, session: aiohttp.ClientSession, body: str) -> str:
        self.txn += 1
        url = f"{self.url}{V3}/rooms/{self.room_id}/send/m.room.message/b{self.txn}"
        async with session.put(
            url, json={"msgtype": "m.text", "body": body}, headers=self.headers
        ) as r:
            data = await r.json()
            if r.status != 200:
                raise RuntimeError(f"send answered {r.status}: {data}")
        self.sent += 1
        return str(data["event_id"])

    async def sequential(self, n: int) -> float:
        async with aiohttp.ClientSession() as session:
            await self.send(session, "warm-up")
            t0 = time.perf_counter()
            for i in range(n):
                if i % 100 == 0:
                    self.check_time()
                await self.send(session, f"sequential {i}")
            return n / (time.perf_counter() - t0)

    async def concurrent(self, n: int, senders: int) -> float:
        sessions = [aiohttp.ClientSession() for _ in range(senders)]
        try:
            for s in sessions:  # open every connection before the clock starts
                await self.send(s, "warm-up")

            async def worker(session: aiohttp.ClientSession, count: int) -> None:
                for i in range(count):
                    if i % 50 == 0:
                        self.check_time()
                    await self.send(session, f"concurrent {i}")

            counts = [n // senders + (1 if i < n % senders else 0) for i in range(senders)]
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(s, c) for s, c in zip(sessions, counts, strict=True)))
            return n / (time.perf_counter() - t0)
        finally:
            for s in sessions:
                await s.close()

    async def latency(self, samples: int) -> tuple[list[float], list[float]]:
        """Seconds from issuing the PUT to the parked /sync returning the event, and
        (second list) to the sender also having its answer, whichever comes last."""
        to_sync: list[float] = []
        to_both: list[float] = []
        async with aiohttp.ClientSession() as sender, aiohttp.ClientSession() as syncer:
            async with syncer.get(f"{self.url}{V3}/sync", headers=self.headers) as r:
                since = (await r.json())["next_batch"]
            for i in range(samples):
                self.check_time()
                sync_task = asyncio.create_task(self._sync(syncer, since))
                await asyncio.sleep(0.02)  # let the /sync park on the server
                t0 = time.perf_counter()
                put_task = asyncio.create_task(self.send(sender, f"latency {i}"))
                body, arrived = await sync_task
                event_id = await put_task
                # A sync may wake for something else (presence); keep polling until the
                # event arrives, still timed from the PUT.
                while not _has_event(body, self.room_id, event_id):
                    self.check_time()
                    body, arrived = await self._sync(syncer, body["next_batch"])
                to_sync.append(arrived - t0)
                to_both.append(time.perf_counter() - t0)
                since = body["next_batch"]
        return to_sync, to_both

    async def _sync(
        self, session: aiohttp.ClientSession, since: str
    ) -> tuple[dict[str, Any], float]:
        """The /sync answer, read and parsed, and the perf_counter time it was."""
        self.syncs += 1
        async with session.get(
            f"{self.url}{V3}/sync",
            params={"since": since, "timeout": "30000"},
            headers=self.headers,
        ) as r:
            if r.status != 200:
                raise RuntimeError(f"/sync answered {r.status}: {await r.text()}")
            body = dict(await r.json())
            return body, time.perf_counter()


def thread_cpus(pid: int) -> dict[str, str]:
    """Each thread of the node (by name) and the CPUs it may run on."""
    out: dict[str, str] = {}
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        try:
            name = (task / "comm").read_text().strip()
            status = (task / "status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        cpus = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in status.splitlines()
                if ln.startswith("Cpus_allowed_list:")
            ),
            "?",
        )
        out[f"{name} ({task.name})"] = cpus
    return out


def _has_event(body: dict[str, Any], room_id: str, event_id: str) -> bool:
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return any(e.get("event_id") == event_id for e in room.get("timeline", {}).get("events", []))


async def login_and_room(url: str) -> tuple[str, str]:
    async with aiohttp.ClientSession() as s:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": OWNER},
            "password": PASSWORD,
        }
        async with s.post(f"{url}{V3}/login", json=body) as r:
            token = (await r.json())["access_token"]
        async with s.post(
            f"{url}{V3}/createRoom",
            json={"name": "bench"},
            headers={"Authorization": f"Bearer {token}"},
        ) as r:
            room_id = (await r.json())["room_id"]
    return str(token), str(room_id)


def cpu_s(pid: int, stat: str = "") -> float:
    """User + system CPU seconds the process has used (all its threads)."""
    with open(stat or f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU milliseconds per operation over a ``with`` block: node, node main thread,
    load generator."""

    def __init__(self, pid: int, operations: int) -> None:
        self.pid = pid
        self.operations = operations
        self.ms: dict[str, float] = {}

    def _now(self) -> tuple[float, float, float]:
        return cpu_s(self.pid), main_thread_cpu_s(self.pid), time.process_time()

    def __enter__(self) -> CpuMeter:
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        names = ("node", "node_main_thread", "load_generator")
        self.ms = {
            n: (b - a) * 1000 / self.operations
            for n, a, b in zip(names, self._start, end, strict=True)
        }

    def __str__(self) -> str:
        return (
            f"CPU ms/send: node {self.ms['node']:.2f} (main thread "
            f"{self.ms['node_main_thread']:.2f}), load generator {self.ms['load_generator']:.2f}"
        )


def main_thread_cpu_s(pid: int) -> float:
    """CPU seconds of the node's main thread (the event loop) alone; the rest of
    the node's CPU is its SQLite threads."""
    return cpu_s(pid, f"/proc/{pid}/task/{pid}/stat")


def mib(kib: int) -> float:
    return kib / 1024


async def measure(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    idle = proc_status(pid)
    token, room_id = await login_and_room(url)
    bench = Bench(url, token, room_id, time.monotonic() + args.max_seconds)
    results: dict[str, Any] = {"idle_rss_kib": idle["VmRSS"], "idle_hwm_kib": idle["VmHWM"]}
    results["node_thread_cpus"] = thread_cpus(pid)
    print(
        "node threads and their CPUs:",
        ", ".join(f"{k}: {v}" for k, v in results["node_thread_cpus"].items()),
        flush=True,
    )
    try:
        # CPU per send (includes the warm-up sends): the node's (all threads), its main
        # thread's, and this load generator's (it shares the machine's cores).
        with CpuMeter(pid, args.sends + 1) as cpu:
            results["sequential_sends_per_s"] = await bench.sequential(args.sends)
        results["sequential_cpu_ms_per_send"] = cpu.ms
        print(
            f"(a) sequential: {results['sequential_sends_per_s']:8.1f} sends/s ({cpu})", flush=True
        )
        with CpuMeter(pid, args.sends + args.senders) as cpu:
            results["concurrent_sends_per_s"] = await bench.concurrent(args.sends, args.senders)
        results["concurrent_cpu_ms_per_send"] = cpu.ms
        print(
            f"(b) {args.senders} senders:   {results['concurrent_sends_per_s']:8.1f} sends/s "
            f"({cpu})",
            flush=True,
        )
        c0 = cpu_s(pid)
        lat, lat_both = await bench.latency(args.samples)
        results["latency_node_cpu_ms_per_sample"] = (cpu_s(pid) - c0) * 1000 / args.samples
        results["latency_syncs_per_sample"] = bench.syncs / args.samples
        results["latency_ms"] = {
            "samples": len(lat),
            "p50": percentile(lat, 0.50) * 1000,
            "p95": percentile(lat, 0.95) * 1000,
            "p99": percentile(lat, 0.99) * 1000,
            "mean": statistics.mean(lat) * 1000,
            "max": max(lat) * 1000,
        }
        results["latency_with_put_answer_ms"] = {
            "p50": percentile(lat_both, 0.50) * 1000,
            "p95": percentile(lat_both, 0.95) * 1000,
        }
        print(
            f"(c) send->sync: p50 {results['latency_ms']['p50']:.2f} ms, "
            f"p95 {results['latency_ms']['p95']:.2f} ms (until the PUT's answer too: "
            f"p50 {results['latency_with_put_answer_ms']['p50']:.2f}, "
            f"p95 {results['latency_with_put_answer_ms']['p95']:.2f})",
            flush=True,
        )
        # Top the room up to --events events (the room's own state events count too).
        remaining = args.events - bench.sent - 10
        if remaining > 0:
            await bench.concurrent(remaining, args.senders)
        await asyncio.sleep(args.idle)
        after = proc_status(pid)
        results["events_sent"] = bench.sent
        results["after_events_rss_kib"] = after["VmRSS"]
        results["after_events_hwm_kib"] = after["VmHWM"]
        print(
            f"(d) RSS idle {mib(idle['VmRSS']):.1f} MiB, after {bench.sent} sends "
            f"{mib(after['VmRSS']):.1f} MiB (peak {mib(after['VmHWM']):.1f} MiB)",
            flush=True,
        )
    except Deadline:
        results["stopped_early"] = f"--max-seconds {args.max_seconds} reached"
        results["events_sent"] = bench.sent
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=2000, help="sends for (a) and (b)")
    parser.add_argument("--senders", type=int, default=8, help="concurrent senders for (b)")
    parser.add_argument("--samples", type=int, default=300, help="latency samples for (c)")
    parser.add_argument("--events", type=int, default=10_000, help="events before RSS (d)")
    parser.add_argument("--idle", type=float, default=2.0, help="idle seconds before RSS")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop after this")
    parser.add_argument("--cprofile", type=Path, default=None, help="cProfile the node")
    parser.add_argument(
        "--py-spy", type=Path, default=None, help="sample the node with py-spy into FILE"
    )
    parser.add_argument(
        "--pin-cpu",
        default=None,
        help="the node's process.pin_cpu (auto, off or a CPU number); default: the node's",
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory for the JSON")
    args = parser.parse_args(argv)
    if min(args.sends, args.senders, args.samples) < 1:
        parser.error("--sends, --senders and --samples must be at least 1")

    command = croft_command()
    env = child_env()
    if args.pin_cpu is not None:
        env["CROFT_PROCESS_PIN_CPU"] = args.pin_cpu
    if args.cprofile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(args.cprofile.resolve())]
        command += ["-m", "node.cli"]
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    work = Path(tempfile.mkdtemp(prefix="croft-bench-sends-"))
    proc: subprocess.Popen[bytes] | None = None
    spy_proc: subprocess.Popen[bytes] | None = None
    try:
        data_dir = work / "node"
        port = free_port()
        init = subprocess.run(
            [
                *croft_command(),
                "init",
                "--data-dir",
                str(data_dir),
                "--server-name",
                "127.0.0.1:8448",
                "--owner",
                OWNER,
                "--password",
                PASSWORD,
                "--client-listen",
                f"127.0.0.1:{port}",
                "--federation-listen",
                f"127.0.0.1:{free_port()}",
            ],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if init.returncode != 0:
            print(init.stderr, file=sys.stderr)
            return 1
        log = work / "run.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*command, "run", "--data-dir", str(data_dir)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        t0 = time.monotonic()
        while not answers(port):
            if proc.poll() is not None:
                raise RuntimeError(f"croft run exited with {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() - t0 > START_DEADLINE_S:
                raise RuntimeError(f"no answer within {START_DEADLINE_S} s:\n{log.read_text()}")
            time.sleep(0.005)
        time.sleep(args.idle)
        if args.py_spy is not None:
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            spy_args = ["record", "--pid", str(proc.pid), "--format", "raw", "--rate", "200"]
            spy_args += ["--nonblocking", "--output", str(args.py_spy.resolve())]
            spy_proc = subprocess.Popen(
                [spy, *spy_args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        results = asyncio.run(measure(f"http://127.0.0.1:{port}", proc.pid, args))
        if spy_proc is not None:
            spy_proc.send_signal(signal.SIGINT)
            spy_proc.wait(timeout=60)
        stop(proc)
    finally:
        if spy_proc is not None and spy_proc.poll() is None:
            spy_proc.kill()
            spy_proc.wait()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)

    targets: dict[str, bool] = {}
    if "sequential_sends_per_s" in results:
        targets["sequential_over_450_per_s"] = results["sequential_sends_per_s"] > TARGET_SEQUENTIAL
    if "concurrent_sends_per_s" in results:
        targets["concurrent_over_1500_per_s"] = (
            results["concurrent_sends_per_s"] > TARGET_CONCURRENT
        )
    if "latency_ms" in results:
        targets["latency_p50_under_3_ms"] = results["latency_ms"]["p50"] < TARGET_P50_MS
    targets["idle_rss_under_45_MiB"] = mib(results["idle_rss_kib"]) < TARGET_IDLE_RSS_MIB
    write_report("sends", args, [*command, "run", "--data-dir", "DIR"], results, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
