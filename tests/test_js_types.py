"""The browser modules type-check: tsc --checkJs (strict) against notifyd-client.d.ts, with the pinned TypeScript.

scripts/setup.sh installs it into .tools/; elsewhere the check is skipped, and under CI that is a failure.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from notifyd.http import browser
from tests.tools import missing

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "notifyd" / "static"
TSC = ROOT / ".tools" / "node_modules" / ".bin" / "tsc"
PROJECTS = ("tsconfig.json", "tsconfig.sw.json")
# Relative module specifiers: `from "./x.js"`, `import("./x.js")`, `import "./x.js"` (JSDoc type imports too).
SPECIFIER = re.compile(r"""(?:from|import)\s*\(?\s*["'](\.\.?/[^"']+)["']""")


def require_tsc() -> Path:
    if not TSC.exists():
        missing(
            f"CI needs TypeScript at {TSC}: run ./scripts/test (scripts/setup.sh installs it)",
            "TypeScript is not installed in .tools/ (scripts/setup.sh installs it; needs npm)",
        )
    return TSC


def tsc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(require_tsc()), *args], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False
    )


def test_tsc_is_the_version_setup_pins() -> None:
    pinned = re.search(r"^TYPESCRIPT=(\S+)", (ROOT / "scripts" / "setup.sh").read_text(), re.MULTILINE)
    assert pinned, "scripts/setup.sh pins TYPESCRIPT=x.y.z"
    assert tsc("--version").stdout.strip() == f"Version {pinned[1]}"


@pytest.mark.parametrize("project", PROJECTS)
def test_the_browser_modules_type_check(project: str) -> None:
    result = tsc("--project", project, "--pretty", "false")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_every_browser_module_is_checked() -> None:
    checked = set()
    for project in PROJECTS:
        result = tsc("--project", project, "--listFilesOnly")
        assert result.returncode == 0, result.stdout + result.stderr
        checked |= {Path(line).resolve() for line in result.stdout.splitlines()}
    modules = {path.resolve() for path in STATIC.rglob("*.js")}
    assert modules - checked == set()


def test_every_module_a_module_imports_is_served() -> None:
    served = set(browser._load())
    for module in STATIC.rglob("*.js"):
        for specifier in SPECIFIER.findall(module.read_text()):
            target = (module.parent / specifier).resolve().relative_to(STATIC).as_posix()
            assert target in served, f"{module.relative_to(STATIC)} imports {specifier}, which notifyd does not serve"
    assert {"notifyd-elements.js", "elements/base.js", "elements/bell.js"} <= served


def test_elements_are_defined_through_the_guard() -> None:
    """Defining a tag twice throws: every element module defines through base.js, which skips a taken name."""
    modules = {p.relative_to(STATIC).as_posix(): p.read_text() for p in STATIC.rglob("*.js")}
    assert [name for name, text in modules.items() if "customElements.define(" in text] == ["elements/base.js"]
    defining = sorted(name for name, text in modules.items() if 'define("notifyd-' in text)
    assert defining == [f"elements/{name}.js" for name in ("bell", "inbox", "preferences", "push-toggle", "toasts")]
