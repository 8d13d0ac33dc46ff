"""What `pipx install .` puts on a machine: the wheel built from this tree carries every
data file the code opens at run time, not only the Python modules (the TUI's stylesheet
was missing once: `croft tui` failed on an installed copy while every test passed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_the_data_files(tmp_path: Path) -> None:
    # From a copy without build artefacts: a stale build/ or *.egg-info in the tree
    # would hand setuptools files the configuration no longer names.
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", "out", ".ruff_cache"
        ),
    )
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps",
         "--quiet", "--wheel-dir", str(tmp_path), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("croft-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        *(
            f"node/storage/migrations/{p.name}"
            for p in (ROOT / "node/storage/migrations").glob("*.sql")
        ),
        *(f"device_profiles/{p.name}" for p in (ROOT / "device_profiles").glob("*.toml")),
        *(f"tui/{p.relative_to(ROOT / 'tui')}" for p in (ROOT / "tui").rglob("*.tcss")),
        "node/py.typed",
    }
    assert len(wanted) > 20
    assert wanted <= names, sorted(wanted - names)
