"""The deployment files: systemd units that `systemd-analyze verify` accepts silently, and every setting documented."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from notifyd.core.config import REGISTRY
from tests.tools import missing

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted((ROOT / "deploy").glob("*.service"))
INSTALLED = "/opt/notifyd/venv/bin/notifyd"
ENV_FILES = ("/etc/notifyd/notifyd.env", "/etc/notifyd/migrate.env")


def notifyd_executable(tmp_path: Path) -> Path:
    """The venv's notifyd script when this interpreter has one, else a script made here that runs it."""
    script = Path(sys.executable).parent / "notifyd"
    if script.exists():
        return script
    made = tmp_path / "notifyd"
    made.write_text(f'#!/bin/sh\nexec {sys.executable} -m notifyd "$@"\n')
    made.chmod(0o755)
    return made


def test_there_are_units_for_migrate_serve_and_worker() -> None:
    assert [u.name for u in UNITS] == ["notifyd-migrate.service", "notifyd-serve.service", "notifyd-worker.service"]


def require_systemd_analyze() -> None:
    """scripts/test installs it as root; elsewhere the check is skipped, and under CI that is a failure."""
    if shutil.which("systemd-analyze") is None:
        missing(
            "CI needs systemd-analyze (Debian's systemd): run ./scripts/test as root",
            "systemd-analyze is not installed (apt: systemd)",
        )


def test_systemd_analyze_verify_says_nothing(tmp_path: Path) -> None:
    """It exits 0 on unknown keys and missing files alike, so any output at all is a failure."""
    require_systemd_analyze()
    executable = notifyd_executable(tmp_path)
    for unit in UNITS:
        text = unit.read_text()
        assert INSTALLED in text, f"{unit.name} runs {INSTALLED}, where docs/deploy.md installs the venv"
        for env_file in ENV_FILES:
            (tmp_path / Path(env_file).name).touch()
            text = text.replace(env_file, str(tmp_path / Path(env_file).name))
        (tmp_path / unit.name).write_text(text.replace(INSTALLED, str(executable)))
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / u.name) for u in UNITS)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_unit_with_a_mistake_is_caught(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key makes systemd-analyze print a warning."""
    require_systemd_analyze()
    text = (ROOT / "deploy" / "notifyd-serve.service").read_text()
    text = text.replace(INSTALLED, str(notifyd_executable(tmp_path))).replace("/etc/notifyd/notifyd.env", "-/none")
    (tmp_path / "notifyd-serve.service").write_text(text.replace("Restart=", "Restrat="))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "notifyd-serve.service")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "Restrat" in result.stdout + result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_each_unit_runs_a_real_command(unit: Path, tmp_path: Path) -> None:
    command = re.search(r"^ExecStart=\S+ (\w+)$", unit.read_text(), re.MULTILINE)
    assert command is not None
    result = subprocess.run([str(notifyd_executable(tmp_path)), command[1], "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def settings_read() -> set[str]:
    """Every environment variable notifyd reads: the registry (tests/test_startup.py proves it is complete)."""
    return set(REGISTRY)


def test_every_setting_is_in_the_guide_and_the_example() -> None:
    names = settings_read()
    assert {"DATABASE_URL", "JWT_SECRET", "NOTIFYD_PORT", "MAX_BODY_BYTES"} <= names
    guide = (ROOT / "docs" / "deploy.md").read_text()
    example = (ROOT / ".env.example").read_text()
    assert not {n for n in names if f"`{n}`" not in guide}, "documented in docs/deploy.md"
    assert not {n for n in names if not re.search(rf"^#? ?{n}=", example, re.MULTILINE)}, "listed in .env.example"
