"""Reading deploy/: the files, the PromQL metric names they query, and what a worker exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "outbox-worker.json"

# Series Prometheus writes itself for every scrape target: no worker exports them.
PROMETHEUS_SERIES = frozenset({"up"})
_PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
     "unless", "offset"}
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# An identifier not followed by "(" (that would be a function such as rate or max).
_IDENTIFIER = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*\b(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, functions and keywords left out)."""
    bare = _LABEL_LIST.sub("", _BRACES.sub("", _STRING.sub('""', expr)))
    return {name for name in _IDENTIFIER.findall(bare) if name not in _PROMQL_WORDS}


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of deploy/prometheus/alerts.yaml."""
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    """Every query of the Grafana dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def queried_metrics() -> set[str]:
    """Every metric the alert rules and the dashboard read, less Prometheus' own series."""
    exprs = [rule["expr"] for rule in alert_rules()] + dashboard_exprs()
    return set().union(*(metric_names(e) for e in exprs)) - PROMETHEUS_SERIES


def scraped_names(text: str) -> set[str]:
    """Every family and sample name in a /metrics page (text exposition format)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def declared_names(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry can export, labelled children set or not."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names
