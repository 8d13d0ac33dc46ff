"""The `croft` command line as a user runs it: the real console script, in subprocesses.

Every test runs `croft` (the installed console script, else ``python -m node.cli``)
with a clean environment (no CROFT_* from outside) and a data directory under
tmp_path, with listeners on free loopback ports. The one test that uses the
defaults (0.0.0.0:8448) runs inside a private network namespace. Every wait has a
deadline and every process started here is killed in a ``finally``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from node import __version__
from node.config import load_config
from node.datadir import default_owner, default_server_name

REPO = Path(__file__).resolve().parent.parent
SERVER_NAME = "127.0.0.1:8448"
OWNER = "alice"
PASSWORD = "correct horse battery staple"
USER_ID = f"@{OWNER}:{SERVER_NAME}"
DEADLINE = 20.0  # for anything to happen, on a loaded 2-core machine
COMMAND_TIMEOUT = 60.0  # a whole short command (init, status, a failing run)
FREE_PORTS = ["--client-listen", "127.0.0.1:0", "--federation-listen", "127.0.0.1:0"]


# -- running croft ---------------------------------------------------------------------------


def croft_command() -> list[str]:
    script = Path(sys.executable).parent / "croft"
    return [str(script)] if script.exists() else [sys.executable, "-m", "node.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without CROFT_* settings, proxies or PYTHONUNBUFFERED
    (output buffering is part of what a user sees), plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CROFT_")
        and not k.lower().endswith("_proxy")
        and k != "PYTHONUNBUFFERED"
    }
    if croft_command()[0] == sys.executable:  # not installed: run from the source tree
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    # `croft run` announces itself on every interface by default: never from a test
    # in the machine's own network namespace (../shared/LAB.md).
    env["CROFT_FEATURES_DISCOVERY"] = "false"
    env.update(extra)
    return env


def croft(
    *args: str | Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run one croft command to completion (killed, and the test failed, on timeout)."""
    cmd = [*croft_command(), *map(str, args)]
    try:
        return subprocess.run(
            cmd,
            cwd=cwd,
            env=clean_env() if env is None else env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else e.stderr
        pytest.fail(f"`croft {' '.join(map(str, args))}` did not exit within {timeout} s: {out}")


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit status 2, and exactly one stderr line, ``croft: error: ...``, naming the problem."""
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert len(lines) == 1, f"expected one line, got {lines!r}"
    assert lines[0].startswith("croft: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert result.returncode == 2, (result.returncode, result.stderr)
    return lines[0]


def init(data_dir: Path, *extra: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return croft(
        "init",
        "--data-dir",
        data_dir,
        "--server-name",
        SERVER_NAME,
        "--owner",
        OWNER,
        *extra,
        cwd=cwd,
    )


# -- HTTP probes (no proxy, no certificate checks: the node's certificate is self-signed) ---

_TLS = ssl.create_default_context()
_TLS.check_hostname = False
_TLS.verify_mode = ssl.CERT_NONE
_OPENER = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=_TLS)
)


def http_json(
    url: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def login(client: str, user: str, password: str) -> tuple[int, Any]:
    return http_json(
        f"{client}/_matrix/client/v3/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        },
    )


# -- a running node --------------------------------------------------------------------------


@dataclass
class RunningCroft:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    out_path: Path
    err_path: Path
    listeners: dict[str, str] = field(default_factory=dict)

    @property
    def client(self) -> str:
        return f"http://{self.listeners['client']}"

    @property
    def output(self) -> str:
        """Everything the process wrote so far (stdout, then stderr: the log)."""
        return self.out_path.read_text(errors="replace") + self.err_path.read_text(errors="replace")

    def wait_for_output(self, text: str, deadline: float = 10.0) -> str:
        """Until the process has written ``text`` (the log's last start-up lines, such
        as "is up", follow the first answer to /versions); returns the output."""
        end = time.monotonic() + deadline
        while text not in (output := self.output):
            if time.monotonic() > end:
                pytest.fail(f"croft run never wrote {text!r}:\n{output}")
            time.sleep(0.05)
        return output

    def wait_until_up(self, deadline: float = DEADLINE) -> None:
        """Until run.json names this process and GET /versions answers 200."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"croft run exited with {self.proc.returncode}:\n{self.output}")
            run = _read_json(self.data_dir / "run.json")
            if run and run.get("pid") == self.proc.pid:
                self.listeners = dict(run["listeners"])
                try:
                    status, body = http_json(f"{self.client}/_matrix/client/versions", timeout=2)
                except OSError:
                    status, body = 0, None
                if status == 200:
                    assert "v1.1" in body["versions"], body
                    return
            time.sleep(0.05)
        pytest.fail(f"croft run did not answer /versions within {deadline} s:\n{self.output}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, deadline: float = 10.0) -> int:
        """Send ``sig``; the exit status (the test fails if it does not exit in time)."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            pytest.fail(f"croft run did not exit within {deadline} s of {sig.name}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., RunningCroft]]:
    """Start `croft run` in the background; whatever is still running is killed after."""
    started: list[RunningCroft] = []

    def _start(
        data_dir: Path, *args: str, env: dict[str, str] | None = None, wait: bool = True
    ) -> RunningCroft:
        n = len(started)
        out_path, err_path = tmp_path / f"run{n}.out", tmp_path / f"run{n}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [*croft_command(), "run", "--data-dir", str(data_dir), *args],
                cwd=tmp_path,
                env=clean_env() if env is None else env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        node = RunningCroft(proc, data_dir, out_path, err_path)
        started.append(node)
        if wait:
            node.wait_until_up()
        return node

    try:
        yield _start
    finally:
        for node in started:
            if node.proc.poll() is None:
                node.proc.kill()
            node.proc.wait(timeout=DEADLINE)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory made by `croft init` (free loopback ports), copied per test."""
    base = tmp_path_factory.mktemp("pristine")
    d = base / "node"
    result = init(d, "--password", PASSWORD, *FREE_PORTS, cwd=base)
    assert result.returncode == 0, result.stderr
    return d


@pytest.fixture
def data_dir(pristine: Path, tmp_path: Path) -> Path:
    d = tmp_path / "node"
    shutil.copytree(pristine, d)
    return d


# -- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--help"], ["init", "run", "status", "CROFT_HOME"]),
        (["run", "--help"], ["croft run", "--data-dir", "--profile", "init", "status"]),
        (["init", "--help"], ["croft init", "--server-name", "--owner", "--password"]),
        (["status", "--help"], ["croft status", "--json", "--data-dir"]),
    ],
    ids=["croft", "run", "init", "status"],
)
def test_help_exits_0_and_names_the_commands(
    tmp_path: Path, args: list[str], expected: list[str]
) -> None:
    result = croft(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for word in expected:
        assert word in result.stdout, f"{word!r} not in:\n{result.stdout}"


def test_version(tmp_path: Path) -> None:
    result = croft("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"croft {__version__}"


def test_no_command_shows_the_commands_and_exits_2(tmp_path: Path) -> None:
    result = croft(cwd=tmp_path)
    assert result.returncode == 2
    assert all(word in result.stdout for word in ("init", "run", "status"))


# -- croft init ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_the_data_directory(tmp_path: Path) -> None:
    d = tmp_path / "node"
    result = init(d, "--password", PASSWORD, *FREE_PORTS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert USER_ID in result.stdout
    assert "password:" not in result.stdout and PASSWORD not in result.stdout

    for name in ("config.toml", "signing.key", "tls.crt", "tls.key", "croft.db", "tui.token"):
        assert (d / name).is_file(), name
    for secret in ("signing.key", "tls.key", "tui.token", "croft.db"):
        assert _mode(d / secret) == 0o600, f"{secret} has mode {_mode(d / secret):o}"
    assert _mode(d) == 0o700
    assert re.fullmatch(r"ed25519 a_\w{4} [A-Za-z0-9+/]{43}\n", (d / "signing.key").read_text())
    assert (d / "tls.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert (d / "croft.db").read_bytes()[:16] == b"SQLite format 3\x00"
    assert (d / "tui.token").read_text().strip()
    assert PASSWORD not in (d / "config.toml").read_text()

    config = load_config(d, environ={})
    assert config.server_name == SERVER_NAME
    assert config.profile == "laptop"
    assert str(config.client.listen) == "127.0.0.1:0"
    assert str(config.federation.listen) == "127.0.0.1:0"

    before = {p.name: p.read_bytes() for p in d.iterdir()}
    again = init(d, "--password", "another password", *FREE_PORTS, cwd=tmp_path)
    assert_one_line_error(again, "already initialised", str(d))
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_init_with_a_relative_data_dir_and_croft_home(tmp_path: Path) -> None:
    """--data-dir is relative to the working directory; without it, $CROFT_HOME is used."""
    result = init(Path("rel"), "--password", PASSWORD, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "rel" / "config.toml").is_file()

    home = tmp_path / "home"
    result = croft(
        "init",
        "--server-name",
        SERVER_NAME,
        "--owner",
        OWNER,
        "--password",
        PASSWORD,
        cwd=tmp_path,
        env=clean_env(CROFT_HOME=str(home)),
    )
    assert result.returncode == 0, result.stderr
    assert (home / "config.toml").is_file()


def test_generated_password_is_printed_once_and_logs_in(
    tmp_path: Path, start: Callable[..., RunningCroft]
) -> None:
    d = tmp_path / "node"
    result = init(d, *FREE_PORTS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = re.findall(r"password:\s+(\S+)", result.stdout)
    assert len(found) == 1, result.stdout
    password = found[0]
    assert len(password) >= 16
    assert password not in (d / "config.toml").read_text()

    node = start(d)
    status, body = login(node.client, OWNER, password)
    assert status == 200, body
    assert body["user_id"] == USER_ID
    status, body = http_json(
        f"{node.client}/_matrix/client/v3/account/whoami",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert (status, body["user_id"]) == (200, USER_ID)
    status, body = login(node.client, OWNER, password + "x")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")

    # The TUI's token, written by init, is a live session of the owner.
    token = (d / "tui.token").read_text().strip()
    status, body = http_json(
        f"{node.client}/_matrix/client/v3/account/whoami",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert (status, body["user_id"], body["device_id"]) == (200, USER_ID, "CROFTTUI")
    assert node.stop() == 0


# -- bad input: one line, exit 2 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--server-name", "exa mple.org"], ["--server-name", "'exa mple.org'", "server name"]),
        (["--server-name", "host:99x"], ["--server-name", "'host:99x'", "port"]),
        (["--owner", "Alice!"], ["--owner", "'Alice!'"]),
        (["--profile", "nope"], ["unknown device profile 'nope'", "iot-sensor"]),
        (["--client-listen", "localhost"], ["--client-listen", "HOST:PORT"]),
        (["--federation-listen", "127.0.0.1:70000"], ["--federation-listen", "out of range"]),
        (["--password", ""], ["--password", "empty"]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
    ],
    ids=[
        "server-name-space",
        "server-name-port",
        "owner",
        "profile",
        "client-listen",
        "federation-listen",
        "empty-password",
        "unknown-option",
    ],
)
def test_bad_init_arguments(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    d = tmp_path / "node"
    good = {"--server-name": "example.org", "--owner": OWNER, "--password": PASSWORD}
    given = dict(zip(args[::2], args[1::2], strict=False))  # ["--bogus"] gives {}
    argv = [x for kv in (good | given).items() for x in kv] + args[len(given) * 2 :]
    result = croft("init", "--data-dir", d, *argv, cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert not (d / "config.toml").exists()


def _edit_config(pattern: str, replacement: str) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        path = d / "config.toml"
        text, n = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.M)
        assert n == 1, pattern
        path.write_text(text)

    return edit


def _write(name: str, content: bytes) -> Callable[[Path], None]:
    def write(d: Path) -> None:
        (d / name).write_bytes(content)

    return write


def _remove(name: str) -> Callable[[Path], None]:
    def remove(d: Path) -> None:
        (d / name).unlink()

    return remove


def _nothing(d: Path) -> None:
    pass


@dataclass(frozen=True)
class BadRun:
    id: str
    change: Callable[[Path], None]
    fragments: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    command: str = "run"
    timeout: float = COMMAND_TIMEOUT
    marks: tuple[pytest.MarkDecorator, ...] = ()


BAD_RUNS = [
    BadRun("unknown-profile", _nothing, ("unknown device profile 'nope'",), ("--profile", "nope")),
    BadRun(
        "unknown-key-in-section",
        _edit_config(r"^\[client\]$", "[client]\nbogus = 1"),
        ("config.toml", "unknown key 'client.bogus'"),
    ),
    BadRun(
        "unknown-top-level-key",
        _edit_config(r"^profile = ", 'colour = "green"\nprofile = '),
        ("config.toml", "unknown key 'colour'"),
    ),
    BadRun(
        "unknown-section",
        _edit_config(r"^\[media\]$", "[gadgets]\nx = 1\n\n[media]"),
        ("config.toml", "unknown key 'gadgets'"),
    ),
    BadRun(
        "wrong-type-int",
        _edit_config(r"^# sqlite_cache_kib = .*$", 'sqlite_cache_kib = "lots"'),
        ("storage.sqlite_cache_kib must be an integer", "'lots'"),
    ),
    BadRun(
        "wrong-type-bool",
        _edit_config(r"^# enabled = true$", 'enabled = "maybe"'),
        ("federation.enabled must be true or false",),
    ),
    BadRun(
        "wrong-type-listen",
        _edit_config(r'^listen = "127\.0\.0\.1:0"$', "listen = 8008"),
        ("client.listen must be a string HOST:PORT",),
    ),
    BadRun(
        "bad-server-name-in-config",
        _edit_config(r"^server_name = .*$", 'server_name = "exa mple.org"'),
        ("server_name 'exa mple.org' is not a valid server name",),
    ),
    BadRun(
        "not-toml",
        _edit_config(r"^\[client\]$", "[client"),
        ("config.toml", "not valid TOML"),
    ),
    BadRun(
        "unknown-env-setting",
        _nothing,
        ("CROFT_CLIENT_BOGUS", "unknown setting client.bogus"),
        env=(("CROFT_CLIENT_BOGUS", "1"),),
    ),
    BadRun("missing-signing-key", _remove("signing.key"), ("signing.key", "missing")),
    BadRun(
        "corrupt-signing-key",
        _write("signing.key", b"ed25519 a_xyz not*base64\n"),
        ("signing.key", "not a valid signing key file"),
    ),
    BadRun(
        "empty-signing-key",
        _write("signing.key", b""),
        ("signing.key", "no signing key"),
    ),
    BadRun(
        "database-not-sqlite",
        _write("croft.db", b"this is not an SQLite database\n" * 200),
        ("croft.db", "not a database"),
        timeout=10.0,
    ),
    BadRun(
        "status-without-data-dir", _remove("config.toml"), ("no config file",), command="status"
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in BAD_RUNS])
def test_bad_configuration_is_one_line(tmp_path: Path, data_dir: Path, case: BadRun) -> None:
    case.change(data_dir)
    result = croft(
        case.command,
        "--data-dir",
        data_dir,
        *case.args,
        cwd=tmp_path,
        env=clean_env(**dict(case.env)),
        timeout=case.timeout,
    )
    assert_one_line_error(result, *case.fragments)
    assert not (data_dir / "run.json").exists()


@pytest.mark.parametrize("listener", ["client", "federation"])
def test_port_in_use_is_one_line(tmp_path: Path, listener: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        addr = f"127.0.0.1:{busy.getsockname()[1]}"
        d = tmp_path / "node"
        listen = {"client": "127.0.0.1:0", "federation": "127.0.0.1:0", listener: addr}
        result = init(
            d,
            "--password",
            PASSWORD,
            "--client-listen",
            listen["client"],
            "--federation-listen",
            listen["federation"],
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        result = croft("run", "--data-dir", d, cwd=tmp_path)
    assert_one_line_error(result, f"{listener} listener {addr}", "address already in use")
    assert not (d / "run.json").exists()


# -- croft run / status / stop ---------------------------------------------------------------


def thread_cpus(pid: int) -> dict[int, list[int]]:
    """Each thread of ``pid`` and the CPUs it may run on (Linux /proc)."""
    out: dict[int, list[int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        status = (task / "status").read_text()
        spec = next(ln for ln in status.splitlines() if ln.startswith("Cpus_allowed_list:"))
        cpus: list[int] = []
        for part in spec.split(":", 1)[1].strip().split(","):
            low, _, high = part.partition("-")
            cpus.extend(range(int(low), int(high or low) + 1))
        out[int(task.name)] = cpus
    return out


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs per-thread CPU affinity (Linux) and at least two CPUs",
)
@pytest.mark.parametrize("setting", ["auto", "off"])
def test_run_keeps_the_loop_and_database_threads_on_one_cpu(
    data_dir: Path, start: Callable[..., RunningCroft], setting: str
) -> None:
    """process.pin_cpu (node/affinity.py): the event loop (main thread) and the SQLite
    writer and reader share one CPU; the executor's threads keep them all."""
    node = start(data_dir, env=clean_env(CROFT_PROCESS_PIN_CPU=setting))
    allowed = sorted(os.sched_getaffinity(0))  # croft run inherited this test's CPUs
    cpus = thread_cpus(node.proc.pid)
    if setting == "off":
        assert all(c == allowed for c in cpus.values()), cpus
        return
    loop = cpus[node.proc.pid]
    assert len(loop) == 1 and loop[0] in allowed, cpus
    others = [c for t, c in cpus.items() if t != node.proc.pid]
    assert others.count(loop) >= 2, cpus  # the SQLite writer and reader
    assert allowed in others, cpus  # the executor thread that created the database file


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_run_status_and_clean_stop(
    tmp_path: Path, data_dir: Path, start: Callable[..., RunningCroft], sig: signal.Signals
) -> None:
    node = start(data_dir)
    client, federation = node.listeners["client"], node.listeners["federation"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", client) and not client.endswith(":0")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", federation) and not federation.endswith(":0")
    log = node.output
    assert f"client API listening on http://{client}" in log, log
    assert f"federation API listening on https://{federation}" in log, log
    assert "Traceback" not in log

    status, body = http_json(f"https://{federation}/_matrix/federation/v1/version")
    assert (status, body["server"]["name"]) == (200, "Croft")

    result = croft("status", "--data-dir", data_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    first_line = result.stdout.splitlines()[0]
    assert first_line == f"croft running (pid {node.proc.pid})", result.stdout
    assert SERVER_NAME in result.stdout
    assert f"http://{client}" in result.stdout and f"https://{federation}" in result.stdout
    assert re.search(r"store size:\s+\d+(\.\d)? (B|KiB|MiB|GiB)", result.stdout), result.stdout

    # --json, found through $CROFT_HOME, with a proxy in the environment that must not
    # be used for the local probe.
    result = croft(
        "status",
        "--json",
        cwd=tmp_path,
        env=clean_env(
            CROFT_HOME=str(data_dir),
            http_proxy="http://127.0.0.1:9",
            HTTP_PROXY="http://127.0.0.1:9",
        ),
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["running"] is True and info["answering"] is True
    assert info["pid"] == node.proc.pid
    assert info["server_name"] == SERVER_NAME
    assert info["profile"] == "laptop"
    assert info["listeners"] == {"client": client, "federation": federation}
    assert info["data_dir"] == str(data_dir.resolve())
    assert info["store_bytes"] > 0

    t0 = time.monotonic()
    assert node.stop(sig) == 0, node.output
    assert time.monotonic() - t0 < 10
    assert not (data_dir / "run.json").exists()
    log = node.output
    assert "shutting down" in log and "stopped" in log, log
    assert "Traceback" not in log

    result = croft("status", "--data-dir", data_dir, cwd=tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.startswith("croft not running")
    assert SERVER_NAME in result.stdout
    result = croft("status", "--data-dir", data_dir, "--json", cwd=tmp_path)
    assert result.returncode == 3
    info = json.loads(result.stdout)
    assert info["running"] is False and info["pid"] is None and info["listeners"] == {}


def test_second_run_on_the_same_data_dir_is_refused(
    tmp_path: Path, data_dir: Path, start: Callable[..., RunningCroft]
) -> None:
    first = start(data_dir)
    result = croft("run", "--data-dir", data_dir, cwd=tmp_path)
    assert_one_line_error(result, "in use", f"pid {first.proc.pid}")
    # The first node is untouched: still answering, still the one run.json names.
    assert _read_json(data_dir / "run.json")["pid"] == first.proc.pid
    status, _ = http_json(f"{first.client}/_matrix/client/versions")
    assert status == 200
    assert first.stop() == 0


def test_run_after_sigkill_starts_again(
    tmp_path: Path, data_dir: Path, start: Callable[..., RunningCroft]
) -> None:
    """A stale run.json (the node was killed) says "not running", and does not block."""
    first = start(data_dir)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert (data_dir / "run.json").exists()
    result = croft("status", "--data-dir", data_dir, cwd=tmp_path)
    assert result.returncode == 3, result.stdout
    second = start(data_dir)
    assert second.stop() == 0


# -- profiles --------------------------------------------------------------------------------

HEAVY = ("textual", "aiortc", "av", "nio")


def test_iot_sensor_profile_runs_without_the_heavy_stacks(
    tmp_path: Path, data_dir: Path, start: Callable[..., RunningCroft]
) -> None:
    """`croft run --profile iot-sensor` runs with that profile, and the real process never
    even tries to import textual, aiortc, av or nio (watched by an import hook that
    sitecustomize installs in the croft process itself)."""
    from tests.test_lean import SITECUSTOMIZE  # tests/test_lean.py imports this module

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    report = tmp_path / "imports.json"
    env = clean_env(LEAN_REPORT=str(report), LEAN_WATCHED=",".join((*HEAVY, "argon2")))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH")) if p)

    node = start(data_dir, "--profile", "iot-sensor", env=env)
    node.wait_for_output("is up (profile iot-sensor)")
    result = croft("status", "--data-dir", data_dir, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["running"] is True and info["profile"] == "iot-sensor"
    status, _ = login(node.client, OWNER, PASSWORD)  # exercise a real request path
    assert status == 200
    assert node.stop() == 0, node.output

    data = json.loads(report.read_text())
    modules, attempted = set(data["modules"]), data["attempted"]
    # The hook saw this process: the node ran, and a package it does use was seen.
    assert {"node.app", "node.config", "aiohttp.web"} <= modules
    assert "argon2" in attempted
    tried = sorted({m for m in attempted if m.split(".")[0] in HEAVY})
    assert tried == [], f"croft run --profile iot-sensor tried to import {tried}"
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert loaded == []


# -- first run with the defaults, in a private network namespace ------------------------------

NAMESPACE_DRIVER = """\
import json, re, signal, ssl, subprocess, sys, time, urllib.error, urllib.request

cmd, log = json.loads(sys.argv[1]), sys.argv[2]
tls = ssl.create_default_context()
tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls)
)


def call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with opener.open(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


result = {}
with open(log, "wb") as out:
    proc = subprocess.Popen([*cmd, "run"], stdout=out, stderr=subprocess.STDOUT)
try:
    t0 = time.monotonic()
    result["up"] = False
    while time.monotonic() - t0 < 30 and proc.poll() is None:
        try:
            if call("http://127.0.0.1:8008/_matrix/client/versions")[0] == 200:
                result["up"] = True
                break
        except OSError:
            pass
        time.sleep(0.05)
    result["up_seconds"] = time.monotonic() - t0
    if result["up"]:
        # Read while the node still runs: the password must be out already.
        text = open(log).read()
        owner = re.search(r"owner:\\s+(\\S+)", text)
        password = re.search(r"password:\\s+(\\S+)", text)
        result["owner"] = owner and owner.group(1)
        result["password_printed_while_running"] = bool(password)
        if owner and password:
            status, body = call(
                "http://127.0.0.1:8008/_matrix/client/v3/login",
                {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": owner.group(1)},
                    "password": password.group(1),
                },
            )
            result["login"] = [status, body and body.get("user_id")]
        try:
            result["federation"] = call("https://127.0.0.1:8448/_matrix/federation/v1/version")[0]
        except OSError as e:
            result["federation"] = str(e)
        # LAN discovery announces once mDNS probing (about 1.5 s) is over.
        t1 = time.monotonic()
        while time.monotonic() - t1 < 10 and "discovery: announcing" not in open(log).read():
            time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    result["exit"] = proc.wait(timeout=20)
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
print(json.dumps(result))
"""


def private_namespace_available() -> str | None:
    """Why `unshare -n` cannot be used here, or None when it can."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare(1) and ip(8)"
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    if probe.returncode != 0:
        return f"cannot make a private network namespace (root needed?): {probe.stderr.strip()}"
    return None


def test_first_run_initialises_with_defaults_in_a_private_network_namespace(
    tmp_path: Path,
) -> None:
    """`croft run` with no data directory yet: initialises with the defaults (client on
    127.0.0.1:8008, federation on 0.0.0.0:8448), prints the generated password, serves,
    and stops with status 0. The defaults listen on every interface, so this runs in
    a network namespace of its own (only a loopback)."""
    reason = private_namespace_available()
    if reason:
        pytest.skip(reason)
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "croft.log"
    driver = tmp_path / "driver.py"
    driver.write_text(NAMESPACE_DRIVER)
    script = 'ip link set lo up && exec "$@"'
    proc = subprocess.Popen(
        [
            "unshare",
            "-n",
            "sh",
            "-c",
            script,
            "sh",
            sys.executable,
            str(driver),
            json.dumps(croft_command()),
            str(log),
        ],
        cwd=tmp_path,
        # The real defaults, LAN discovery included: this namespace has only a loopback.
        env={
            k: v
            for k, v in clean_env(CROFT_HOME=str(home)).items()
            if k != "CROFT_FEATURES_DISCOVERY"
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    text = log.read_text(errors="replace")

    assert result["up"], f"never answered /versions:\n{text}"
    assert "No data directory" in text and str(home) in text
    assert result["password_printed_while_running"], text
    assert len(re.findall(r"password:\s+\S+", text)) == 1
    # The defaults: <hostname>.local, and the login name (root gives "owner").
    owner = f"@{default_owner()}:{default_server_name()}"
    assert result["owner"] == owner
    assert result["login"] == [200, owner]
    assert result["federation"] == 200
    assert "client API listening on http://127.0.0.1:8008" in text
    assert "federation API listening on https://0.0.0.0:8448" in text
    assert f"{default_server_name()} is up (profile laptop)" in text
    assert f"discovery: announcing {default_server_name()} as _matrix-fed._tcp.local." in text
    assert result["exit"] == 0, text
    assert "Traceback" not in text
    for name in ("config.toml", "signing.key", "tls.crt", "tls.key", "croft.db", "tui.token"):
        assert (home / name).is_file(), name
    assert not (home / "run.json").exists()
