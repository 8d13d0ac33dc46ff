"""`croft call`'s arguments and its refusals (real processes; no call is placed: a call
needs the network lab, tests/calls/test_agent_lab.py), and that the agent loads no
terminal-client library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import PASSWORD, assert_one_line_error, croft, init

FREE = ["--client-listen", "127.0.0.1:0", "--federation-listen", "127.0.0.1:0"]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose node is not running."""
    base = tmp_path_factory.mktemp("call")
    result = init(base / "node", "--password", PASSWORD, *FREE, cwd=base)
    assert result.returncode == 0, result.stderr
    return base / "node"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["*"], ["ROOM *", "--auto-answer"]),
        (["!r:x", "--once"], ["--once", "--auto-answer"]),
        (["!r:x", "--play", "/no/such.wav"], ["no file", "/no/such.wav"]),
        (["!r:x", "--tone", "5"], ["--tone"]),
        (["!r:x", "--ring-for", "0"], ["--ring-for"]),
        (["!r:x", "--video", "/no/such.y4m"], ["no file", "/no/such.y4m"]),
        (["!r:x", "--video", "/etc/hostname", "--camera", "/dev/video0"], ["one or the other"]),
    ],
)
def test_bad_arguments(stopped: Path, args: list[str], fragments: list[str]) -> None:
    result = croft("call", "--data-dir", stopped, *args, cwd=stopped.parent)
    assert_one_line_error(result, *fragments)


def test_needs_a_running_node(stopped: Path) -> None:
    result = croft("call", "--data-dir", stopped, "!r:x", "--tone", "440", cwd=stopped.parent)
    assert_one_line_error(result, "is not running", "croft run")


def test_help_names_the_options(tmp_path: Path) -> None:
    result = croft("call", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for word in ("--auto-answer", "--play", "--record", "--ring-for", "m.call.*", "turnServer"):
        assert word in result.stdout


def test_the_agent_loads_no_terminal_client_library() -> None:
    probe = (
        "import sys, node.calls.agent, node.calls.media, node.calls.audio;"
        "bad = sorted(m for m in ('textual', 'nio', 'vodozemac', 'tui') if m in sys.modules);"
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
