"""Idle memory of `croft run` per device profile, with LAN discovery off and on.

For each profile (``--profiles``) and each mode (``--modes``):

- ``off``: `croft init --profile P` with both listeners on free 127.0.0.1 ports, then
  `croft run` with ``CROFT_FEATURES_DISCOVERY=false`` (no mDNS stack loaded at all);
- ``on``: the profile's real defaults (``features.discovery`` on, federation on
  0.0.0.0): zeroconf loads, announces and browses. This runs only in a private
  network namespace that has nothing but a loopback (``unshare -n``, ../shared/LAB.md):
  the script runs itself again there (``--in-namespace``), and that copy refuses to
  run when it sees any interface but ``lo``. Needs root.

Each of ``--runs`` runs starts `croft run`, waits for ``GET /_matrix/client/versions``
to answer 200 (and, with discovery on, for the log's ``discovery: announcing``), then
samples ``/proc/PID/status`` every 0.5 s for ``--idle`` seconds and reports the last
sample (VmRSS, RssAnon, RssFile, VmHWM, and Pss from smaps_rollup) and the largest
VmRSS seen while idle; then SIGTERM. A first, unmeasured run caches bytecode. The
child gets the clean environment of benchmarks/startup.py.

    python benchmarks/idle_rss.py [--runs 3] [--idle 5] [--profiles iot-sensor,...]
                                  [--modes off,on]

Prints a table and writes JSON to benchmarks/out/. The issue's target: the iot-sensor
node under 40 MB (38.15 MiB) idle.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import (
    OUT_DIR,
    answers,
    child_env,
    croft_command,
    free_port,
    proc_memory,
    stop,
    write_report,
)

PROFILES = ("laptop", "raspberry-pi", "iot-sensor")
TARGET_MIB = 40e6 / 2**20  # "under 40 MB"
START_DEADLINE_S = 30.0
SAMPLE_S = 0.5


def init(
    data_dir: Path, profile: str, client_port: int, federation: str, env: dict[str, str]
) -> None:
    result = subprocess.run(
        [
            *croft_command(),
            "init",
            "--data-dir",
            str(data_dir),
            "--profile",
            profile,
            "--server-name",
            "bench.local",
            "--owner",
            "bench",
            "--password",
            "benchmark password",
            "--client-listen",
            f"127.0.0.1:{client_port}",
            "--federation-listen",
            federation,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"croft init failed: {result.stderr}")


def one_run(
    data_dir: Path, port: int, env: dict[str, str], idle_s: float, discovery: bool, log: Path
) -> dict[str, Any]:
    with log.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [*croft_command(), "run", "--data-dir", str(data_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        while not answers(port) or (discovery and "discovery: announcing" not in log.read_text()):
            if proc.poll() is not None:
                raise RuntimeError(f"croft run exited with {proc.returncode}:\n{log.read_text()}")
            if time.perf_counter() - t0 > START_DEADLINE_S:
                raise RuntimeError(f"not up within {START_DEADLINE_S} s:\n{log.read_text()}")
            time.sleep(0.02)
        up_s = time.perf_counter() - t0
        peak = 0
        end = time.monotonic() + idle_s
        while True:
            m = proc_memory(proc.pid)
            peak = max(peak, m["VmRSS"])
            if time.monotonic() >= end:
                break
            time.sleep(SAMPLE_S)
        text = log.read_text(errors="replace")
        if discovery and "discovery: not started" in text:
            raise RuntimeError(f"discovery did not start:\n{text}")
        return {
            "up_s": up_s,
            "vm_rss_kib": m["VmRSS"],
            "rss_anon_kib": m["RssAnon"],
            "rss_file_kib": m["RssFile"],
            "vm_hwm_kib": m["VmHWM"],
            "pss_kib": m["Pss"],
            "idle_peak_rss_kib": peak,
            "exit_status": stop(proc),
        }
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def measure(profile: str, discovery: bool, runs: int, idle_s: float) -> dict[str, Any]:
    """Fresh data directory, one warm-up run, ``runs`` measured runs."""
    work = Path(tempfile.mkdtemp(prefix="croft-rss-"))
    try:
        port = free_port()
        env = child_env()  # CROFT_FEATURES_DISCOVERY=false
        federation = f"127.0.0.1:{free_port()}"
        if discovery:
            env.pop("CROFT_FEATURES_DISCOVERY")
            federation = "0.0.0.0:8448"
        data_dir = work / "node"
        init(data_dir, profile, port, federation, env)
        log = work / "run.log"
        one_run(data_dir, port, env, 0.0, discovery, log)  # caches bytecode
        per_run = [one_run(data_dir, port, env, idle_s, discovery, log) for _ in range(runs)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "profile": profile,
        "discovery": discovery,
        "median": {k: statistics.median(r[k] for r in per_run) for k in per_run[0]},
        "per_run": per_run,
    }


def only_loopback() -> bool:
    """The interfaces of this process's network namespace (/sys/class/net may show
    another's: sysfs is not mounted again by `unshare -n`)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def in_namespace(args: argparse.Namespace) -> int:
    """The copy of this script inside `unshare -n`: discovery on, JSON on stdout."""
    if not only_loopback():
        print("refusing: this network namespace has more than a loopback", file=sys.stderr)
        return 2
    results = [measure(p, True, args.runs, args.idle) for p in args.profiles]
    print(json.dumps(results))
    return 0


def in_private_namespace(args: argparse.Namespace) -> list[dict[str, Any]]:
    if shutil.which("unshare") is None:
        raise RuntimeError("discovery on needs unshare(1) and root")
    cmd = [
        "unshare",
        "-n",
        "sh",
        "-c",
        'ip link set lo up && exec "$@"',
        "sh",
        sys.executable,
        str(Path(__file__).resolve()),
        "--in-namespace",
        "--runs",
        str(args.runs),
        "--idle",
        str(args.idle),
        "--profiles",
        ",".join(args.profiles),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"namespace run failed:\n{result.stderr}")
    data: list[dict[str, Any]] = json.loads(result.stdout.splitlines()[-1])
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs per case (default 3)")
    parser.add_argument("--idle", type=float, default=5.0, help="idle seconds sampled")
    parser.add_argument(
        "--profiles",
        type=lambda s: s.split(","),
        default=list(PROFILES),
        help="comma-separated (default: all three)",
    )
    parser.add_argument(
        "--modes", type=lambda s: s.split(","), default=["off", "on"], help="discovery off,on"
    )
    parser.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory for the JSON")
    args = parser.parse_args(argv)
    if args.in_namespace:
        return in_namespace(args)

    results: list[dict[str, Any]] = []
    if "off" in args.modes:
        results += [measure(p, False, args.runs, args.idle) for p in args.profiles]
    if "on" in args.modes:
        results += in_private_namespace(args)

    print(
        f"\n{'profile':14} {'discovery':9} {'RSS MiB':>8} {'anon':>6} {'file':>6} "
        f"{'PSS':>6} {'peak':>6}   (median of {args.runs} runs, {args.idle:g} s idle)"
    )
    for r in results:
        m = r["median"]
        print(
            f"{r['profile']:14} {'on' if r['discovery'] else 'off':9} "
            f"{m['vm_rss_kib'] / 1024:8.2f} {m['rss_anon_kib'] / 1024:6.2f} "
            f"{m['rss_file_kib'] / 1024:6.2f} {m['pss_kib'] / 1024:6.2f} "
            f"{m['idle_peak_rss_kib'] / 1024:6.2f}"
        )
    targets = {
        f"iot-sensor_discovery_{'on' if r['discovery'] else 'off'}_idle_rss_under_40_MB": (
            r["median"]["vm_rss_kib"] / 1024 < TARGET_MIB
        )
        for r in results
        if r["profile"] == "iot-sensor"
    }
    write_report("idle_rss", args, [*croft_command(), "run"], {"cases": results}, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
