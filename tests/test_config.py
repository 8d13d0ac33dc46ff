"""Config layering (profile < file < environment) and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import (
    ConfigError,
    ListenAddress,
    available_profiles,
    build_config,
    load_config,
    load_profile,
    render_config_file,
)


def write_config(d: Path, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.toml").write_text(text)
    return d


def test_profiles_are_shipped_and_differ() -> None:
    assert available_profiles() == ["iot-sensor", "laptop", "raspberry-pi"]
    laptop = load_profile("laptop")
    sensor = load_profile("iot-sensor")
    assert (
        sensor["history"]["max_timeline_events_per_room"]
        < (laptop["history"]["max_timeline_events_per_room"])
    )
    assert sensor["presence"]["enabled"] is False
    assert sensor["features"]["calls"] is False


def test_rendered_config_loads_with_profile_values(tmp_path: Path) -> None:
    d = write_config(tmp_path, render_config_file("example.org", "iot-sensor", None, None))
    cfg = load_config(d, environ={})
    assert cfg.server_name == "example.org"
    assert cfg.profile == "iot-sensor"
    assert cfg.storage.sqlite_cache_kib == 1024
    assert cfg.presence.enabled is False
    assert cfg.client.listen == ListenAddress("127.0.0.1", 8008)


def test_file_overrides_profile_and_env_overrides_file(tmp_path: Path) -> None:
    d = write_config(
        tmp_path,
        'server_name = "a.example"\nprofile = "raspberry-pi"\n'
        '[client]\nlisten = "127.0.0.1:9000"\n[presence]\nenabled = true\n',
    )
    cfg = load_config(d, environ={})
    assert cfg.client.listen.port == 9000
    assert cfg.presence.enabled is True  # the file beats the profile's false
    env = {
        "CROFT_CLIENT_LISTEN": "[::1]:9001",
        "CROFT_PRESENCE_ENABLED": "false",
        "CROFT_HISTORY_MAX_TIMELINE_EVENTS_PER_ROOM": "123",
        "CROFT_SERVER_NAME": "b.example:8448",
    }
    cfg = load_config(d, environ=env)
    assert cfg.client.listen == ListenAddress("::1", 9001)
    assert str(cfg.client.listen) == "[::1]:9001"
    assert cfg.presence.enabled is False
    assert cfg.history.max_timeline_events_per_room == 123
    assert cfg.server_name == "b.example:8448"


def test_env_can_choose_profile(tmp_path: Path) -> None:
    d = write_config(tmp_path, 'server_name = "a.example"\n')
    cfg = load_config(d, environ={"CROFT_PROFILE": "iot-sensor"})
    assert cfg.profile == "iot-sensor"
    assert cfg.features.calls is False


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('server_name = "a.example"\n[client]\nlisen = "x"\n', {}, "unknown key 'client.lisen'"),
        ('server_name = "a.example"\nbogus = 1\n', {}, "unknown key 'bogus'"),
        ('server_name = "a.example"\n[client]\nlisten = 8008\n', {}, "client.listen must be"),
        ('server_name = "a.example"\n[client]\nlisten = "nohost"\n', {}, "HOST:PORT"),
        (
            'server_name = "a.example"\n[presence]\nenabled = "maybe"\n',
            {},
            "presence.enabled must be true or false",
        ),
        (
            'server_name = "a.example"\n[media]\nmax_upload_bytes = "big"\n',
            {},
            "media.max_upload_bytes must be an integer",
        ),
        ('server_name = "a.example"\n[media]\nmax_upload_bytes = 0\n', {}, "at least 1"),
        ('server_name = "-bad-.example::"\n', {}, "not a valid server name"),
        ('server_name = "a.example"\nprofile = "toaster"\n', {}, "unknown device profile"),
        ('server_name = "a.example"\n[logging]\nlevel = "loud"\n', {}, "logging.level"),
        ('server_name = "a.example"\n', {"CROFT_CLIENT_NOPE": "1"}, "CROFT_CLIENT_NOPE"),
        ('server_name = "a.example"\n', {"CROFT_CLIENT_LISTEN": "x:99999"}, "out of range"),
        ("server_name = \n", {}, "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_error(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    d = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(d, environ=env)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="croft init"):
        load_config(tmp_path, environ={})


@pytest.mark.parametrize(
    "name", ["example.org", "127.0.0.1:8448", "[::1]:8448", "kitchen-pi.local", "a.b:1"]
)
def test_valid_server_names(tmp_path: Path, name: str) -> None:
    assert build_config(tmp_path, {"server_name": name}).server_name == name


@pytest.mark.parametrize(
    "name", ["", "exa mple.org", "example.org:", "example.org:99999x", "[::1", "ex@mple.org"]
)
def test_invalid_server_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="not a valid server name"):
        build_config(tmp_path, {"server_name": name})
