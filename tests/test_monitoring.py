"""The monitoring files: the Prometheus rules pass promtool's check and their unit
tests, every alert is proven to fire and to stay quiet, and the rules and the
Grafana dashboard ask only for metrics that a running broadcaster really exports
(taken from a scrape of a live daemon, not from a list kept by hand)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import REPO, Daemon, free_port, http, webhook_channel, write_config

MONITORING = REPO / "monitoring"
RULES = MONITORING / "broadcaster-rules.yml"
RULE_TESTS = MONITORING / "broadcaster-rules.test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian package 'prometheus'; `make system-tools`)")
# Series Prometheus makes itself for every target, not exported by broadcaster.
PROMETHEUS_OWN = {"up"}
# Grafana's own variables, replaced by a value of the right type before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                   "group_right", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, strings,
    durations and keywords taken out)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = re.findall(r"(?<![\w.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", expr)
    return {name for name in names if name.lower() not in PROMQL_KEYWORDS}


def test_metric_names_are_found_in_promql() -> None:
    expr = ('histogram_quantile(0.95, sum by (channel, le) (rate(broadcaster_delivery_latency'
            '_seconds_bucket{job=~"$job", le!="+Inf"}[$__rate_interval]))) > 2 and on (channel)'
            ' up{job="x"} offset 5m unless time() - foo:bar_total')
    assert metric_names(expr) == {"broadcaster_delivery_latency_seconds_bucket", "up",
                                  "foo:bar_total"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Every sample name in /metrics of a freshly started daemon."""
    folder = tmp_path_factory.mktemp("scrape")
    port = free_port()
    channels = (webhook_channel("leitstelle", "http://127.0.0.1:9")
                + webhook_channel("uebung", "http://127.0.0.1:9", exercise=True))
    daemon = Daemon(write_config(folder, channels, port=port), port)
    daemon.start()
    try:
        status, text = http("GET", daemon.url + "/metrics")
        assert status == 200
    finally:
        daemon.kill()
    yield {sample.name for family in text_string_to_metric_families(text)
           for sample in family.samples}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    queries = [target["expr"] for panel in panels(dashboard["panels"])
               for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["query"]["query"])
            assert found, variable["query"]
            queries.append(found.group(1))
    return queries


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    result = subprocess.run([str(PROMTOOL), "check", "rules", str(RULES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


@needs_promtool
def test_rules_unit_tests_pass() -> None:
    result = subprocess.run([str(PROMTOOL), "test", "rules", str(RULE_TESTS)],
                            capture_output=True, text=True, timeout=60, cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for rule in _rules():
        name = rule["alert"]
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), \
            f"{name}: no test shows it firing"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), \
            f"{name}: no test shows it quiet"


def test_every_alert_says_what_to_do() -> None:
    for rule in _rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        guide = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
        headings = {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                    for line in guide.splitlines() if line.startswith("#")}
        assert anchor in headings, f"{rule['alert']}: no section #{anchor} in the guide"


def test_rules_use_only_exported_metrics(exported: set[str]) -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in _rules()))
    assert used - exported - PROMETHEUS_OWN == set()
    assert "broadcaster_channel_credentials_ok" in used


def test_dashboard_uses_only_exported_metrics(exported: set[str]) -> None:
    queries = _dashboard_queries()
    used = set().union(*(metric_names(query) for query in queries))
    assert used, "no queries found"
    assert used - exported - PROMETHEUS_OWN == set()


def test_dashboard_shows_what_operators_need() -> None:
    queries = _dashboard_queries()
    assert any("broadcaster_alerts_total" in q for q in queries)
    assert any(q.startswith("histogram_quantile(") and
               "broadcaster_delivery_latency_seconds_bucket" in q and "by (channel, le)" in q
               for q in queries)
    assert any("by (channel, state) (broadcaster_deliveries{" in q for q in queries)
    assert any(q.startswith("broadcaster_channel_up{") for q in queries)


# Counted from the ledger: every node exports the same number. Summed over the nodes
# it would double; alerting on it per node would fire once per node.
LEDGER_GAUGE = re.compile(r"\bbroadcaster_(?:deliveries|nodes_live)\b(?!_)")


def test_ledger_gauges_are_taken_once_not_summed_over_nodes() -> None:
    queries = [rule["expr"] for rule in _rules()] + _dashboard_queries()
    using = [q for q in queries if LEDGER_GAUGE.search(q)]
    assert len(using) >= 4, using
    for query in using:
        assert "max" in query and "sum" not in query, query


def test_dashboard_shows_the_nodes() -> None:
    queries = _dashboard_queries()
    assert any(q.startswith("max(broadcaster_nodes_live{") for q in queries)
    assert any(q.startswith("broadcaster_node_info{") for q in queries)
    assert any("by (instance) (increase(broadcaster_claims_total{" in q for q in queries)
    assert any("broadcaster_leases_taken_over_total" in q for q in queries)


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (Grafana's variables filled in) as a recording rule."""
    rules = []
    for index, query in enumerate(_dashboard_queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        query = query.replace("$job", ".+").replace("$instance", ".+")
        rules.append({"record": f"dashboard:query_{index}", "expr": query})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([str(PROMTOOL), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
