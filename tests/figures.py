"""What the fault and fuzz suites showed, in figures, printed at the end of the run (not only "passed")."""

from __future__ import annotations

from typing import Any

FIGURES: list[tuple[str, dict[str, Any]]] = []


def report(suite: str, **figures: Any) -> None:
    FIGURES.append((suite, figures))


def lines() -> list[str]:
    return [f"{suite}: " + ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in figs.items())
            for suite, figs in FIGURES]  # fmt: skip
