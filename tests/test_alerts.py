"""The alert rules and the Grafana dashboard of deploy/: promtool's unit tests pass, and every metric they name
is one a running notifyd exports at /metrics."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.server import ServerProcess
from tests.tools import missing

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "deploy" / "prometheus"
RULES = RULES_DIR / "notifyd-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "notifyd-dashboard.json"
PROMTOOL = ROOT / ".tools" / "prometheus" / "promtool"
# A metric named in a PromQL expression (recording rules are notifyd:..., with a colon: not matched).
METRIC = re.compile(r"\bnotifyd_[a-z_]+\b")
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def require_promtool() -> Path:
    if not PROMTOOL.exists():
        missing(
            f"CI needs promtool at {PROMTOOL}: run scripts/setup.sh (it extracts Debian's)",
            "promtool is not in .tools/ (scripts/setup.sh extracts it from Debian's prometheus package)",
        )
    return PROMTOOL


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(require_promtool()), *args], capture_output=True, text=True, timeout=120, cwd=RULES_DIR, check=False
    )


def test_the_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "notifyd-rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test() -> None:
    alerts = set(re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), re.MULTILINE))
    tested = set(re.findall(r"^\s*alertname: (\w+)$", (RULES_DIR / "notifyd-rules.test.yml").read_text(), re.MULTILINE))
    assert alerts == tested
    assert {"NotifydDeadLettersGrowing", "NotifydOldestPendingDeliveryOld", "NotifydListenReconnectStorm",
            "NotifydProviderCircuitOpen", "NotifydNotificationQueueFilling"} <= alerts  # fmt: skip


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def named_metrics() -> set[str]:
    """Every notifyd_* metric the rules and the dashboard name."""
    texts = [RULES.read_text(), *dashboard_expressions()]
    return {name for text in texts for name in METRIC.findall(text)}


def exported(body: str) -> set[str]:
    """The sample names /metrics exports, including those of labelled families that have no sample yet."""
    names = set()
    for family in text_string_to_metric_families(body):
        names.add(family.name)
        names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ())}
        names |= {sample.name for sample in family.samples}
    return names


def test_every_metric_the_rules_and_the_dashboard_name_is_exported(server: ServerProcess) -> None:
    body = httpx.get(f"{server.url}/metrics").text
    names = named_metrics()
    assert len(dashboard_expressions()) >= 10 and len(names) >= 10
    assert names - exported(body) == set()
    for name in ("notifyd_oldest_pending_delivery_seconds", "notifyd_notification_queue_usage"):
        [value] = [s.value for f in text_string_to_metric_families(body) for s in f.samples if s.name == name]
        assert 0 <= value < 600


def test_the_recording_rules_the_dashboard_reads_are_defined() -> None:
    recorded = set(re.findall(r"^\s*- record: (\S+)$", RULES.read_text(), re.MULTILINE))
    read = {name for expr in dashboard_expressions() for name in re.findall(r"\bnotifyd:[a-z_]+\b", expr)}
    assert read and read <= recorded
