"""The iot-sensor profile at work (issue #6, "what it must show" 4): a ``croft run`` on
the iot-sensor profile publishing sensor readings into a room shared with a
``croft run`` on the laptop profile, both on loopback (LAN discovery off: see
benchmarks/README.md; idle_rss.py measures what discovery adds).

1. RSS of the sensor node idle (room set up, sources configured, no readings yet),
   sampled every 0.5 s for ``--idle`` seconds.
2. RSS while it publishes 10 readings/s (one file source, interval 0.1 s) for
   ``--publish`` seconds, and the delay from a reading being taken (its ``ts``) to the
   laptop's client seeing it in /sync.
3. Store size per 10,000 readings: the sensor node restarted with four fast sources
   (400 readings/s) publishes ``--readings`` more; the growth of each node's database
   files (croft.db, -wal) is divided by the readings, on the sensor node (history budget
   2,000 timeline events per room: the rest leaves its store) and on the laptop (keeps
   them all).
4. Backfill time for 1,000 events: the sensor node's owner pages /messages back (100
   per page) past its cache, the sensor node fetching each page from the laptop
   (/backfill); the time for the first 1,000 events fetched again.

Target (issue #6): RSS under 40 MB (38.1 MiB) idle and while publishing 10/s.

    .venv/bin/python benchmarks/sensor.py [--idle 20] [--publish 60] [--readings 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from startup import OUT_DIR, ROOT, child_env, percentile, write_report

sys.path.insert(0, str(ROOT))
from tests.interop.croft_node import CroftProcess  # the interop harness
from tests.interop.test_sensor_history import read_db, readings_taken
from tests.interop.users import MatrixUser, invite_and_join, timeline

READING = "io.croft.sensor.reading"
TARGET_RSS_MIB = 40e6 / 2**20  # "under 40 MB"
MIB = 2**20


class BenchCroft(CroftProcess):
    """``croft run`` with the benchmarks' clean environment plus its own settings."""

    def _env(self) -> dict[str, str]:
        return child_env(**self.env)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def store_bytes(node: CroftProcess) -> int:
    return sum(p.stat().st_size for p in node.data_dir.glob("croft.db*") if p.is_file())


def file_sizes(node: CroftProcess) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in node.data_dir.glob("croft.db*") if p.is_file()}


def biggest_tables(node: CroftProcess, n: int = 8) -> dict[str, int]:
    """Bytes per table and index (SQLite's dbstat), the largest first."""
    rows = read_db(
        node, f"SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT {n}"
    )
    return {str(r[0]): int(r[1]) for r in rows}


def configure(node: CroftProcess, reading_file: Path, sources: int, interval: float) -> None:
    """Replace the node's sensor sources (kept after the [sensors] settings)."""
    node.init()
    path = node.data_dir / "config.toml"
    text = path.read_text("utf-8").split("\n# -- bench sources --\n")[0]
    if "rate_per_room = 1000.0" not in text:
        text = text.replace(
            "\n[sensors]\n", "\n[sensors]\nrate_per_room = 1000.0\nburst_per_room = 200\n", 1
        )
    text += "\n# -- bench sources --\n"
    for i in range(sources):
        text += (
            f'\n[[sensors.source]]\nid = "s{i}"\nkind = "file"\npath = "{reading_file}"\n'
            f'unit = "°C"\nscale = 0.001\ninterval = {interval}\n'
            f'room = "#sensors:{node.server_name}"\n'
        )
    path.write_text(text, "utf-8")


async def sample_rss(pid: int, seconds: float, every: float = 0.5) -> list[float]:
    out: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(rss_kib(pid) / 1024)
        await asyncio.sleep(every)
    return out


def rss_summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_mib": round(statistics.median(samples), 1),
        "max_mib": round(max(samples), 1),
        "samples": len(samples),
    }


async def follow(user: MatrixUser, room: str, until: float, delays: list[float]) -> int:
    """Long-poll /sync until ``until``; the delay of each reading (now - its ts)."""
    seen = 0
    while time.monotonic() < until:
        path = f"/sync?timeout=1000&since={user.since}" if user.since else "/sync"
        response = await user.call("GET", path)
        user.since = response["next_batch"]
        now_ms = time.time() * 1000
        for e in timeline(response, room):
            if e["type"] == READING:
                seen += 1
                delays.append((now_ms - e["content"]["ts"]) / 1000)
    return seen


async def wait_until(check: Any, within: float, what: str) -> None:
    end = time.monotonic() + within
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(what)
        await asyncio.sleep(0.2)


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    reading_file = work / "reading"
    async with aiohttp.ClientSession() as http, AsyncExitStack() as stack:
        laptop = BenchCroft(work / "laptop")
        stack.push_async_callback(laptop.stop)
        await laptop.start()
        sensor = BenchCroft(
            work / "sensor", profile="iot-sensor", env={"CROFT_FEATURES_DISCOVERY": "false"}
        )
        stack.push_async_callback(sensor.stop)
        await asyncio.to_thread(configure, sensor, reading_file, 1, 0.1)
        await sensor.start()
        alice = MatrixUser(http, sensor.client_url, sensor.user_id, sensor.tui_token)
        bob = MatrixUser(http, laptop.client_url, laptop.user_id, laptop.tui_token)
        room = await alice.create_room(name="readings", room_alias_name="sensors")
        await invite_and_join(alice, bob, room, sensor.server_name)

        # 1. Idle.
        await asyncio.sleep(2)
        idle = await sample_rss(sensor.pid, args.idle)
        results["idle_rss"] = rss_summary(idle)
        print(f"idle RSS: median {results['idle_rss']['median_mib']} MiB")

        # 2. Publishing 10 readings/s.
        reading_file.write_text("21500\n")
        delays: list[float] = []
        until = time.monotonic() + args.publish
        follower = asyncio.create_task(follow(bob, room, until + 1, delays))
        publishing = await sample_rss(sensor.pid, args.publish)
        seen = await follower
        reading_file.unlink()
        results["publishing_10_per_s"] = {
            **rss_summary(publishing),
            "readings_seen_on_laptop": seen,
            "readings_per_s": round(seen / args.publish, 1),
            "delay_to_laptop_sync_ms": {
                "p50": round(percentile(delays, 0.5) * 1000, 1),
                "p95": round(percentile(delays, 0.95) * 1000, 1),
            }
            if delays
            else {},
        }
        print(
            f"publishing 10/s: RSS median {results['publishing_10_per_s']['median_mib']} MiB,"
            f" max {results['publishing_10_per_s']['max_mib']} MiB; {seen} readings seen"
        )

        # 3. Store size per 10,000 readings.
        await sensor.stop()
        await asyncio.to_thread(configure, sensor, reading_file, 4, 0.01)
        await sensor.start()
        await asyncio.sleep(1)
        before = {"sensor": store_bytes(sensor), "laptop": store_bytes(laptop)}
        start_taken = readings_taken(sensor)
        reading_file.write_text("21500\n")
        t0 = time.monotonic()
        peak = 0.0
        while readings_taken(sensor) < start_taken + args.readings:
            peak = max(peak, rss_kib(sensor.pid) / 1024)
            await asyncio.sleep(0.2)
        reading_file.unlink()
        published = readings_taken(sensor) - start_taken
        elapsed = time.monotonic() - t0
        await wait_until(
            lambda: not read_db(sensor, "SELECT 1 FROM federation_outbox_pdus LIMIT 1"),
            300,
            "the sensor's queue to the laptop emptied",
        )
        await asyncio.sleep(3)  # the last eviction sweep and checkpoint
        after = {"sensor": store_bytes(sensor), "laptop": store_bytes(laptop)}
        cached = read_db(
            sensor,
            "SELECT COUNT(*) FROM events WHERE room_id = ? AND state_key IS NULL",
            (room,),
        )[0][0]
        results["store_per_10000_readings"] = {
            "readings": published,
            "published_in_s": round(elapsed, 1),
            "sensor_peak_rss_mib_at_400_per_s": round(peak, 1),
            "sensor_bytes_per_10000": round(
                (after["sensor"] - before["sensor"]) * 10000 / published
            ),
            "laptop_bytes_per_10000": round(
                (after["laptop"] - before["laptop"]) * 10000 / published
            ),
            "sensor_store_mib": round(after["sensor"] / MIB, 2),
            "laptop_store_mib": round(after["laptop"] / MIB, 2),
            "sensor_timeline_events_cached": cached,
            "sensor_files": file_sizes(sensor),
            "laptop_files": file_sizes(laptop),
            "sensor_tables": biggest_tables(sensor),
            "laptop_tables": biggest_tables(laptop),
        }
        print(f"store: {results['store_per_10000_readings']}")

        # 4. Backfill time for 1,000 events.
        evicted_before = read_db(
            sensor, "SELECT COUNT(*) FROM evicted_events WHERE room_id = ?", (room,)
        )[0][0]
        rss_before = rss_kib(sensor.pid) / 1024
        start = ""
        got = 0
        pages: list[float] = []
        t0 = time.monotonic()
        t_first_evicted: float | None = None
        while True:
            t1 = time.monotonic()
            page = await alice.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit=100{start}")
            pages.append(time.monotonic() - t1)
            got += len(page["chunk"])
            if t_first_evicted is None and got > cached:
                t_first_evicted = t1
            evicted_now = read_db(
                sensor, "SELECT COUNT(*) FROM evicted_events WHERE room_id = ?", (room,)
            )[0][0]
            if evicted_before - evicted_now >= 1000 or "end" not in page:
                break
            start = f"&from={quote(page['end'])}"
        fetched = evicted_before - evicted_now
        spent = time.monotonic() - (t_first_evicted or t0)
        results["backfill_1000"] = {
            "events_fetched_again": fetched,
            "seconds": round(spent, 2),
            "events_per_s": round(fetched / spent) if spent else None,
            "page_ms": {
                "p50": round(percentile(pages, 0.5) * 1000, 1),
                "max": round(max(pages) * 1000, 1),
            },
            "sensor_rss_mib_before_after": [
                round(rss_before, 1),
                round(rss_kib(sensor.pid) / 1024, 1),
            ],
        }
        print(f"backfill: {results['backfill_1000']}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle sampling")
    parser.add_argument("--publish", type=float, default=60.0, help="seconds at 10 readings/s")
    parser.add_argument("--readings", type=int, default=10_000, help="readings for the size")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory for the JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="croft-sensor-bench-") as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    targets = {
        "idle RSS under 40 MB": results["idle_rss"]["max_mib"] < TARGET_RSS_MIB,
        "RSS at 10 readings/s under 40 MB": results["publishing_10_per_s"]["max_mib"]
        < TARGET_RSS_MIB,
    }
    write_report("sensor", args, sys.argv, results, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
