"""Call setup time, and CPU and memory during a call, between two `croft call` agents.

In the network lab (../shared/LAB.md: two host namespaces on a bridge, no default
route; needs root and `ip netns`): a `croft run` per host, federating over the LAN;
owner 2's agent answers (``--auto-answer``, sending an 880 Hz tone), owner 1's agent
calls ``--calls`` times (sending 440 Hz) and hangs up after ``--seconds``. For each call:

- setup: the caller's invite to its media being up (ICE + DTLS), and to the first
  received audio frame (both from the agents' JSON lines);
- during the call: each agent's CPU (utime + stime from /proc, sampled at the start
  and the end of the connected part) in % of one CPU, and its RSS (VmRSS, the
  peak of samples every 0.25 s) -- the agent is the whole process: Python, aiohttp,
  aiortc, Opus both ways;
- the received tone's frequency and level (a check that audio really flowed).

    sudo .venv/bin/python benchmarks/calls.py [--calls 5] [--seconds 10]

Prints a table and writes JSON to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import OUT_DIR, ROOT, write_report  # a sibling script, not a package

sys.path.insert(0, str(ROOT))
from tests.calls.test_agent_lab import agent, finished, two_nodes_in_a_room
from tests.discovery.lab import Lab, LabNode, run_in_netns, unavailable

SAMPLE_S = 0.25


def proc_cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = 100.0  # os.sysconf("SC_CLK_TCK") on Linux
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def one_call(nodes: list[LabNode], room: str, seconds: float) -> dict[str, Any]:
    callee = agent(nodes[1], room, "--auto-answer", "--once", "--tone", "880")
    await asyncio.sleep(1.5)  # the callee's first /sync
    caller = agent(nodes[0], room, "--tone", "440", "--hangup-after", str(seconds))
    peak = {"caller": 0.0, "callee": 0.0}
    cpu_start: dict[str, float | None] = {}
    t_start = time.monotonic()
    while caller.poll() is None:
        for name, proc in (("caller", caller), ("callee", callee)):
            rss = proc_rss_mib(proc.pid)
            if rss is not None:
                peak[name] = max(peak[name], rss)
        # The connected part starts about 1 s after the caller starts (setup + margin).
        if not cpu_start and time.monotonic() - t_start > 1.5:
            cpu_start = {"caller": proc_cpu_s(caller.pid), "callee": proc_cpu_s(callee.pid)}
            t_cpu = time.monotonic()
        if cpu_start and time.monotonic() - t_start > seconds:
            cpu_end = {"caller": proc_cpu_s(caller.pid), "callee": proc_cpu_s(callee.pid)}
            span = time.monotonic() - t_cpu
            break
        await asyncio.sleep(SAMPLE_S)
    else:
        cpu_end, span = {}, 0.0
    a_status, a_reports = await finished(caller, "caller")
    b_status, b_reports = await finished(callee, "callee")
    if a_status != 0 or b_status != 0 or not a_reports or not b_reports:
        raise RuntimeError(f"the call failed: {a_status} {a_reports} / {b_status} {b_reports}")
    a, b = a_reports[-1], b_reports[-1]
    share = {}
    for name in ("caller", "callee"):
        c0, c1 = cpu_start.get(name), cpu_end.get(name)
        share[name] = None if c0 is None or c1 is None or span <= 0 else 100 * (c1 - c0) / span
    return {
        "setup_ms": a["setup_ms"],
        "first_audio_ms": a["first_audio_ms"],
        "callee_first_audio_ms": b["first_audio_ms"],
        "cpu_share": share,
        "rss_peak_mib": peak,
        "heard": {"caller_hz": a["frequency_hz"], "callee_hz": b["frequency_hz"]},
        "levels_dbfs": {"caller": a["level_dbfs"], "callee": b["level_dbfs"]},
        "seconds": a["seconds"],
    }


def summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "p50": round(statistics.median(values), 1),
        "max": round(values[-1], 1),
        "min": round(values[0], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5, help="calls to measure")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each call")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory for the JSON")
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason is not None:
        print(f"calls benchmark: needs the network lab: {reason}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="croft-calls-"))
    lab = Lab(2)
    calls: list[dict[str, Any]] = []
    try:
        lab.up()

        async def run() -> None:
            async with two_nodes_in_a_room(lab, work) as (nodes, room):
                for i in range(args.calls):
                    calls.append(await one_call(nodes, room, args.seconds))
                    print(f"call {i + 1}/{args.calls}: {calls[-1]}", flush=True)

        run_in_netns(lab.name, run)
    finally:
        lab.down()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    results = {
        "setup_ms": summary([c["setup_ms"] for c in calls]),
        "first_audio_ms": summary([c["first_audio_ms"] for c in calls]),
        "cpu_pct_caller": summary([c["cpu_share"]["caller"] for c in calls]),
        "cpu_pct_callee": summary([c["cpu_share"]["callee"] for c in calls]),
        "rss_peak_mib_caller": summary([c["rss_peak_mib"]["caller"] for c in calls]),
        "rss_peak_mib_callee": summary([c["rss_peak_mib"]["callee"] for c in calls]),
        "calls": calls,
    }
    print(f"\n{args.calls} calls of {args.seconds:.0f} s between two lab namespaces:")
    for key in ("setup_ms", "first_audio_ms", "cpu_pct_caller", "cpu_pct_callee"):
        print(f"  {key:24} {results[key]}")
    for key in ("rss_peak_mib_caller", "rss_peak_mib_callee"):
        print(f"  {key:24} {results[key]}")
    command = [sys.executable, *sys.argv]
    write_report("calls", args, command, results, {})
    return 0


if __name__ == "__main__":
    sys.exit(main())
