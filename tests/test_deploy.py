"""deploy/: the Grafana dashboard asks for metrics that /metrics has; the alert rules parse and fire."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.test_pipeline import MIXED, post_file

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dataflow-dashboard.json"
RULES = DEPLOY / "prometheus" / "dataflow-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "dataflow-rules.test.yml"
PROMTOOL = shutil.which("promtool")
METRIC = re.compile(r"\b(dataflow_[a-z0-9_]+)")
# Prometheus's own series, not DataFlow's.
PROMETHEUS_SERIES = {"up"}


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard's panels."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def rules() -> list[dict]:
    """Every rule of the rules file."""
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


@pytest.fixture
def scraped(client, work) -> set[str]:
    """The sample names of a real /metrics page, with imports that completed and failed behind it."""
    post_file(client, MIXED)
    post_file(client, b"Name,Phone\nAda,1\n")
    work()
    post_file(client, MIXED, source="waiting")
    page = client.get("/metrics").get_data(as_text=True)
    return {sample.name for family in text_string_to_metric_families(page) for sample in family.samples}


def test_the_dashboard_asks_only_for_metrics_that_exist(scraped):
    queries = dashboard_queries()
    assert len(queries) >= 10
    named = {name for query in queries for name in METRIC.findall(query)}
    assert named <= scraped, f"not on /metrics: {sorted(named - scraped)}"
    for wanted in (
        "dataflow_import_rows_total",
        "dataflow_import_duration_seconds_bucket",
        "dataflow_queue_depth",
        "dataflow_queue_oldest_age_seconds",
        "dataflow_workers",
        "dataflow_webhook_deliveries_total",
        "dataflow_webhook_recent_delivery_seconds",
        "dataflow_webhook_messages",
    ):
        assert wanted in named


def test_the_rules_ask_only_for_metrics_that_exist(scraped):
    named = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    assert named and named <= scraped, f"not on /metrics: {sorted(named - scraped)}"


def test_the_rules_have_the_alerts_that_matter():
    by_name = {rule["alert"]: rule for rule in rules()}
    assert {"DataFlowQueueWaiting", "DataFlowImportFailureRatioHigh", "DataFlowNoWorkerAlive"} <= set(by_name)
    assert "> 600" in by_name["DataFlowQueueWaiting"]["expr"]  # ten minutes
    for rule in by_name.values():
        assert set(rule) >= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])


def _promtool(*args: str | Path) -> None:
    run = subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make test installs it)")
def test_promtool_checks_the_rules_and_each_alert_fires():
    _promtool("check", "rules", RULES)
    _promtool("test", "rules", RULE_TESTS)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make test installs it)")
def test_promtool_parses_every_dashboard_query(tmp_path: Path):
    records = [
        {"record": f"dataflow:dashboard_query:{i}", "expr": q} for i, q in enumerate(dashboard_queries())
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    _promtool("check", "rules", path)
