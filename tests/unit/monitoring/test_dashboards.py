"""The Prometheus rules file and the Grafana dashboard: well-formed, valid PromQL (promtool,
where installed), and every metric they name is one the code defines (monitoring.metrics,
serving.metrics), and every metric the code defines is on the dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring import metrics as m
from serving import metrics as serving_metrics

ROOT = Path(__file__).resolve().parents[3] / "monitoring"
RULES = ROOT / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "prometheus" / "rules_test.yml"
DASHBOARD = ROOT / "grafana" / "rtml.json"
METRIC = re.compile(r"\b(?:ray_)?rtml_[a-z0-9_]+\b")
PROMTOOL = shutil.which("promtool")


def rule_exprs() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {rule["alert"]: rule["expr"] for group in doc["groups"] for rule in group["rules"]}


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]


def names_in(expr: str) -> set[str]:
    return set(METRIC.findall(expr))


def test_rules_are_alerts_with_severity_and_summary_on_defined_metrics() -> None:
    doc = yaml.safe_load(RULES.read_text())
    known = m.exported_series()
    for group in doc["groups"]:
        for rule in group["rules"]:
            assert rule["alert"].startswith("Rtml")
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"]
            used = names_in(rule["expr"])
            assert used, rule["alert"]
            assert used <= known, (rule["alert"], used - known)


def test_dashboard_is_grafana_json_whose_queries_name_defined_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 30
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    known = m.exported_series()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = names_in(target["expr"])
            assert used and used <= known, (panel["title"], used - known)


def test_every_defined_metric_is_on_the_dashboard() -> None:
    shown = {name for expr in dashboard_exprs() for name in names_in(expr)}
    for spec in m.ALL:
        assert shown & set(spec.series()), f"{spec.name} is on no panel"
    for name in serving_metrics.ALL_NAMES:
        series = {f"ray_{name}{suffix}" for suffix in ("", "_bucket", "_total")}
        assert shown & series, f"{name} is on no panel"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_checks_the_rules_and_their_unit_tests() -> None:
    assert PROMTOOL is not None
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", str(RULES_TEST)],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULES_TEST.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    records = [
        {"record": f"rtml:dashboard_query_{i}", "expr": expr}
        for i, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rules_file_thresholds_match_the_in_process_defaults() -> None:
    """The two alerting paths judge by the same numbers (change both together)."""
    from monitoring.config import MonitoringConfig

    c = MonitoringConfig()
    exprs = rule_exprs()
    expected = {
        "RtmlConsumerLagHigh": f"> {c.lag_records}",
        "RtmlFeaturesStale": f"> {c.staleness_s:g}",
        "RtmlEndToEndLatencyP99High": f"> {c.latency_p99_s:g}",
        "RtmlFieldNullRatioHigh": f"> {c.null_ratio:g}",
        "RtmlFeatureDrift": f"> {c.psi:g}",
        "RtmlVolumeDrop": f"< {c.volume_drop_factor:g} *",
        "RtmlVolumeSpike": f"> {c.volume_spike_factor:g} *",
    }
    for alert, text in expected.items():
        assert text in " ".join(exprs[alert].split()), (alert, text, exprs[alert])
