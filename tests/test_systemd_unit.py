"""contrib/systemd/croft.service: the unit README.md's "Running on a Raspberry Pi"
installs.

The unit is checked by systemd's own verifier (its ExecStart pointed at an existing
program, since Croft is not installed in /usr/local/bin here), against the README's
steps, and by running `croft run` the way the unit runs it: its ``Environment=``
lines, no command-line options, in a private network namespace (the unit's profile
announces the node on the LAN; ../shared/LAB.md). The sandboxing itself needs a
running systemd, which these tests do not have.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from node.config import available_profiles
from tests.test_cli import clean_env
from tests.test_lean import drive, init, private_namespace_available, watched_env

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "contrib" / "systemd" / "croft.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep case
    parser.read_string(UNIT.read_text("utf-8"))
    return parser


def environment() -> dict[str, str]:
    """The unit's Environment= lines (one NAME=VALUE each)."""
    text = UNIT.read_text("utf-8")
    lines = [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("Environment=")]
    return dict(line.split("=", 1) for line in lines)


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze")
    text = UNIT.read_text("utf-8")
    exec_start = unit()["Service"]["ExecStart"]
    program = exec_start.split()[0]
    copy = tmp_path / "croft.service"
    copy.write_text(text.replace(f"ExecStart={program}", "ExecStart=/bin/true"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # no unknown or ignored settings


def test_the_unit_matches_the_readme() -> None:
    service = unit()["Service"]
    env = environment()
    readme = (REPO / "README.md").read_text("utf-8")
    # The data directory is the unit's StateDirectory, where `croft init` put it.
    assert env["CROFT_HOME"] == f"/var/lib/{service['StateDirectory']}"
    assert f"croft init --data-dir {env['CROFT_HOME']}" in readme
    assert env["CROFT_PROFILE"] in available_profiles()
    # The console script where the README's pipx command puts it, running the node.
    program, *args = service["ExecStart"].split()
    assert args == ["run"]
    bin_dir = str(Path(program).parent)
    assert f"PIPX_BIN_DIR={bin_dir} pipx install" in readme
    assert service["User"] == "croft" and "useradd --system" in readme
    assert service["Restart"] == "on-failure"
    # mDNS and the listeners need these socket families; zeroconf lists interfaces
    # over netlink.
    assert {"AF_INET", "AF_INET6", "AF_NETLINK"} <= set(service["RestrictAddressFamilies"].split())
    assert "PrivateNetwork" not in service and "IPAddressDeny" not in service


def test_croft_runs_as_the_unit_runs_it(tmp_path: Path) -> None:
    """`croft run` with only the unit's environment: the data directory from
    CROFT_HOME, the profile from CROFT_PROFILE (over the config file's), LAN discovery
    on as the profile says."""
    reason = private_namespace_available()
    if reason:
        pytest.skip(reason)
    data_dir = tmp_path / "var-lib-croft"
    init(data_dir, "--server-name", "pi.local")  # config.toml says profile "laptop"
    env = environment()
    assert env["CROFT_PROFILE"] != "laptop"
    base = {k: v for k, v in clean_env().items() if k != "CROFT_FEATURES_DISCOVERY"}
    base.update(env, CROFT_HOME=str(data_dir))
    result = drive(
        tmp_path,
        data_dir,
        env["CROFT_PROFILE"],
        watched_env(tmp_path, tmp_path / "imports.json", base),
        namespace=True,
        run_args=[],
    )
    assert "discovery: announcing pi.local" in result["log"], result["log"]
