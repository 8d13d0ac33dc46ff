"""`croft run` loads only what its device profile asks for (issue #6: "`croft run
--profile iot-sensor` stays lean: no TUI or call libraries imported").

A real `croft run` process, with a ``sitecustomize`` on its PYTHONPATH that records
every attempt to import a watched package and, at exit, every module loaded. The node
is used as a client would use it (a room, a message, /sync, with the token `croft
init` stored, so no password is checked) and stopped with SIGTERM. Then:

- never, in any profile: the TUI (textual, matrix-nio, vodozemac), calls (aiortc, av),
  Pillow (thumbnails, made on the first thumbnail request), cryptography (`croft init`
  makes the certificate; `croft run` loads it with ``ssl``), argon2 (password checks
  only);
- zeroconf (LAN discovery) only with ``features.discovery`` on, and then from its
  Python sources, not its Cython builds (node/discovery/sources.py): tried in a
  private network namespace (only a loopback, ../shared/LAB.md), with the iot-sensor
  profile's real defaults;
- the sensor service only with ``features.sensors`` on.

The finder of node/discovery/sources.py is also tested on a made-up package.
"""

from __future__ import annotations

import importlib
import importlib.machinery as machinery
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from node.discovery import sources
from tests.test_cli import clean_env, croft_command, private_namespace_available

PROFILES_DIR = Path(__file__).resolve().parent.parent / "device_profiles"
DEADLINE = 60.0  # a whole driver run, on a loaded 2-core machine

# Top-level packages `croft run` must never import, whatever the profile.
NEVER = ("textual", "nio", "vodozemac", "aiortc", "av", "PIL", "cryptography", "argon2")

SITECUSTOMIZE = """\
# Loaded by site.py at start-up (PYTHONPATH): records every attempt to import a
# watched top-level package, and at exit writes that with sys.modules to a file.
import atexit, json, os, sys

WATCHED = set(os.environ["LEAN_WATCHED"].split(","))
attempted = []


class _Watch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in WATCHED:
            attempted.append(name)
        return None


sys.meta_path.insert(0, _Watch())


@atexit.register
def _report():
    files = {
        name: getattr(module, "__file__", None)
        for name, module in list(sys.modules.items())
        if name.split(".")[0] == "zeroconf"
    }
    with open(os.environ["LEAN_REPORT"], "w") as f:
        json.dump({"attempted": attempted, "modules": sorted(sys.modules), "files": files}, f)
"""

# Runs `croft run`, uses it as a client with the stored token, stops it; prints JSON.
# Run directly, or inside `unshare -n` (then the node announces itself on lo only).
DRIVER = """\
import json, os, signal, subprocess, sys, time, urllib.error, urllib.request
from pathlib import Path

cmd, data_dir, log, wait_discovery = json.loads(sys.argv[1])
data_dir = Path(data_dir)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
token = (data_dir / "tui.token").read_text().strip()


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("Content-Type", "application/json")
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def text():
    return open(log, errors="replace").read()


result = {"up": False}
with open(log, "wb") as out:
    # The import hook goes to the node's process only, not to this one.
    pythonpath = [os.environ["LEAN_HOOK"], *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath))
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
try:
    end = time.monotonic() + 30
    client = None
    while time.monotonic() < end and proc.poll() is None and not result["up"]:
        try:
            run = json.loads((data_dir / "run.json").read_text())
            if run["pid"] == proc.pid:
                client = "http://" + run["listeners"]["client"]
                result["up"] = call("GET", client + "/_matrix/client/versions")[0] == 200
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    if result["up"]:
        v3 = client + "/_matrix/client/v3"
        status, room = call("POST", v3 + "/createRoom", {"name": "readings"})
        result["create"] = status
        if status == 200:
            url = v3 + "/rooms/" + room["room_id"] + "/send/m.room.message/t1"
            result["send"] = call("PUT", url, {"msgtype": "m.text", "body": "21.5 C"})[0]
        status, sync = call("GET", v3 + "/sync")
        result["sync"] = status
        result["synced_rooms"] = sorted((sync or {}).get("rooms", {}).get("join", {}))
        while wait_discovery and time.monotonic() < end and "discovery: announcing" not in text():
            time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    result["exit"] = proc.wait(timeout=20)
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
result["log"] = text()
print(json.dumps(result))
"""


def profile_features(name: str) -> dict[str, bool]:
    data = tomllib.loads((PROFILES_DIR / f"{name}.toml").read_text("utf-8"))
    return dict(data["features"])


def watched_env(tmp_path: Path, report: Path, base: dict[str, str]) -> dict[str, str]:
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    watched = ",".join((*NEVER, "zeroconf"))
    return dict(base, LEAN_HOOK=str(hook), LEAN_REPORT=str(report), LEAN_WATCHED=watched)


def init(data_dir: Path, *args: str) -> None:
    result = subprocess.run(
        [*croft_command(), "init", "--data-dir", str(data_dir), "--owner", "alice", *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr


def drive(
    tmp_path: Path,
    data_dir: Path,
    profile: str,
    env: dict[str, str],
    *,
    namespace: bool = False,
    run_args: list[str] | None = None,
) -> dict[str, Any]:
    """Run the driver (inside `unshare -n` with ``namespace``); check the node came
    up with ``profile``, served the client and stopped cleanly. ``run_args``: what
    follows `croft run` (default ``--data-dir DIR --profile PROFILE``)."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    if run_args is None:
        run_args = ["--data-dir", str(data_dir), "--profile", profile]
    cmd = [*croft_command(), "run", *run_args]
    args = json.dumps([cmd, str(data_dir), str(tmp_path / "run.log"), namespace])
    argv = [sys.executable, str(driver), args]
    if namespace:
        argv = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]
    proc = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=DEADLINE, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    log = result["log"]
    assert result["up"], f"never answered /versions:\n{log}"
    assert (result["create"], result.get("send"), result["sync"]) == (200, 200, 200), log
    assert len(result["synced_rooms"]) == 1, log
    assert f"is up (profile {profile})" in log
    assert result["exit"] == 0 and "Traceback" not in log, log
    return result


def read_report(report: Path) -> tuple[set[str], list[str]]:
    data = json.loads(report.read_text())
    return set(data["modules"]), data["attempted"]


def zeroconf_files(report: Path) -> dict[str, str | None]:
    return dict(json.loads(report.read_text())["files"])


def top_levels(names: Any) -> list[str]:
    return sorted({n.split(".")[0] for n in names})


@pytest.mark.parametrize("profile", ["laptop", "raspberry-pi", "iot-sensor"])
def test_croft_run_loads_only_what_the_profile_asks_for(tmp_path: Path, profile: str) -> None:
    data_dir = tmp_path / "node"
    init(
        data_dir,
        "--server-name",
        "127.0.0.1:8448",
        "--client-listen",
        "127.0.0.1:0",
        "--federation-listen",
        "127.0.0.1:0",
    )
    report = tmp_path / "imports.json"
    env = watched_env(tmp_path, report, clean_env())  # CROFT_FEATURES_DISCOVERY=false
    drive(tmp_path, data_dir, profile, env)

    modules, attempted = read_report(report)
    # The hook ran in the node's process: it saw the node's own modules.
    assert {"node.app", "node.federation.server", "aiohttp.web"} <= modules
    tried = top_levels(m for m in attempted if m.split(".")[0] in NEVER)
    assert tried == [], f"croft run --profile {profile} tried to import {tried}"
    assert top_levels(m for m in modules if m.split(".")[0] in NEVER) == []
    # Discovery off (the environment says so): no mDNS stack at all.
    assert "zeroconf" not in attempted and "node.discovery.lan" not in modules
    assert "node.discovery.sources" not in modules and "importlib.abc" not in modules
    # aiohttp's `html` came without its table of character references (node/lean_html.py).
    assert "html" in modules and "html.entities" not in modules
    # Nobody federated with it: the receiving side of federation is not loaded.
    receiving = {
        "node.federation.pdus",
        "node.federation.backfill",
        "node.federation.joins",
        "node.federation.edus",
        "node.rooms.state_res",
    }
    assert receiving.isdisjoint(modules), sorted(receiving & modules)
    # The sensor service loads with features.sensors, and only then.
    assert ("node.sensors.service" in modules) is profile_features(profile)["sensors"]


def test_iot_sensor_with_its_real_defaults_in_a_private_namespace(tmp_path: Path) -> None:
    """The iot-sensor profile as shipped: LAN discovery on (federation on every
    interface), so zeroconf loads and the node announces itself; still nothing heavy.
    In a network namespace of its own with only a loopback (../shared/LAB.md)."""
    reason = private_namespace_available()
    if reason:
        pytest.skip(reason)
    assert profile_features("iot-sensor")["discovery"] is True
    data_dir = tmp_path / "node"
    init(data_dir, "--server-name", "sensor1.local", "--profile", "iot-sensor")
    report = tmp_path / "imports.json"
    # Only this process tree, and only inside the namespace, runs with discovery on.
    env = {k: v for k, v in clean_env().items() if k != "CROFT_FEATURES_DISCOVERY"}
    result = drive(
        tmp_path, data_dir, "iot-sensor", watched_env(tmp_path, report, env), namespace=True
    )

    assert "federation API listening on https://0.0.0.0:8448" in result["log"]
    assert "discovery: announcing sensor1.local" in result["log"], result["log"]
    modules, attempted = read_report(report)
    assert "zeroconf" in modules and "node.discovery.lan" in modules
    # zeroconf from its sources, not its Cython builds (node/discovery/sources.py).
    files = zeroconf_files(report)
    assert "zeroconf._protocol.incoming" in files
    compiled = sorted(n for n, f in files.items() if f and not f.endswith((".py", ".pyc")))
    assert compiled == []
    assert "node.sensors.service" in modules
    tried = top_levels(m for m in attempted if m.split(".")[0] in NEVER)
    assert tried == [], f"croft run --profile iot-sensor tried to import {tried}"


# -- node/discovery/sources.py: a package's sources ahead of its compiled modules ---------


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """A package whose module ``fast`` exists as source and as a (broken) extension
    module: importing the extension fails, so a successful import came from source."""
    made: list[str] = []

    def make(*, source: bool = True) -> str:
        name = f"croft_fake_{len(made)}_{os.getpid()}"
        pkg = tmp_path / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        if source:
            (pkg / "fast.py").write_text("KIND = 'source'\n")
        (pkg / f"fast{machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"not an ELF file")
        made.append(name)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    yield make
    for name in made:
        for module in [m for m in sys.modules if m.split(".")[0] == name]:
            del sys.modules[module]


def test_a_package_loads_from_its_sources(fake_package: Callable[..., str]) -> None:
    name = fake_package()
    with pytest.raises(ImportError):  # the usual order: the extension module first
        importlib.import_module(f"{name}.fast")
    del sys.modules[name]
    sources.install(name)
    assert importlib.import_module(f"{name}.fast").KIND == "source"


def test_no_takeover_when_a_source_is_missing(fake_package: Callable[..., str]) -> None:
    """Compiled and source modules must not mix: without every source, the finder
    leaves the package to the usual import (here: the broken extension)."""
    name = fake_package(source=False)
    assert sources.has_all_sources(name) is False
    sources.install(name)
    with pytest.raises(ImportError):
        importlib.import_module(f"{name}.fast")


def test_no_takeover_once_imported(fake_package: Callable[..., str]) -> None:
    name = fake_package()
    importlib.import_module(name)
    before = list(sys.meta_path)
    sources.install(name)
    assert sys.meta_path == before
