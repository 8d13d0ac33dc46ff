"""Start-up time and idle memory of `croft run`.

Makes a fresh data directory with `croft init` (client and federation listeners on
free 127.0.0.1 ports), then starts `croft run` on it ``--runs`` times. For each run
it measures the wall time from spawning the process to the first ``200`` answer of
``GET /_matrix/client/versions`` (probed every 5 ms over a raw socket), lets the node
sit idle (2 s by default), reads VmRSS and VmHWM from /proc/PID/status, and stops
it with SIGTERM. One extra run, not timed, counts the modules the process imported
(a sitecustomize hook writes ``len(sys.modules)`` at exit).

Prints a table and writes the numbers as JSON to benchmarks/out/. Everything runs
on 127.0.0.1; everything started is killed on the way out.

    python benchmarks/startup.py [--runs 10] [--idle 2] [--profile NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = Path(__file__).resolve().parent / "out"

TARGET_STARTUP_S = 0.5  # Synapse: ~1.5 s
TARGET_IDLE_RSS_MIB = 45.0  # Synapse: ~122 MB
PROBE_INTERVAL_S = 0.005
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 20.0

REQUEST = b"GET /_matrix/client/versions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

MODULE_HOOK = """\
import atexit, os, sys

@atexit.register
def _count_modules():
    with open(os.environ["BENCH_MODULES_FILE"], "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
"""


@dataclass
class Run:
    startup_s: float
    vm_rss_kib: int
    vm_hwm_kib: int
    rss_anon_kib: int  # private memory: the Python heap, malloc, thread stacks
    rss_file_kib: int  # mapped files: libpython, OpenSSL, SQLite, extension modules
    pss_kib: int  # RSS with shared pages divided among the processes sharing them
    exit_status: int


def croft_command() -> list[str]:
    """The installed console script next to this Python, else ``python -m node.cli``."""
    script = Path(sys.executable).parent / "croft"
    return [str(script)] if script.exists() else [sys.executable, "-m", "node.cli"]


def child_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # No outside configuration, no proxies. Bytecode is cached as after an install
        # (pip compiles it): the warm-up run writes what is missing.
        if not k.startswith("CROFT_")
        and not k.lower().endswith("_proxy")
        and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")
    }
    if croft_command()[0] == sys.executable:  # not installed: run from the source tree
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    # Never announce on the machine's own interfaces (../shared/LAB.md); the LAN
    # benchmark (benchmarks/lan.py) runs its nodes in network namespaces.
    env["CROFT_FEATURES_DISCOVERY"] = "false"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: int) -> bool:
    """One cheap probe: connect, send the request, read the status line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(REQUEST)
            head = s.recv(64)
    except OSError:
        return False
    return head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))


def proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])  # kB
    return out


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile (/proc/PID/status) and Pss (smaps_rollup), in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "Pss":
                    out["Pss"] = int(value.split()[0])
    except OSError:  # older kernels
        out["Pss"] = 0
    return out


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError("croft run did not stop within 20 s of SIGTERM") from None


def one_run(
    data_dir: Path, port: int, args: list[str], idle_s: float, env: dict[str, str], log: Path
) -> Run:
    with log.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [*croft_command(), "run", "--data-dir", str(data_dir), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        while True:
            if answers(port):
                startup = time.perf_counter() - t0
                break
            if proc.poll() is not None:
                raise RuntimeError(f"croft run exited with {proc.returncode}:\n{log.read_text()}")
            if time.perf_counter() - t0 > START_DEADLINE_S:
                raise RuntimeError(f"no answer within {START_DEADLINE_S} s:\n{log.read_text()}")
            time.sleep(PROBE_INTERVAL_S)
        time.sleep(idle_s)
        m = proc_memory(proc.pid)
        return Run(
            startup, m["VmRSS"], m["VmHWM"], m["RssAnon"], m["RssFile"], m["Pss"], stop(proc)
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def machine() -> dict[str, Any]:
    """What the numbers were measured on (the load average as the run ends)."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_end": os.getloadavg(),
    }


def write_report(
    name: str,
    args: argparse.Namespace,
    command: list[str],
    results: dict[str, Any],
    targets: dict[str, bool],
) -> Path:
    """Print which targets were met and write the run as JSON to ``args.out``."""
    report = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        "commit": git_commit(),
        "results": results,
        "targets": targets,
    }
    for target, ok in targets.items():
        print(f"  {'met   ' if ok else 'MISSED'} {target}")
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out_file.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out_file}")
    return out_file


def git_commit() -> str | None:
    try:
        r = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    parser.add_argument("--idle", type=float, default=2.0, help="idle seconds before RSS")
    parser.add_argument("--profile", default=None, help="device profile for `croft run`")
    parser.add_argument(
        "--pin-cpu",
        default=None,
        help="the node's process.pin_cpu (auto, off or a CPU number); default: the node's",
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory for the JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    run_args = ["--profile", args.profile] if args.profile else []
    work = Path(tempfile.mkdtemp(prefix="croft-bench-"))
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
                "bench",
                "--password",
                "benchmark password",
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
        env = child_env()
        if args.pin_cpu is not None:
            env["CROFT_PROCESS_PIN_CPU"] = args.pin_cpu
        log = work / "run.log"
        warmup = one_run(data_dir, port, run_args, 0.0, env, log)  # caches bytecode

        runs = []
        for i in range(args.runs):
            r = one_run(data_dir, port, run_args, args.idle, env, log)
            runs.append(r)
            print(
                f"run {i + 1:2}/{args.runs}: start-up {r.startup_s * 1000:6.1f} ms   "
                f"idle RSS {r.vm_rss_kib / 1024:5.1f} MiB   HWM {r.vm_hwm_kib / 1024:5.1f} MiB",
                flush=True,
            )

        hook = work / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(MODULE_HOOK)
        modules_file = work / "modules.txt"
        env_hook = dict(env, BENCH_MODULES_FILE=str(modules_file))
        env_hook["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH")) if p)
        one_run(data_dir, port, run_args, 0.0, env_hook, log)
        modules = modules_file.read_text().split()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    times = [r.startup_s for r in runs]
    rss = [r.vm_rss_kib for r in runs]
    hwm = [r.vm_hwm_kib for r in runs]
    summary: dict[str, Any] = {
        "startup_s": {
            "min": min(times),
            "median": statistics.median(times),
            "p95": percentile(times, 0.95),
            "max": max(times),
        },
        "idle_rss_kib": {"median": statistics.median(rss), "min": min(rss), "max": max(rss)},
        "idle_hwm_kib": {"median": statistics.median(hwm)},
        "idle_rss_anon_kib": {"median": statistics.median(r.rss_anon_kib for r in runs)},
        "idle_rss_file_kib": {"median": statistics.median(r.rss_file_kib for r in runs)},
        "idle_pss_kib": {"median": statistics.median(r.pss_kib for r in runs)},
        "modules": len(modules),
        "warmup_startup_s": warmup.startup_s,
    }
    median_rss_mib = summary["idle_rss_kib"]["median"] / 1024
    targets = {
        "startup_median_under_0.5_s": summary["startup_s"]["median"] < TARGET_STARTUP_S,
        "startup_p95_under_0.5_s": summary["startup_s"]["p95"] < TARGET_STARTUP_S,
        "idle_rss_median_under_45_MiB": median_rss_mib < TARGET_IDLE_RSS_MIB,
    }
    report = {
        "benchmark": "startup",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [*croft_command(), "run", "--data-dir", "DIR", *run_args],
        "profile": args.profile or "laptop (default)",
        "runs": args.runs,
        "idle_s": args.idle,
        "machine": machine(),
        "commit": git_commit(),
        "summary": summary,
        "targets": targets,
        "per_run": [asdict(r) for r in runs],
        "module_names": modules,
    }

    ms = {k: v * 1000 for k, v in summary["startup_s"].items()}
    print()
    print(f"{'croft run, ' + str(args.runs) + ' runs':32} {'min':>9} {'median':>9} {'p95':>9}")
    print(
        f"{'start-up to /versions 200 (ms)':32} {ms['min']:9.1f} {ms['median']:9.1f} "
        f"{ms['p95']:9.1f}   target < 500 (Synapse ~1500)"
    )
    print(
        f"{'idle RSS after ' + f'{args.idle:g}' + ' s (MiB)':32} {'':9} {median_rss_mib:9.1f} "
        f"{'':9}   target < 45 (Synapse ~122)"
    )
    for label, key in (
        ("peak RSS, VmHWM (MiB)", "idle_hwm_kib"),
        ("  of which anonymous (MiB)", "idle_rss_anon_kib"),
        ("  of which mapped files (MiB)", "idle_rss_file_kib"),
        ("idle PSS (MiB)", "idle_pss_kib"),
    ):
        print(f"{label:32} {'':9} {summary[key]['median'] / 1024:9.1f}")
    print(f"{'modules imported':32} {'':9} {len(modules):9d}")
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name, ok in targets.items():
        print(f"  {'met   ' if ok else 'MISSED'} {name}")

    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"startup-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
