"""Croft's configuration: frozen dataclasses built from layered sources.

Layers, lowest first: the defaults in this module, the device profile
(device_profiles/<name>.toml), the data directory's config.toml, then CROFT_*
environment variables (``CROFT_<SECTION>_<KEY>``, e.g. ``CROFT_CLIENT_LISTEN``;
top-level keys as ``CROFT_SERVER_NAME``). Every value is checked: an unknown key,
a wrong type or a bad server name raises :class:`ConfigError` with one line
naming the problem.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from node import affinity
from node.ids import InvalidId, ServerName

CONFIG_FILE = "config.toml"
DEFAULT_PROFILE = "laptop"
ENV_PREFIX = "CROFT_"


class ConfigError(Exception):
    """A configuration problem, worded for the person who runs the node."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, value: str) -> ListenAddress:
        """Parse ``HOST:PORT`` (IPv6 hosts in brackets: ``[::1]:8008``)."""
        host, sep, port_s = value.rpartition(":")
        if not sep or not host or not port_s.isdigit():
            raise ValueError(f"expected HOST:PORT, got {value!r}")
        if host.startswith("["):
            if not host.endswith("]"):
                raise ValueError(f"expected [IPv6]:PORT, got {value!r}")
            host = host[1:-1]
        port = int(port_s)
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range in {value!r}")
        return cls(host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The client-server API listener (plain HTTP, local by default)."""

    listen: ListenAddress = ListenAddress("127.0.0.1", 8008)
    # The URL clients should use, announced in /.well-known/matrix/client.
    # Empty: derived from the request (scheme and Host header).
    public_baseurl: str = ""
    # Origin sent in CORS headers; the spec asks for "*".
    cors_allow_origin: str = "*"


@dataclass(frozen=True, slots=True)
class FederationConfig:
    """The server-server API listener (TLS)."""

    enabled: bool = True
    listen: ListenAddress = ListenAddress("0.0.0.0", 8448)
    # Relative paths are inside the data directory.
    tls_certificate: str = "tls.crt"
    tls_private_key: str = "tls.key"
    max_concurrency: int = 16
    # Outbound TLS: check the certificates of servers found by DNS name against the
    # system CAs (plus ca_file). Servers named by an IP literal or a .local mDNS name
    # cannot hold a publicly trusted certificate; their identity is their signing key.
    verify_certificates: bool = True
    # Extra CA certificates (PEM) trusted for outbound federation, e.g. a LAN's own CA.
    ca_file: str = ""
    # DNS servers ("IP" or "IP:PORT") for SRV and address look-ups; empty: the system's.
    nameservers: tuple[str, ...] = ()
    # Notary servers asked for a server's keys when it cannot be asked itself.
    trusted_key_servers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StorageConfig:
    database: str = "croft.db"
    sqlite_cache_kib: int = 65536


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """The partial-history cache (node/history/cache.py)."""

    # Timeline events (not state) kept per room; older ones are fetched from peers again.
    max_timeline_events_per_room: int = 100_000
    # Database pages in use plus media files.
    max_store_bytes: int = 10 * 1024**3
    # Honour rooms' m.room.retention policies (max_lifetime): older events are deleted.
    retention: bool = False


@dataclass(frozen=True, slots=True)
class MediaConfig:
    max_upload_bytes: int = 100 * 1024**2


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class FeaturesConfig:
    """Optional parts of the node and whether they load."""

    # LAN peers over mDNS (node/discovery): `croft run` announces the node and browses
    # for peers, unless the federation listener is bound to loopback only.
    discovery: bool = True
    sensors: bool = False
    calls: bool = True


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """LAN discovery over mDNS (node/discovery/), when features.discovery is on."""

    # IP addresses of the interfaces to advertise and browse on; empty: all of them.
    interfaces: tuple[str, ...] = ()


SENSOR_DEFAULT_TYPE = "io.croft.sensor.reading"  # node/sensors/__init__.py documents it


@dataclass(frozen=True, slots=True)
class SensorSource:
    """One ``[[sensors.source]]`` table: where readings come from and where they go
    (node/sensors/). Built and checked by :func:`_sensor_sources`."""

    id: str
    kind: str  # "command", "file" or "plugin"
    room: str  # a room ID or alias, resolved by the node when it first publishes
    interval: float = 60.0  # seconds between readings
    type: str = SENSOR_DEFAULT_TYPE
    unit: str = ""
    scale: str = ""  # a decimal multiplier, e.g. "0.001"; empty: none
    timeout: float = 10.0  # seconds a command or plugin may take
    command: tuple[str, ...] = ()  # kind "command": argv, or one shell command line
    shell: bool = False  # the command was a string: run with /bin/sh -c
    path: str = ""  # kind "file"
    entry_point: str = ""  # kind "plugin": a name in the entry point group croft.sensors
    options: tuple[tuple[str, Any], ...] = ()  # kind "plugin": keyword arguments


SENSOR_KINDS = {"command": "command", "file": "path", "plugin": "entry_point"}
MIN_SENSOR_INTERVAL = 0.01
_SENSOR_KEYS = {
    "id", "kind", "room", "interval", "type", "unit", "scale", "timeout",
    "command", "path", "entry_point", "options",
}  # fmt: skip
_SENSOR_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True, slots=True)
class SensorsConfig:
    """Sensor publishing (node/sensors/), when features.sensors is on."""

    # Token bucket per room: events per second, and how many may go at once.
    rate_per_room: float = 10.0
    burst_per_room: int = 100
    # Most rows the queue holds; when full, the oldest readings are dropped.
    queue_cap: int = 100_000
    source: tuple[SensorSource, ...] = ()


def _sensor_sources(name: str, value: Any) -> tuple[SensorSource, ...]:
    """Check the ``[[sensors.source]]`` array of tables (one line per problem)."""
    if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
        raise ConfigError(f"{name} must be an array of tables ([[sensors.source]])")
    sources: list[SensorSource] = []
    for i, table in enumerate(value):
        sources.append(_sensor_source(f"{name}[{i}]", table))
    ids = [s.id for s in sources]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"{name}: id {dupes[0]!r} is used by more than one source")
    return tuple(sources)


def _sensor_source(where: str, t: Mapping[str, Any]) -> SensorSource:
    from decimal import Decimal, InvalidOperation

    from node.ids import RoomAlias, RoomID

    sid = t.get("id")
    if not isinstance(sid, str) or not sid or len(sid) > 64 or set(sid) - _SENSOR_ID_CHARS:
        raise ConfigError(f"{where}: id must be 1-64 characters of a-z A-Z 0-9 . _ -")
    where = f"{where} ({sid})"
    for key in t:
        if key not in _SENSOR_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}")
    kind = t.get("kind")
    if kind not in SENSOR_KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(SENSOR_KINDS)}")
    for other, key in SENSOR_KINDS.items():
        if other != kind and key in t:
            raise ConfigError(f"{where}: {key!r} is for kind {other!r}, not {kind!r}")
    if kind != "plugin" and "options" in t:
        raise ConfigError(f"{where}: 'options' is for kind 'plugin'")
    room = t.get("room")
    if not isinstance(room, str) or not room:
        raise ConfigError(f"{where}: room is missing (a room ID !... or an alias #...:server)")
    try:
        RoomID.parse(room) if room.startswith("!") else RoomAlias.parse(room)
    except InvalidId as e:
        raise ConfigError(f"{where}: room {room!r} is not a room ID or alias: {e}") from None
    kw: dict[str, Any] = {"id": sid, "kind": kind, "room": room}
    for key, low in (("interval", MIN_SENSOR_INTERVAL), ("timeout", 0.001)):
        if key in t:
            v = t[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not v >= low:
                raise ConfigError(f"{where}: {key} must be a number of seconds >= {low}")
            kw[key] = float(v)
    for key in ("type", "unit", "path", "entry_point"):
        if key in t:
            if not isinstance(t[key], str) or not t[key]:
                raise ConfigError(f"{where}: {key} must be a non-empty string")
            kw[key] = t[key]
    etype = kw.get("type", SENSOR_DEFAULT_TYPE)
    if (
        not etype.startswith("io.croft.sensor.")
        or etype == "io.croft.sensor."
        or any(not "!" <= c <= "~" or c == "/" for c in etype)
    ):
        raise ConfigError(
            f"{where}: type {etype!r} must be under io.croft.sensor. (e.g. io.croft.sensor.air)"
        )
    if len(kw.get("unit", "")) > 32:
        raise ConfigError(f"{where}: unit is longer than 32 characters")
    if "scale" in t:
        s = t["scale"]
        try:
            scale = Decimal(s if isinstance(s, str) else repr(s))
        except (InvalidOperation, TypeError):
            scale = Decimal(0)
        if isinstance(s, bool) or not scale.is_finite() or scale == 0:
            raise ConfigError(f"{where}: scale must be a non-zero number, e.g. 0.001")
        kw["scale"] = str(scale)
    if kind == "command":
        cmd = t.get("command")
        if isinstance(cmd, str) and cmd.strip():
            kw["command"], kw["shell"] = (cmd,), True
        elif isinstance(cmd, list) and cmd and all(isinstance(a, str) and a for a in cmd):
            kw["command"] = tuple(cmd)
        else:
            raise ConfigError(f"{where}: command must be a string (run by /bin/sh) or a list")
    elif SENSOR_KINDS[kind] not in kw:
        raise ConfigError(f"{where}: kind {kind!r} needs {SENSOR_KINDS[kind]!r}")
    if "options" in t:
        if not isinstance(t["options"], Mapping):
            raise ConfigError(f"{where}: options must be a table (keyword arguments)")
        kw["options"] = tuple(t["options"].items())
    return SensorSource(**kw)


@dataclass(frozen=True, slots=True)
class VoipConfig:
    """TURN servers handed to clients by GET /voip/turnServer (TURN REST API credentials)."""

    # e.g. ["turn:turn.example.org:3478?transport=udp"]; empty: no TURN, the endpoint
    # answers {}. From the environment: comma-separated.
    turn_uris: tuple[str, ...] = ()
    # The shared secret configured in the TURN server (coturn: static-auth-secret).
    turn_shared_secret: str = ""
    turn_user_lifetime_s: int = 86400


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    """How `croft run` uses the machine's CPUs (node/affinity.py)."""

    pin_cpu: str = "auto"  # "auto", "off" or a CPU number: the event loop's CPU


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path
    server_name: str
    profile: str = DEFAULT_PROFILE
    client: ClientConfig = field(default_factory=ClientConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    sensors: SensorsConfig = field(default_factory=SensorsConfig)
    voip: VoipConfig = field(default_factory=VoipConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def path(self, name: str) -> Path:
        """A path inside the data directory (absolute paths are kept as they are)."""
        p = Path(name)
        return p if p.is_absolute() else self.data_dir / p

    @property
    def database_path(self) -> Path:
        return self.path(self.storage.database)


_SECTION_TYPES: dict[str, type] = {
    name: t for name, t in get_type_hints(Config).items() if dataclasses.is_dataclass(t)
}
LOG_LEVELS = ("debug", "info", "warning", "error")


# -- profiles ----------------------------------------------------------------------------


def _profiles_dir() -> Path:
    import device_profiles  # the package next to node/, shipped with Croft

    return Path(device_profiles.__file__).resolve().parent


def available_profiles() -> list[str]:
    return sorted(p.name[:-5] for p in _profiles_dir().iterdir() if p.name.endswith(".toml"))


def load_profile(name: str) -> dict[str, Any]:
    if name not in available_profiles():
        raise ConfigError(
            f"unknown device profile {name!r} (choose from {', '.join(available_profiles())})"
        )
    text = (_profiles_dir() / f"{name}.toml").read_text("utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"device profile {name}: {e}") from None
    _check_keys(data, f"device profile {name}", allow_top=())
    return data


# -- loading -----------------------------------------------------------------------------


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no config file (run `croft init` first)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    _check_keys(data, str(path), allow_top=("server_name", "profile"))
    return data


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn CROFT_SECTION_KEY=value variables into a nested dict of strings."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "CROFT_HOME":
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if rest in ("server_name", "profile"):
            out[rest] = value
            continue
        for section in _SECTION_TYPES:
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1 :]
                if key not in _field_types(_SECTION_TYPES[section]):
                    raise ConfigError(f"environment {name}: unknown setting {section}.{key}")
                out.setdefault(section, {})[key] = value
                break
        # Other CROFT_* variables (CROFT_LOG_FORMAT, ...) are not configuration keys.
    return out


def load_config(
    data_dir: Path,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config for ``data_dir`` from profile, config file, environment, overrides."""
    environ = os.environ if environ is None else environ
    file_data = read_config_file(data_dir / CONFIG_FILE)
    env_data = env_overrides(environ)
    top = _merge(file_data, env_data, dict(overrides or {}))
    profile = top.get("profile", DEFAULT_PROFILE)
    if not isinstance(profile, str):
        raise ConfigError(f"profile must be a string, got {profile!r}")
    merged = _merge(load_profile(profile), top)
    return build_config(data_dir, merged)


def build_config(data_dir: Path, data: Mapping[str, Any]) -> Config:
    server_name = data.get("server_name")
    if not isinstance(server_name, str):
        raise ConfigError("server_name is missing (set it in config.toml)")
    try:
        ServerName.parse(server_name)
    except InvalidId as e:
        raise ConfigError(f"server_name {server_name!r} is not a valid server name: {e}") from None
    sections: dict[str, Any] = {}
    for section, cls in _SECTION_TYPES.items():
        values = data.get(section, {})
        kwargs = {
            key: _coerce(f"{section}.{key}", value, _field_types(cls)[key])
            for key, value in values.items()
        }
        sections[section] = cls(**kwargs)
    cfg = Config(
        data_dir=data_dir,
        server_name=server_name,
        profile=data.get("profile", DEFAULT_PROFILE),
        **sections,
    )
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    if cfg.logging.level not in LOG_LEVELS:
        raise ConfigError(f"logging.level must be one of {', '.join(LOG_LEVELS)}")
    if not affinity.valid_setting(cfg.process.pin_cpu):
        raise ConfigError('process.pin_cpu must be "auto", "off" or a CPU number')
    for name in (
        "federation.max_concurrency",
        "storage.sqlite_cache_kib",
        "history.max_timeline_events_per_room",
        "history.max_store_bytes",
        "media.max_upload_bytes",
        "voip.turn_user_lifetime_s",
    ):
        section, key = name.split(".")
        if getattr(getattr(cfg, section), key) < 1:
            raise ConfigError(f"{name} must be at least 1")
    for name in ("sensors.burst_per_room", "sensors.queue_cap"):
        if getattr(cfg.sensors, name.split(".")[1]) < 1:
            raise ConfigError(f"{name} must be at least 1")
    if not 0 < cfg.sensors.rate_per_room < float("inf"):
        raise ConfigError("sensors.rate_per_room must be a number of events per second > 0")


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = _merge(out[key], value)
            else:
                out[key] = value
    return out


def _field_types(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _check_keys(data: Mapping[str, Any], where: str, allow_top: tuple[str, ...]) -> None:
    for key, value in data.items():
        if key in allow_top:
            continue
        if key not in _SECTION_TYPES:
            raise ConfigError(f"{where}: unknown key {key!r}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: [{key}] must be a table")
        known = _field_types(_SECTION_TYPES[key])
        for sub in value:
            if sub not in known:
                raise ConfigError(f"{where}: unknown key '{key}.{sub}'")


def _coerce(name: str, value: Any, target: Any) -> Any:
    """Check (and, for strings from the environment, convert) one value."""
    origin = get_origin(target)
    if origin in (Union, types.UnionType):
        target = next(a for a in get_args(target) if a is not type(None))
    if target is ListenAddress:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string HOST:PORT, got {value!r}")
        try:
            return ListenAddress.parse(value)
        except ValueError as e:
            raise ConfigError(f"{name}: {e}") from None
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if target is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if get_origin(target) is tuple and get_args(target)[0] is SensorSource:
        return _sensor_sources(name, value)
    if target is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if target is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name} must be a string, got {value!r}")
    if get_origin(target) in (tuple, list) and get_args(target)[0] is str:
        # A TOML array of strings, or (from the environment) a comma-separated string.
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{name} must be a list of strings, got {value!r}")
    raise ConfigError(f"{name}: unsupported setting type")  # pragma: no cover


# -- writing -----------------------------------------------------------------------------


def render_config_file(
    server_name: str,
    profile: str,
    client_listen: str | None,
    federation_listen: str | None,
) -> str:
    """The documented config.toml that `croft init` writes."""
    client_line = f'listen = "{client_listen}"' if client_listen else '# listen = "127.0.0.1:8008"'
    fed_line = (
        f'listen = "{federation_listen}"' if federation_listen else '# listen = "0.0.0.0:8448"'
    )
    text = f"""\
# Croft configuration.
#
# Settings are layered: the device profile named below gives the defaults
# (device_profiles/{profile}.toml), this file overrides the profile, and
# CROFT_<SECTION>_<KEY> environment variables override this file
# (for example CROFT_CLIENT_LISTEN=127.0.0.1:9008). Commented lines show the
# profile's value or the built-in default. Unknown keys are an error.

# This server's name: the part after ':' in user IDs (@owner:NAME). A DNS name,
# an IPv4 literal or a bracketed IPv6 literal, with an optional port. It cannot
# change once rooms exist.
server_name = "{server_name}"

# Device profile: {", ".join(available_profiles())}.
profile = "{profile}"

[client]
# The client-server API (plain HTTP). Keep it on loopback unless a TLS proxy
# sits in front of it.
{client_line}
# public_baseurl = ""             # announced in /.well-known/matrix/client
# cors_allow_origin = "*"

[federation]
# The server-server API (TLS, self-signed certificate made by `croft init`).
# enabled = true
{fed_line}
# tls_certificate = "tls.crt"     # relative paths are inside the data directory
# tls_private_key = "tls.key"
# max_concurrency = 16            # outbound federation requests at once
# verify_certificates = true      # check TLS certificates of servers found by DNS name
#                                 # (IP literals and .local names are never checked)
# ca_file = ""                    # extra CA certificates (PEM) for outbound federation
# nameservers = []                # DNS servers ("IP" or "IP:PORT") for SRV look-ups;
#                                 # empty: the system's
# trusted_key_servers = []        # notaries asked for keys of unreachable servers

[storage]
# database = "croft.db"
# sqlite_cache_kib = 65536

[history]
# The cache of room history: past these budgets the oldest timeline events (not
# state) leave the store, and are fetched again from peers in the room when a client
# pages back to them. State events and the room graph always stay.
# max_timeline_events_per_room = 100000
# max_store_bytes = 10737418240   # database and media
# retention = false               # delete events older than a room's m.room.retention
#                                 # max_lifetime (they are not fetched again)

[media]
# max_upload_bytes = 104857600

[presence]
# enabled = true

[features]
# discovery = true                # LAN peers over mDNS (croft run; see [discovery])
# sensors = false                 # headless sensor publishing
# calls = true                    # m.call.* voice and video

[discovery]
# LAN peers over mDNS / DNS-SD (_matrix-fed._tcp), when features.discovery is on and
# the federation listener is not on loopback only. Environment override:
# CROFT_DISCOVERY_INTERFACES=10.0.0.5,192.168.1.7 (comma-separated).
# interfaces = []                 # IPv4 addresses to announce and browse on; empty: all

[sensors]
# Sensor readings published as room events by the owner, when features.sensors is on
# (the raspberry-pi and iot-sensor profiles). Readings wait in a durable queue (they
# survive restarts and offline peers), then go out rate-limited per room (a token
# bucket). Event type io.croft.sensor.reading (or one under io.croft.sensor.),
# content {{"sensor_id", "value" (decimal string), "unit", "ts" (ms), "seq"}}: see
# README "Sensors".
# rate_per_room = 10.0            # events per second per room
# burst_per_room = 100            # events at once after a quiet spell
# queue_cap = 100000              # queued rows at most; when full the oldest readings
#                                 # are dropped (their seq numbers show the gap)
#
# One [[sensors.source]] table per source; kind is "file", "command" or "plugin".
# interval (seconds, >= 0.01, default 60), room (ID or alias), unit, scale (a
# multiplier: 0.001 turns millidegrees into degrees), type, timeout (s, default 10).
#
# [[sensors.source]]
# id = "cpu-temp"
# kind = "file"
# path = "/sys/class/thermal/thermal_zone0/temp"
# scale = 0.001
# unit = "°C"
# interval = 60
# room = "#sensors:{server_name}"
#
# [[sensors.source]]
# id = "load"
# kind = "command"                # stdout: a number, or {{"value": ..., "unit": ...}}
# command = "cut -d' ' -f1 /proc/loadavg"   # a string runs in /bin/sh; or a list (argv)
# interval = 30
# room = "#sensors:{server_name}"
#
# [[sensors.source]]
# id = "air"
# kind = "plugin"                 # an entry point in the group croft.sensors, called with
# entry_point = "bme280"          # options as keyword arguments; sync or async, returns
# options = {{ address = 118 }}     # a number or {{"value": ..., "unit": ...}}
# type = "io.croft.sensor.air"
# interval = 10
# room = "#sensors:{server_name}"

[voip]
# TURN servers for calls, given to clients by /voip/turnServer with time-limited
# credentials (the TURN REST API: username "<expiry>:<user_id>", password
# base64(HMAC-SHA1(secret, username)); coturn's use-auth-secret). With no URIs or no
# secret, clients are told there is no TURN server. Environment override:
# CROFT_VOIP_TURN_URIS=uri1,uri2 (comma-separated).
# turn_uris = []                  # e.g. ["turn:turn.example.org:3478?transport=udp"]
# turn_shared_secret = ""
# turn_user_lifetime_s = 86400    # how long the credentials stay valid

[process]
# pin_cpu = "auto"                # the CPU of the event loop and the database threads:
#                                 # "auto" (the one it starts on), "off", or a number

[logging]
# level = "info"                  # debug, info, warning, error
"""
    return _show_profile_values(text, load_profile(profile))


def _show_profile_values(text: str, profile: Mapping[str, Any]) -> str:
    """The commented ``# key = value`` lines of the sections the profile sets, with the
    profile's value instead of the built-in default (trailing comments kept in place)."""
    out: list[str] = []
    section: str | None = None
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            name = line.strip()
            section = name[1:-1] if not name.startswith("[[") else None
        key, sep, rest = line[2:].partition(" = ")
        values = profile.get(section or "", {})
        if line.startswith("# ") and sep and key in values:
            old, hash_, comment = rest.rstrip("\n").partition("  #")
            value = _toml_value(values[key])
            width = len(old) if hash_ else 0
            line = f"# {key} = {value.ljust(width)}{hash_}{comment}\n"
        out.append(line)
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)
