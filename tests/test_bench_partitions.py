"""The benchmark's partitions scenario at its smoke scale (--quick: 100,000 rows), as CI runs it: it must build
the partitioned table, answer the list and unread reads, and drop the partitions past 90 days beside the DELETE."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_partitions_scenario_runs_at_smoke_scale() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "partitions"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for figure in (
        "partitions (",
        "list (page of 20) p95, REST, user with 10,000 in 100,000, partitioned",
        "unread count p95, REST, user with 10,000 in 100,000, partitioned",
        "retention of 90 of 180 days: partition drop (floor: one DELETE)",
        "WAL written: drop (floor: DELETE)",
        "table size after: drop (floor: DELETE, before VACUUM)",
    ):
        assert figure in done.stdout, done.stdout[-3000:]
