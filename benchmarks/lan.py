"""LAN discovery and healing: discovery time, cut and return detection, and convergence
after a partition with 1,000 events on each side (issue #5).

Runs three ``croft run`` nodes in the network lab of tests/discovery/lab.py (one network
namespace per node on a bridge, no default route anywhere, the driver inside the lab
namespace; ../shared/LAB.md), with LAN discovery on and logging at debug level.

Each of ``--rounds`` rounds starts three fresh nodes at once and measures:

- discovery: for every (observer, peer) pair, the peer's ``first_seen_ts`` in the
  observer's registry (node/discovery/registry.py, read read-only from its SQLite file)
  minus the observer's process spawn (also: minus the later of the two spawns, and
  minus the node's own ``started_at`` from run.json, i.e. after its imports);
- cut detection: after a random 0-2 s wait (any point of the nodes' 2 s probe cycle),
  ``Lab.cut(i)`` (node i = round mod 3), then the seconds until each other node's
  registry says i is lost and i's registry says the others are (polled every 20 ms);
- return detection: after another random wait, ``Lab.heal(i)``, then the seconds until
  all of them are alive again.

Then, on the last round's nodes: node 1 makes a room, the others join, all exchange a
message; node 3 is cut; ``--events`` messages are sent on each side (nodes 1 and 2 split
theirs) plus a topic change on each side; the cut is noticed; the link is healed; and
the clock runs until every node holds the same room events (events with outlier = 0 and
no rejection, read-only SQLite) and then the same current state (GET /rooms/{id}/state).
Also: when the first events of the other side arrive, what each node received (from
counters a sitecustomize hook keeps in each node: federation requests by kind and
outcome, transactions and PDUs received, get_missing_events calls), what the logs say
(deferred PDUs, 503s, catch-up thinning), whether every message is in every node's
/messages, CPU and RSS before and after. If the events have not converged after
``--dump-after`` seconds, ``py-spy dump`` of each node is kept in the JSON.

    python benchmarks/lan.py [--rounds 5] [--events 1000] [--senders 4]
                             [--converge-within 60] [--py-spy PREFIX] [--keep]

Needs root (network namespaces). Everything started is stopped, every namespace
deleted, on the way out. Prints a summary and writes JSON to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sends import cpu_s  # a sibling script, not a package
from startup import OUT_DIR, ROOT, proc_status, write_report

sys.path.insert(0, str(ROOT))
from node.discovery.registry import ALIVE, LOST, Peer, read_peers
from tests.discovery.lab import Lab, LabNode, run_in_netns, unavailable
from tests.discovery.scenario import current_state, room_events, setup_room
from tests.interop.users import MatrixUser

NODES = 3
POLL_S = 0.02
CONVERGE_POLL_S = 0.05
PROGRESS_EVERY_S = 0.5
DISCOVERY_WITHIN_S = 30.0
CUT_WITHIN_S = 30.0
RETURN_WITHIN_S = 20.0
STATE_WITHIN_S = 20.0
# The bounds.
BOUND_DISCOVERY_S = 5.0
BOUND_CUT_S = 10.0
BOUND_RETURN_S = 2.0
BOUND_CONVERGE_S = 10.0
PROBE_INTERVAL_S = 2.0  # the nodes' liveness check interval (node/discovery/lan.py)

# The instrumentation the nodes load as sitecustomize (benchmarks/lan_counters.py).
COUNTER_HOOK = Path(__file__).resolve().parent / "lan_counters.py"

# What the nodes' logs say (node/federation/pdus.py, sender.py, node/discovery/lan.py).
LOG_PATTERNS = {
    "deferred PDU": r"deferred PDU ",
    "dropped PDU": r"dropped PDU ",
    "get_missing_events failed": r"get_missing_events from \S+ failed",
    "catch-up thinning": r"PDUs queued; dropped",
    "HTTP 503 (sender side)": r"HTTP 503",
    "refused PDUs": r"refused \d+ of the PDUs",
    "rejected": r"\brejected \$",
    "soft-failed": r"soft-failed against",
    "peer lost": r"discovery: \S+ is lost",
    "peer alive": r"discovery: \S+ is alive",
    "ERROR or Traceback": r" ERROR |Traceback",
}
THINNED = re.compile(r"over (\d+) PDUs queued; dropped (\d+) older")


class Deadline(Exception):
    pass


class Bench:
    """The lab, its nodes, and everything the run started (stopped in ``close``)."""

    def __init__(self, lab: Lab, work: Path, args: argparse.Namespace) -> None:
        self.lab, self.work, self.args = lab, work, args
        self.deadline = time.monotonic() + args.max_seconds
        self.started: list[LabNode] = []
        self.spies: list[subprocess.Popen[bytes]] = []
        (work / "hook").mkdir()
        (work / "hook" / "sitecustomize.py").write_text(COUNTER_HOOK.read_text())

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise Deadline(f"--max-seconds {self.args.max_seconds} reached")

    def nodes(self, tag: str) -> list[LabNode]:
        out = []
        for i in range(NODES):
            data_dir = self.work / tag / f"node{i + 1}"
            env = {}
            if self.args.counters:
                env["PYTHONPATH"] = os.pathsep.join((str(ROOT), str(self.work / "hook")))
                env["BENCH_LAN_COUNTERS"] = str(data_dir / "counters.json")
            out.append(LabNode(self.lab, i, data_dir, **env))
        return out

    def start(self, nodes: list[LabNode]) -> None:
        for n in nodes:
            self.started.append(n)
            n.start()

    def close(self) -> None:
        for spy in self.spies:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
        for n in self.started:
            n.stop()


def peer_states(node: LabNode) -> dict[str, Peer]:
    peers, _ = read_peers(node.database)
    return {p.server_name: p for p in peers}


def summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


async def watch(
    bench: Bench,
    nodes: list[LabNode],
    pairs: list[tuple[int, int]],
    want: str,
    within: float,
    t0: float | None = None,
) -> dict[tuple[int, int], float | None]:
    """Seconds from ``t0`` (monotonic; default now) until node a's registry holds node b
    in state ``want``, for each pair (a, b); None for a pair that did not get there
    within ``within``."""
    t0 = time.monotonic() if t0 is None else t0
    got: dict[tuple[int, int], float | None] = {}
    while len(got) < len(pairs):
        views = {a: peer_states(nodes[a]) for a in {a for a, _ in pairs}}
        t = time.monotonic() - t0
        for a, b in pairs:
            peer = views[a].get(nodes[b].server_name)
            if (a, b) not in got and peer is not None and peer.state == want:
                got[(a, b)] = t
        if t > within:
            return {p: got.get(p) for p in pairs}
        for n in nodes:
            if not n.running:
                raise AssertionError(f"{n.server_name} exited:\n{n.tail()}")
        bench.check_deadline()
        await asyncio.sleep(POLL_S)
    return got


def pair_list(times: dict[tuple[int, int], float | None]) -> list[dict[str, Any]]:
    return [{"observer": a + 1, "peer": b + 1, "s": t} for (a, b), t in times.items()]


async def discovery_round(bench: Bench, r: int, last: bool) -> tuple[list[LabNode], dict]:
    nodes = bench.nodes(f"round{r + 1}")
    await asyncio.gather(*(asyncio.to_thread(n.init) for n in nodes))
    bench.start(nodes)
    spawn = [n.started_at for n in nodes]
    pairs = [(a, b) for a in range(NODES) for b in range(NODES) if a != b]
    await watch(bench, nodes, pairs, ALIVE, DISCOVERY_WITHIN_S)
    views = [peer_states(n) for n in nodes]
    started = [json.loads((n.data_dir / "run.json").read_text())["started_at"] for n in nodes]
    found: list[dict[str, Any]] = []
    for a, b in pairs:
        peer = views[a].get(nodes[b].server_name)
        if peer is None:
            found.append({"observer": a + 1, "peer": b + 1, "from_spawn_s": None})
            continue
        seen = peer.first_seen_ts / 1000
        found.append(
            {
                "observer": a + 1,
                "peer": b + 1,
                "from_spawn_s": seen - spawn[a],
                "from_later_spawn_s": seen - max(spawn[a], spawn[b]),
                "from_node_start_s": seen - started[a],
            }
        )
    lists_both = []
    for a in range(NODES):
        times = [f["from_spawn_s"] for f in found if f["observer"] == a + 1]
        lists_both.append(None if None in times else max(times))
    cut = r % NODES
    others = [j for j in range(NODES) if j != cut]
    cut_pairs = [(j, cut) for j in others] + [(cut, j) for j in others]
    # Cut and heal at a random point of the nodes' probe cycle (else every round would
    # cut at the same phase, just after the probe that made the discovery complete).
    waits = [random.uniform(0, PROBE_INTERVAL_S), random.uniform(0, PROBE_INTERVAL_S)]
    await asyncio.sleep(waits[0])
    bench.lab.cut(cut)
    lost = await watch(bench, nodes, cut_pairs, LOST, CUT_WITHIN_S)
    await asyncio.sleep(waits[1])
    bench.lab.heal(cut)
    back = await watch(bench, nodes, cut_pairs, ALIVE, RETURN_WITHIN_S)
    result = {
        "round": r + 1,
        "node_start_after_spawn_s": [s - p for s, p in zip(started, spawn, strict=True)],
        "discovery": found,
        "lists_both_others_from_spawn_s": lists_both,
        "cut_node": cut + 1,
        "random_waits_before_cut_and_heal_s": waits,
        "cut_noticed": pair_list(lost),
        "return_noticed": pair_list(back),
        "rss_kib": [proc_status(n.proc.pid)["VmRSS"] for n in nodes if n.proc],
    }
    if not last:
        for n in nodes:
            n.stop()
    return nodes, result


# -- the partition -----------------------------------------------------------------------


async def send_all(user: MatrixUser, room: str, bodies: list[str], senders: int) -> float:
    """Sends ``bodies`` over ``senders`` concurrent requests; seconds taken."""
    todo = iter(bodies)

    async def worker() -> None:
        for body in todo:
            await user.send(room, body)

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(senders)))
    return time.monotonic() - t0


def outbox_counts(node: LabNode) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{node.database}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT destination, COUNT(*) FROM federation_outbox_pdus GROUP BY destination"
        ).fetchall()
        return {str(d): int(c) for d, c in rows}
    finally:
        conn.close()


def counters(node: LabNode) -> dict[str, Any]:
    try:
        return dict(json.loads((node.data_dir / "counters.json").read_text()))
    except (OSError, ValueError):
        return {}


def counter_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, v in sorted(after.items()):
        b = before.get(key, {"calls": 0, "items": 0, "seconds": 0.0})
        if v["calls"] != b["calls"]:
            out[key] = {
                "calls": v["calls"] - b["calls"],
                "items": v["items"] - b["items"],
                "seconds": round(v["seconds"] - b["seconds"], 3),
            }
    return out


def scan_log(node: LabNode, offset: int) -> dict[str, Any]:
    with node.log_path.open("rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    found: dict[str, Any] = {k: len(re.findall(p, text)) for k, p in LOG_PATTERNS.items()}
    found["thinned PDUs"] = sum(int(m.group(2)) for m in THINNED.finditer(text))
    found["first lines"] = {
        k: next((ln for ln in text.splitlines() if re.search(p, ln)), None)
        for k, p in LOG_PATTERNS.items()
        if k not in ("peer lost", "peer alive")
    }
    return found


async def py_spy_dump(pid: int) -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    proc = await asyncio.create_subprocess_exec(
        exe, "dump", "--pid", str(pid), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return "py-spy dump timed out"
    return out.decode("utf-8", "replace")


def start_spies(bench: Bench, nodes: list[LabNode], prefix: Path) -> list[subprocess.Popen[bytes]]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    spies = []
    for n in nodes:
        assert n.proc is not None
        out = (prefix.parent / f"{prefix.name}-node{n.i + 1}.txt").resolve()
        # All threads, idle ones too: the wall time of the writer thread's commits shows.
        args = ["record", "--pid", str(n.proc.pid), "--format", "raw", "--rate", "200"]
        args += ["--idle", "--threads"]
        spy = subprocess.Popen(
            [exe, *args, "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        bench.spies.append(spy)
        spies.append(spy)
    return spies


async def partition(bench: Bench, nodes: list[LabNode], http: aiohttp.ClientSession) -> dict:
    args, lab = bench.args, bench.lab
    users = [
        MatrixUser(http, n.client_url, n.user_id, (n.data_dir / "tui.token").read_text().strip())
        for n in nodes
    ]
    pids = [n.proc.pid for n in nodes if n.proc is not None]
    room = await setup_room(users, nodes)
    await asyncio.sleep(1.0)
    rss_before = [proc_status(p) for p in pids]
    offsets = [n.log_path.stat().st_size for n in nodes]
    n1 = args.events // 2 if args.pair_split is None else args.pair_split
    bodies = [
        [f"one {k}" for k in range(n1)],
        [f"two {k}" for k in range(args.events - n1)],
        [f"three {k}" for k in range(args.events)],
    ]
    lab.cut(2)
    t_cut = time.monotonic()
    sent = await asyncio.gather(
        *(send_all(u, room, b, args.senders) for u, b in zip(users, bodies, strict=True)),
        users[1].put_state(room, "m.room.topic", {"topic": "from the pair"}),
        users[2].put_state(room, "m.room.topic", {"topic": "from the island"}),
    )
    sends_done = time.monotonic() - t_cut
    cut_view = [(0, 2), (1, 2), (2, 0), (2, 1)]
    noticed = await watch(bench, nodes, cut_view, LOST, CUT_WITHIN_S, t0=t_cut)
    await asyncio.sleep(0.3)  # the counters are written every 0.25 s
    held_at_heal = [room_events(n.database, room) for n in nodes]
    queued = [outbox_counts(n) for n in nodes]
    counters_at_heal = [counters(n) for n in nodes]
    cpu0 = [cpu_s(p) for p in pids]
    union = set().union(*held_at_heal)
    foreign = [union - h for h in held_at_heal]

    spies = start_spies(bench, nodes, args.py_spy) if args.py_spy else []
    lab.heal(2)
    t_heal = time.monotonic()
    first_cross: list[float | None] = [None] * NODES
    all_crossed: list[float | None] = [None] * NODES
    progress: list[list[float]] = []
    dumps: list[dict[str, Any]] = []
    converged: float | None = None
    next_dump = args.dump_after if args.dump_after > 0 else None
    held = held_at_heal
    while True:
        held = [room_events(n.database, room) for n in nodes]
        t = time.monotonic() - t_heal
        for k in range(NODES):
            if first_cross[k] is None and held[k] & foreign[k]:
                first_cross[k] = t
            if all_crossed[k] is None and held[k] >= foreign[k]:
                all_crossed[k] = t
        if not progress or t - progress[-1][0] >= PROGRESS_EVERY_S:
            progress.append([round(t, 2), *(len(h) for h in held)])
        if all(h == held[0] for h in held):
            converged = t
            break
        if t > args.converge_within:
            break
        if next_dump is not None and t >= next_dump:
            stacks = [await py_spy_dump(p) for p in pids]
            dumps.append({"at_s": t, "stacks": stacks})
            next_dump += 10.0
        bench.check_deadline()
        await asyncio.sleep(CONVERGE_POLL_S)
    progress.append([round(time.monotonic() - t_heal, 2), *(len(h) for h in held)])
    cpu = [cpu_s(p) - c for p, c in zip(pids, cpu0, strict=True)]
    state_converged: float | None = None
    states: list[dict] = []
    while time.monotonic() - t_heal < args.converge_within + STATE_WITHIN_S:
        states = [await current_state(u, room) for u in users]
        if states[0] == states[1] == states[2]:
            state_converged = time.monotonic() - t_heal
            break
        await asyncio.sleep(CONVERGE_POLL_S)
    for spy in spies:
        spy.send_signal(signal.SIGINT)
        await asyncio.to_thread(spy.wait, 60)

    expected = [b for side in bodies for b in side]
    messages = []
    for n, u in zip(nodes, users, strict=True):
        seen = [
            e["content"].get("body")
            for e in await u.history(room, 1000)
            if e["type"] == "m.room.message"
        ]
        counted = {b: 0 for b in expected}
        for b in seen:
            if b in counted:
                counted[b] += 1
        missing = [b for b, c in counted.items() if c == 0]
        messages.append(
            {
                "node": n.i + 1,
                "expected": len(expected),
                "present": len(expected) - len(missing),
                "duplicated": sum(1 for c in counted.values() if c > 1),
                "first_missing": missing[:5],
            }
        )
    topic = (await users[0].state(room, "m.room.topic")).get("topic")
    rss_after = [proc_status(p) for p in pids]
    for n in nodes:
        n.stop()  # the counters are written at exit
    counted = [counter_delta(b, counters(n)) for b, n in zip(counters_at_heal, nodes, strict=True)]
    return {
        "events_common_at_heal": len(union - set().union(*foreign)),
        "sent": {"node1": n1, "node2": args.events - n1, "node3": args.events},
        "send_s": {"node1": sent[0], "node2": sent[1], "node3": sent[2]},
        "sends_done_after_cut_s": sends_done,
        "cut_noticed_after_cut_s": pair_list(noticed),
        "held_at_heal": [len(h) for h in held_at_heal],
        "missing_at_heal": [len(f) for f in foreign],
        "queued_pdus_at_heal": queued,
        "first_events_cross_s": first_cross,
        "all_foreign_events_in_s": all_crossed,
        "events_converged_s": converged,
        "events_final": [len(h) for h in held],
        "state_converged_s": state_converged,
        "state_entries": [len(s) for s in states],
        "topic": topic,
        "messages": messages,
        "progress_s_and_counts": progress,
        "cpu_s_heal_to_converged": cpu,
        "rss_kib_before": [r["VmRSS"] for r in rss_before],
        "rss_kib_after": [r["VmRSS"] for r in rss_after],
        "hwm_kib_after": [r["VmHWM"] for r in rss_after],
        "counters_after_heal": counted,
        "logs_from_cut": [scan_log(n, o) for n, o in zip(nodes, offsets, strict=True)],
        "py_spy_dumps": dumps,
    }


async def measure(bench: Bench) -> dict[str, Any]:
    results: dict[str, Any] = {"lab": bench.lab.name, "rounds": []}
    try:
        nodes: list[LabNode] = []
        for r in range(bench.args.rounds):
            last = r == bench.args.rounds - 1
            nodes, result = await discovery_round(bench, r, last and bench.args.partition)
            results["rounds"].append(result)
            print_round(result)
        if bench.args.partition:
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                for n in nodes:
                    await n.wait_ready(http)
                results["partition"] = await partition(bench, nodes, http)
    except Deadline as e:
        results["stopped_early"] = str(e)
    except AssertionError as e:
        results["failed"] = repr(e)
        print(f"failed: {e!r}", file=sys.stderr)
    finally:
        bench.close()
    return results


# -- report ------------------------------------------------------------------------------


def fmt(s: dict[str, float] | None) -> str:
    if s is None:
        return "n/a"
    return f"{s['min']:.2f} / {s['median']:.2f} / {s['max']:.2f} s"


def print_round(r: dict[str, Any]) -> None:
    lost = seconds([p["s"] for p in r["cut_noticed"]])
    back = seconds([p["s"] for p in r["return_noticed"]])
    print(
        f"round {r['round']}: each node lists both others"
        f" {seconds(r['lists_both_others_from_spawn_s'])} s after its spawn; node"
        f" {r['cut_node']} cut: lost after {lost} s, back after {back} s",
        flush=True,
    )


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    rounds = results["rounds"]

    def values(key: str, field: str, pred: Any = lambda p, r: True) -> list[float]:
        return [p[field] for r in rounds for p in r[key] if p.get(field) is not None and pred(p, r)]

    out: dict[str, Any] = {
        "discovery_from_spawn": summary(values("discovery", "from_spawn_s")),
        "discovery_from_later_spawn": summary(values("discovery", "from_later_spawn_s")),
        "discovery_from_node_start": summary(values("discovery", "from_node_start_s")),
        "lists_both_from_spawn": summary(
            [t for r in rounds for t in r["lists_both_others_from_spawn_s"] if t is not None]
        ),
        "cut_noticed_by_peers": summary(
            values("cut_noticed", "s", lambda p, r: p["peer"] == r["cut_node"])
        ),
        "cut_noticed_by_cut_node": summary(
            values("cut_noticed", "s", lambda p, r: p["observer"] == r["cut_node"])
        ),
        "return_noticed_by_peers": summary(
            values("return_noticed", "s", lambda p, r: p["peer"] == r["cut_node"])
        ),
        "return_noticed_by_cut_node": summary(
            values("return_noticed", "s", lambda p, r: p["observer"] == r["cut_node"])
        ),
        "missed": sum(
            1
            for r in rounds
            for key, field in (("discovery", "from_spawn_s"), ("cut_noticed", "s"))
            for p in r[key]
            if p.get(field) is None
        )
        + sum(1 for r in rounds for p in r["return_noticed"] if p["s"] is None),
    }
    return out


def seconds(values: list[float | None] | float | None) -> str:
    if isinstance(values, list):
        return " ".join(seconds(v) for v in values)
    return "-" if values is None else f"{values:.2f}"


def received(counted: dict[str, Any]) -> dict[str, int]:
    """PDUs received in transactions, events fetched with get_missing_events, 503s."""
    out = {"transactions": 0, "pdus": 0, "gme_calls": 0, "gme_events": 0, "503s": 0}
    for key, v in counted.items():
        if key.startswith("received transaction from"):
            out["transactions"] += v["calls"]
            out["pdus"] += v["items"]
        elif key.startswith("request POST get_missing_events"):
            out["gme_calls"] += v["calls"]
            out["gme_events"] += v["items"]
        elif key.startswith("request PUT send") and key.endswith("503"):
            out["503s"] += v["calls"]
    return out


def print_partition(p: dict[str, Any]) -> None:
    print("\npartition (node 3 cut), per node 1 2 3:")
    print(f"  messages sent {list(p['sent'].values())} in {seconds(list(p['send_s'].values()))} s")
    print(
        f"  cut noticed {seconds([x['s'] for x in p['cut_noticed_after_cut_s']])} s after the cut"
    )
    print(f"  held at heal {p['held_at_heal']}; PDUs queued {p['queued_pdus_at_heal']}")
    print(f"  first events of the other side in {seconds(p['first_events_cross_s'])} s after heal")
    print(f"  all the other side's events in    {seconds(p['all_foreign_events_in_s'])} s")
    print(
        f"  same events {seconds(p['events_converged_s'])} s, same state "
        f"{seconds(p['state_converged_s'])} s after heal ({p['events_final']} events)"
    )
    for k, counted in enumerate(p["counters_after_heal"]):
        r = received(counted)
        print(
            f"  node {k + 1} received {r['pdus']} PDUs in {r['transactions']} transactions,"
            f" {r['gme_events']} events in {r['gme_calls']} get_missing_events, {r['503s']} 503s"
        )
    for m in p["messages"]:
        print(
            f"  node {m['node']} /messages: {m['present']}/{m['expected']} messages,"
            f" {m['duplicated']} duplicated"
        )
    for k, logs in enumerate(p["logs_from_cut"]):
        notable = {
            key: v for key, v in logs.items() if key != "first lines" and v and "peer" not in key
        }
        print(f"  node {k + 1} log: {notable or 'nothing notable'}")


def print_summary(results: dict[str, Any], s: dict[str, Any]) -> dict[str, bool]:
    print(f"\n{len(results['rounds'])} rounds, min / median / max:")
    for key, label in (
        ("lists_both_from_spawn", "a node lists both others, from its spawn"),
        ("discovery_from_spawn", "discovery per pair, from the observer's spawn"),
        ("discovery_from_later_spawn", "discovery per pair, from the later spawn"),
        ("discovery_from_node_start", "discovery per pair, from run.json started_at"),
        ("cut_noticed_by_peers", "cut noticed by the other two"),
        ("cut_noticed_by_cut_node", "cut noticed by the cut node"),
        ("return_noticed_by_peers", "return noticed by the other two"),
        ("return_noticed_by_cut_node", "return noticed by the returning node"),
    ):
        print(f"  {label:48} {fmt(s[key])}")
    targets: dict[str, bool] = {}
    if s["lists_both_from_spawn"]:
        targets["each_node_lists_both_within_5_s"] = (
            s["lists_both_from_spawn"]["max"] < BOUND_DISCOVERY_S and s["missed"] == 0
        )
    if s["cut_noticed_by_peers"]:
        targets["cut_noticed_within_10_s"] = (
            max(s["cut_noticed_by_peers"]["max"], s["cut_noticed_by_cut_node"]["max"]) < BOUND_CUT_S
        )
        targets["return_noticed_within_2_s"] = (
            max(s["return_noticed_by_peers"]["max"], s["return_noticed_by_cut_node"]["max"])
            < BOUND_RETURN_S
        )
    p = results.get("partition")
    if p is not None:
        print_partition(p)
        rss = zip(p["rss_kib_before"], p["rss_kib_after"], strict=True)
        print(
            "  RSS before -> after (MiB): "
            + ", ".join(f"{a / 1024:.1f} -> {b / 1024:.1f}" for a, b in rss)
        )
        converged = p["events_converged_s"]
        state = p["state_converged_s"]
        targets["converged_within_10_s"] = (
            converged is not None and state is not None and max(converged, state) < BOUND_CONVERGE_S
        )
        targets["every_message_everywhere"] = all(
            m["present"] == m["expected"] and m["duplicated"] == 0 for m in p["messages"]
        )
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="discovery/cut/return rounds")
    parser.add_argument("--events", type=int, default=1000, help="messages on each side")
    parser.add_argument("--pair-split", type=int, default=None, help="node 1's share (half)")
    parser.add_argument("--senders", type=int, default=4, help="concurrent sends per node")
    parser.add_argument("--converge-within", type=float, default=60.0, help="give up after")
    parser.add_argument("--dump-after", type=float, default=10.0, help="py-spy dump if slower")
    parser.add_argument("--no-partition", dest="partition", action="store_false")
    parser.add_argument("--no-counters", dest="counters", action="store_false")
    parser.add_argument("--py-spy", type=Path, default=None, help="py-spy into PREFIX-node*.txt")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop after this")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory for the JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.events < 1 or args.senders < 1:
        parser.error("--rounds, --events and --senders must be at least 1")
    reason = unavailable()
    if reason is not None:
        print(f"cannot run the lab here: {reason}", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="croft-bench-lan-"))
    lab = Lab(NODES)
    try:
        lab.up()
        bench = Bench(lab, work, args)
        results = run_in_netns(lab.name, lambda: measure(bench))
    finally:
        lab.down()
        if args.keep:
            print(f"data directories and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    s = summarise(results) if results["rounds"] else {}
    results["summary"] = s
    targets = print_summary(results, s) if s else {}
    write_report(
        "lan",
        args,
        [sys.executable, "-m", "node.cli", "run", "--data-dir", "DIR"],
        results,
        targets,
    )
    return 1 if "failed" in results else 0


if __name__ == "__main__":
    sys.exit(main())
