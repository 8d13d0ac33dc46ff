"""`croft tui` argument errors: one line, exit status 2, before textual is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.cli import main


def test_node_not_running(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tui", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("croft: error: the node of ") and "is not running" in err
    assert err.count("\n") == 1


def test_no_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tui", "--data-dir", str(tmp_path / "none")]) == 2
    assert "croft: error: no data directory at" in capsys.readouterr().err


def test_homeserver_needs_user(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tui", "--homeserver", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err == "croft: error: --homeserver and --user go together\n"


def test_local_connection_from_a_running_node(data_dir: Path, tmp_path: Path) -> None:
    import os

    from node.datadir import TUI_TOKEN_FILE, write_run_file
    from tui.session import local_connection

    write_run_file(data_dir, {"pid": os.getpid(), "listeners": {"client": "0.0.0.0:8123"}})
    c = local_connection(data_dir)
    assert c.homeserver == "http://127.0.0.1:8123"
    assert c.token == (data_dir / TUI_TOKEN_FILE).read_text().strip()
    assert c.password is None
