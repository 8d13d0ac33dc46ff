"""The `croft` command line: parsing and dispatch only.

Every problem a user can cause (a bad argument, a bad config, a port in use) ends
with one line ``croft: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from node import __version__

log = logging.getLogger("croft")

EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3


class CliError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage error is one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"croft: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="croft",
        description="Croft: a single-user Matrix homeserver for your own device.",
        epilog="The data directory defaults to $CROFT_HOME, else the platform's user data "
        "directory. Configuration: DIR/config.toml, overridden by CROFT_<SECTION>_<KEY> "
        "environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"croft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    init_help = "create a data directory: config, keys, owner account"
    init = sub.add_parser("init", help=init_help, description=f"croft init: {init_help}.")
    _data_dir_arg(init)
    init.add_argument(
        "--server-name",
        metavar="NAME",
        help="this server's name (DNS name or IP literal, optional :port); "
        "default: <hostname>.local",
    )
    init.add_argument(
        "--owner",
        metavar="LOCALPART",
        help="the owner's user name (default: your login name, or 'owner')",
    )
    init.add_argument(
        "--password",
        metavar="PASSWORD",
        help="the owner's password (default: generated and printed once)",
    )
    init.add_argument(
        "--profile",
        metavar="NAME",
        default=None,
        help="device profile: laptop, raspberry-pi, iot-sensor (default: laptop)",
    )
    init.add_argument(
        "--client-listen", metavar="HOST:PORT", help="client API address (default 127.0.0.1:8008)"
    )
    init.add_argument(
        "--federation-listen",
        metavar="HOST:PORT",
        help="federation API address (default 0.0.0.0:8448)",
    )

    run_help = "start the node (runs `init` with defaults first if needed)"
    run = sub.add_parser(
        "run",
        help=run_help,
        description=f"croft run: {run_help}. Stops cleanly on Ctrl-C or SIGTERM; "
        "`croft status` shows whether it runs. Unless the federation listener is on "
        "loopback only or [features] discovery is false, the node announces itself on the "
        "LAN over mDNS (_matrix-fed._tcp) and federates with the peers it finds there "
        "(`croft peers`).",
    )
    _data_dir_arg(run)
    run.add_argument(
        "--profile",
        metavar="NAME",
        default=None,
        help="device profile to run with (overrides config.toml)",
    )

    status_help = "is the node running? name, listeners, store size, history cache"
    status = sub.add_parser(
        "status",
        help=status_help,
        description=f"croft status: {status_help}. Exit status 0 when it runs, "
        f"{EXIT_NOT_RUNNING} when it does not.",
    )
    _data_dir_arg(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    peers_help = "peers found on the LAN: pinned keys, alive or lost"
    peers = sub.add_parser(
        "peers",
        help=peers_help,
        description=f"croft peers: {peers_help}, and announcements refused because "
        "they carried another key than the pinned one (`croft peers trust NAME` accepts "
        "the last such key of NAME).",
    )
    _data_dir_arg(peers)
    peers.add_argument("--json", action="store_true", help="print the peers as JSON")
    peers_sub = peers.add_subparsers(dest="peers_command", metavar="ACTION")
    trust_help = "accept the key most recently refused for a server name"
    trust = peers_sub.add_parser(
        "trust",
        help=trust_help,
        description=f"croft peers trust: {trust_help}. A key seen first on the LAN is "
        "pinned, like SSH's known_hosts; an announcement of that name with another key is "
        "refused (listed by `croft peers`) and nothing from it is accepted. This pins the "
        "refused key instead (the old one is then refused) and clears the name's refusals. "
        "Works whether the node runs or not; a running node takes it up within about 2 s.",
    )
    trust.add_argument("name", metavar="NAME", help="the server name, e.g. host1.local")
    # SUPPRESS: `croft peers --data-dir DIR trust NAME` keeps DIR.
    trust.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        default=argparse.SUPPRESS,
        help="data directory (default: $CROFT_HOME or the user data directory)",
    )

    publish_help = "send one event into a room (from a shell or a cron job)"
    publish = sub.add_parser(
        "publish",
        help=publish_help,
        description=f"croft publish: {publish_help}. With the node running, the event is "
        "sent through its client API (the token in DIR/tui.token) and its event ID printed. "
        "With the node stopped, it is queued in the node's database and sent when the node "
        "starts; `queued` is printed. Sensor readings use the type io.croft.sensor.reading "
        'and the content {"sensor_id", "value" (a decimal string), "unit", "ts" (ms)} '
        "(README, Sensors).",
        epilog="Exit status: 0 sent or queued; 1 the node runs but did not take the event "
        "(unreachable, or failing: try again); 2 a bad argument, or the node refused the "
        "event (the message says why, e.g. M_FORBIDDEN when the owner is not in the room).",
    )
    _data_dir_arg(publish)
    publish.add_argument("room", metavar="ROOM", help="room ID (!...) or alias (#name:server)")
    publish.add_argument(
        "--type",
        dest="event_type",
        metavar="TYPE",
        required=True,
        help="event type, e.g. io.croft.sensor.reading or m.room.message",
    )
    publish.add_argument(
        "content", metavar="JSON", help="event content: a JSON object (no floats); - reads stdin"
    )

    call_help = "a call without a screen (voice; video from a file or camera): place or answer"
    call = sub.add_parser(
        "call",
        help=call_help,
        description=f"croft call: {call_help} (a doorbell, an intercom). It runs as a device "
        "of the owner of its own (CROFTCALL, token in DIR/call.token) on the running node, "
        "signals with the standard m.call.* events and carries the media with WebRTC "
        "(aiortc). ICE servers come only from the node's /voip/turnServer. Progress goes to "
        "stderr; each call ends with one JSON line on stdout (setup time, time to the first "
        "audio frame, the received audio's frequency and level, CPU, memory).",
        epilog="Exit status: 0 the call was taken (or --auto-answer ran); 1 it was not "
        "(rejected, unanswered, the media failed); 2 a bad argument or no running node.",
    )
    _data_dir_arg(call)
    call.add_argument(
        "room", metavar="ROOM", help="room ID (!...) or alias (#name:server); * with --auto-answer"
    )
    call.add_argument(
        "--auto-answer", action="store_true", help="answer the calls that ring in ROOM"
    )
    call.add_argument("--once", action="store_true", help="with --auto-answer: one call, then exit")
    call.add_argument("--play", metavar="FILE", type=Path, help="send this audio file")
    call.add_argument("--tone", metavar="HZ", type=float, help="send a sine tone (no --play)")
    call.add_argument("--record", metavar="FILE", type=Path, help="record what is heard (WAV)")
    call.add_argument("--video", metavar="FILE", type=Path, help="send this video file (looped)")
    call.add_argument(
        "--camera", metavar="DEVICE", help="send this camera's video (v4l2, e.g. /dev/video0)"
    )
    call.add_argument(
        "--hangup-after", metavar="SECONDS", type=float, help="hang up once connected this long"
    )
    call.add_argument(
        "--ring-for",
        metavar="SECONDS",
        type=float,
        default=60.0,
        help="how long a call placed rings before it gives up (default 60)",
    )
    call.add_argument(
        "--ice-address",
        metavar="ADDR",
        action="append",
        help="use only this local address for the media (repeatable; default: every one)",
    )

    purge_help = "delete a room's messages sent before a date from this node"
    purge = sub.add_parser(
        "purge",
        help=purge_help,
        description=f"croft purge: {purge_help}, for good: they are not fetched again "
        "from peers (which keep their copies). State events stay, and so do the room's "
        "newest events and those still waiting to be sent to a peer. Works whether the "
        "node runs or not.",
    )
    _data_dir_arg(purge)
    purge.add_argument("room", metavar="ROOM", help="room ID (!...) or alias (#name:server)")
    purge.add_argument(
        "--before",
        metavar="DATE",
        required=True,
        help="an ISO 8601 date or date-time (2026-01-31, 2026-01-31T12:00, local time "
        "unless an offset is given) or an age (30d, 12h, 90m, 2w)",
    )

    tui_help = "the terminal client: chat and calls with the local node, or any homeserver"
    tui = sub.add_parser(
        "tui",
        help=tui_help,
        description=f"croft tui: {tui_help}. Without options it connects to the running "
        "node of the data directory with the access token `croft init` stored; with "
        "--homeserver and --user it logs in there with a password (asked for).",
    )
    _data_dir_arg(tui)
    tui.add_argument("--homeserver", metavar="URL", help="e.g. https://matrix.example.org")
    tui.add_argument("--user", metavar="ID", help="full user ID, e.g. @me:example.org")

    keys_help = "the server's signing keys (rotate)"
    keys = sub.add_parser("keys", help=keys_help, description=f"croft keys: {keys_help}.")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    rotate_help = "make a new signing key current and retire the old one"
    rotate = keys_sub.add_parser(
        "rotate",
        help=rotate_help,
        description=f"croft keys rotate: {rotate_help}. The node must be stopped; it "
        "signs with the new key once started again (`croft run`). The retired key's public "
        "half stays published under old_verify_keys (file DIR/old_verify_keys), so other "
        "servers still verify the events it signed.",
    )
    _data_dir_arg(rotate)
    return parser


def _data_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        default=None,
        help="data directory (default: $CROFT_HOME or the user data directory)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from node.config import ConfigError

    try:
        return COMMANDS[args.command](args)
    except (CliError, ConfigError) as e:
        print(f"croft: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a known failure class, reported in one line
        from node.app import ListenError
        from node.federation.keys import KeyFileError
        from node.storage.database import StorageError

        if isinstance(e, ListenError | KeyFileError | StorageError):
            print(f"croft: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise


def _data_dir(args: argparse.Namespace) -> Path:
    from node.datadir import default_data_dir

    return (args.data_dir or default_data_dir()).expanduser().resolve()


def cmd_init(args: argparse.Namespace) -> int:
    from node.datadir import init_data_dir

    result = init_data_dir(
        _data_dir(args),
        server_name=args.server_name,
        owner=args.owner,
        password=args.password,
        profile=args.profile or "laptop",
        client_listen=args.client_listen,
        federation_listen=args.federation_listen,
    )
    print(f"Initialised {result.data_dir}")
    print(f"  server name: {result.server_name}")
    print(f"  owner:       {result.user_id}")
    if result.password is not None:
        print(f"  password:    {result.password}   (shown once: keep it somewhere safe)")
    # `croft run` goes on serving after this: when stdout is a pipe or a journal, the
    # generated password must not sit in the buffer until the node stops.
    sys.stdout.flush()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from node.config import load_config
    from node.datadir import is_initialised, lock_data_dir

    data_dir = _data_dir(args)
    if not is_initialised(data_dir):
        print(f"No data directory at {data_dir}: initialising with defaults.", flush=True)
        cmd_init(
            argparse.Namespace(
                data_dir=data_dir,
                server_name=None,
                owner=None,
                password=None,
                profile=args.profile,
                client_listen=None,
                federation_listen=None,
            )
        )
    overrides = {"profile": args.profile} if args.profile else None
    config = load_config(data_dir, overrides=overrides)
    _setup_logging(config.logging.level)
    lock = lock_data_dir(data_dir)  # one node per data directory
    try:
        asyncio.run(_run(config))
    finally:
        if lock is not None:
            os.close(lock)
    return 0


def _import_aiohttp_without_ca_bundle() -> None:
    """Import aiohttp without the CA bundle it would load at import time.

    aiohttp builds its two default client SSL contexts when imported, parsing the
    system CA bundle (~2.4 MiB resident, for the life of the process). Croft never uses
    them: its outbound HTTPS passes the context of ``node.federation.tls
    .client_ssl_context``, made (with the CA bundle, honouring SSL_CERT_FILE) on first
    use. So during the import OpenSSL is pointed at no CA file; a client that fell back
    on aiohttp's default would fail verification, never skip it.

    Two more things the import would load for good, ~1.3 MiB resident together
    (benchmarks/REPORT.md, "iot-sensor profile: memory"): frozenlist's compiled
    extension, which links libstdc++ (FROZENLIST_NO_EXTENSIONS: the pure-Python
    FrozenList is the same class; aiohttp only keeps its signal handler lists in it);
    and the system MIME tables (/etc/mime.types), which ``mimetypes.MimeTypes()`` reads
    into the module's global database while aiohttp builds its own table from the
    built-in types only. Croft sets every Content-Type itself; mimetypes' functions
    still read the system tables on first use. And ``html`` comes without its table of
    character references, loaded if ever ``html.unescape`` runs (node/lean_html.py)."""
    if "aiohttp" in sys.modules:
        return
    import mimetypes

    from node.lean_html import import_html_without_entities

    import_html_without_entities()

    mimetypes.inited = True  # MimeTypes() skips init(); guess_type() still calls it
    names = ("SSL_CERT_FILE", "SSL_CERT_DIR", "FROZENLIST_NO_EXTENSIONS")
    saved = {k: os.environ.get(k) for k in names}
    os.environ["SSL_CERT_FILE"] = os.devnull
    os.environ["SSL_CERT_DIR"] = os.devnull
    os.environ["FROZENLIST_NO_EXTENSIONS"] = "1"
    try:
        import aiohttp  # noqa: F401
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def _run(config: object) -> None:
    _import_aiohttp_without_ca_bundle()
    from node.affinity import pin_event_loop
    from node.app import serve
    from node.config import Config

    assert isinstance(config, Config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Before the database's threads start: they inherit the loop's CPU (node/affinity.py).
    pin_event_loop(config.process.pin_cpu, loop)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # LAN discovery (mDNS) runs when features.discovery is on (the default), unless the
    # federation listener is on loopback only (node/app.py serve).
    running = await serve(config, discovery=True)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await running.stop()


def cmd_status(args: argparse.Namespace) -> int:
    from node.config import load_config
    from node.datadir import pid_alive, read_run_file

    data_dir = _data_dir(args)
    config = load_config(data_dir)
    store = sum(
        p.stat().st_size for p in data_dir.glob(config.storage.database + "*") if p.is_file()
    )
    run = read_run_file(data_dir)
    running = run is not None and pid_alive(int(run.get("pid", 0)))
    if not running or run is None:
        run = {}
    listeners = run.get("listeners", {})
    answering = running and _answers(listeners.get("client"))
    info = {
        "running": running,
        "answering": answering,
        "pid": run.get("pid"),
        # What the running node uses (`croft run --profile` and CROFT_* may differ
        # from config.toml), else what the next `croft run` would use.
        "server_name": run.get("server_name", config.server_name),
        "profile": run.get("profile", config.profile),
        "data_dir": str(data_dir),
        "listeners": listeners,
        "store_bytes": store,
        "history": _history_stats(config),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        state = "running" if running else "not running"
        if running and not answering:
            state += " (not answering)"
        print(f"croft {state}" + (f" (pid {info['pid']})" if running else ""))
        print(f"  server name: {info['server_name']}   profile: {info['profile']}")
        print(f"  data dir:    {data_dir}")
        for name, addr in listeners.items():
            scheme = "https" if name == "federation" else "http"
            print(f"  {name + ':':12} {scheme}://{addr}")
        print(f"  store size:  {_human(store)}")
        history = info["history"]
        if history:
            print(
                f"  history:     {history['timeline_events']} timeline events cached,"
                f" {history['evicted']} left for peers to give back"
                f" ({_human(history['used_bytes'])} in use of a"
                f" {_human(history['max_store_bytes'])} budget)"
            )
    return 0 if running else EXIT_NOT_RUNNING


def _history_stats(config: Any) -> dict[str, int]:
    """The history cache (node/history) as `croft status` shows it; {} with no database."""
    import sqlite3

    from node.history.store import stats_sync

    if not config.database_path.exists():
        return {}
    conn = sqlite3.connect(f"file:{config.database_path}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        stats = stats_sync(conn)
    except sqlite3.Error:
        return {}  # a database of an older schema: the node migrates it at start
    finally:
        conn.close()
    return {
        **stats,
        "max_store_bytes": config.history.max_store_bytes,
        "max_timeline_events_per_room": config.history.max_timeline_events_per_room,
    }


def cmd_peers(args: argparse.Namespace) -> int:
    from node.config import load_config
    from node.discovery.registry import read_peers

    config = load_config(_data_dir(args))
    if getattr(args, "peers_command", None) == "trust":
        return _peers_trust(config.database_path, args.name)
    peers, conflicts = (
        read_peers(config.database_path) if config.database_path.exists() else ([], [])
    )
    if args.json:
        print(json.dumps({"peers": [p.as_json() for p in peers], "refused": conflicts}))
        return 0
    if not peers:
        print("No peers seen on the LAN.")
    for p in peers:
        print(f"{p.server_name}  {p.state}  {', '.join(p.addresses)} port {p.port}")
        print(f"    key {p.key_id} {p.fingerprint}")
    for c in conflicts:
        print(
            f"REFUSED {c['server_name']} at {', '.join(c['addresses'])}: "
            f"key {c['key_id']} {c['fingerprint']} is not the pinned one"
        )
    return 0


def _peers_trust(database: Path, name: str) -> int:
    from node.discovery.registry import NothingRefused, trust

    try:
        done = trust(database, name)
    except NothingRefused as e:
        raise CliError(f"{e}: nothing to trust (`croft peers` lists refusals)") from None
    if done.old is None:
        print(f"{name} was not pinned: its refusals are cleared, and the first key it")
        print("shows on the LAN will be pinned.")
        return 0
    print(f"{name}: key {done.old[0]} {done.old[1]} is no longer trusted;")
    print(f"now pinned to key {done.key_id} {done.fingerprint},")
    print(f"announced from {', '.join(done.addresses)}. Its refusals are cleared.")
    print("A running node takes this up within about 2 s.")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from node.config import load_config
    from node.sensors.publish import EXIT_NOT_SENT, NotSent, PublishError, parse_request, publish

    text = sys.stdin.read() if args.content == "-" else args.content
    try:
        content = parse_request(args.room, args.event_type, text)
        config = load_config(_data_dir(args))
        done = publish(config, args.room, args.event_type, content)
    except PublishError as e:
        raise CliError(str(e)) from None
    except NotSent as e:
        print(f"croft: error: {e}", file=sys.stderr)
        return EXIT_NOT_SENT
    if done.event_id is None:
        print("queued")
        print(
            "croft: the node is not running: the event is queued and sent when it starts",
            file=sys.stderr,
        )
        return 0
    print(done.event_id)
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    if args.room == "*" and not args.auto_answer:
        raise CliError("ROOM * (any room) goes with --auto-answer")
    if args.once and not args.auto_answer:
        raise CliError("--once goes with --auto-answer")
    if args.play is not None and not args.play.is_file():
        raise CliError(f"no file {args.play}")
    if not 1 <= args.ring_for <= 3600:
        raise CliError("--ring-for: from 1 to 3600 seconds")
    if args.video is not None and not args.video.is_file():
        raise CliError(f"no file {args.video}")
    if args.video is not None and args.camera is not None:
        raise CliError("--video and --camera: one or the other")
    if args.tone is not None and not 20 <= args.tone <= 20_000:
        raise CliError("--tone: a frequency from 20 to 20000 Hz")
    from node.calls.agent import AgentError, AgentOptions, run_agent  # aiortc: only here

    options = AgentOptions(
        room=args.room,
        auto_answer=args.auto_answer,
        once=args.once,
        play=args.play,
        tone_hz=args.tone,
        video=args.video,
        camera=args.camera,
        record=args.record,
        hangup_after_s=args.hangup_after,
        ice_addresses=args.ice_address,
        lifetime_ms=int(args.ring_for * 1000),
    )
    try:
        return asyncio.run(run_agent(_data_dir(args), options))
    except AgentError as e:
        raise CliError(str(e)) from None


def cmd_purge(args: argparse.Namespace) -> int:
    from node.config import load_config
    from node.history.purge import PurgeError, parse_before, purge_room

    config = load_config(_data_dir(args))
    try:
        done = purge_room(config.database_path, args.room, parse_before(args.before))
    except PurgeError as e:
        raise CliError(str(e)) from None
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(done.before_ms / 1000))
    print(f"{done.room_id}: {done.purged} events sent before {when} deleted", end="")
    print(f", {done.forgotten} already out of the cache forgotten." if done.forgotten else ".")
    if done.kept:
        print(f"{done.kept} stay: the room's newest, or still to be sent to a peer.")
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    from tui.session import Connection, SessionError, local_connection

    if bool(args.homeserver) != bool(args.user):
        raise CliError("--homeserver and --user go together")
    if args.homeserver:
        import getpass

        password = getpass.getpass(f"Password for {args.user}: ")
        connection = Connection(args.homeserver, args.user, password=password)
    else:
        try:
            connection = local_connection(_data_dir(args))
        except SessionError as e:
            raise CliError(str(e)) from None
    from tui.app import CroftApp  # textual and nio: only for this command

    app = CroftApp(connection)
    app.run()
    if app.error:
        print(f"croft: error: {app.error}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from node.datadir import OLD_KEYS_FILE, SIGNING_KEY_FILE, is_initialised, lock_data_dir
    from node.events.signing import verify_key_id
    from node.federation.keys import rotate_signing_key

    data_dir = _data_dir(args)
    if not is_initialised(data_dir):
        raise CliError(f"{data_dir} is not initialised (see `croft init --help`)")
    lock = lock_data_dir(data_dir)  # refuses while `croft run` uses the directory
    try:
        new, retired = rotate_signing_key(data_dir / SIGNING_KEY_FILE, data_dir / OLD_KEYS_FILE)
    finally:
        if lock is not None:
            os.close(lock)
    print(f"New signing key {verify_key_id(new)}; {retired.key_id} retired.")
    print("Start the node (`croft run`) to use it.")
    return 0


def _answers(addr: str | None) -> bool:
    if not addr:
        return False
    host, _, port = addr.rpartition(":")
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1"
    import urllib.request  # only `croft status` needs it; keep it off the `croft run` path

    # No proxy: an http_proxy in the environment must not see (or break) a local probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{host}:{port}/_matrix/client/versions", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # At debug level these libraries log every query / packet: the node's own debug
    # lines are what a reader of the log wants.
    for noisy in ("aiosqlite", "zeroconf", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))


COMMANDS = {
    "init": cmd_init,
    "run": cmd_run,
    "status": cmd_status,
    "keys": cmd_keys,
    "peers": cmd_peers,
    "publish": cmd_publish,
    "call": cmd_call,
    "purge": cmd_purge,
    "tui": cmd_tui,
}


if __name__ == "__main__":
    sys.exit(main())
