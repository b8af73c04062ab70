"""The deploy kit is read, not trusted: every file in deploy/ parses and agrees with the code."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from outbox_worker.cli import _register_commands, cli
from outbox_worker.console.settings import read_console_settings
from outbox_worker.delivery import health
from outbox_worker.observability import Metrics
from outbox_worker.settings.config import (
    DEFAULT_MAX_CLAIMED_BYTES,
    DEFAULT_SHUTDOWN_GRACE,
    MIB,
    parse_duration,
)
from outbox_worker.settings.environment import read_database_url, read_settings
from tests.deploy_kit import (
    ALERTS,
    DASHBOARD,
    DEPLOY,
    alert_rules,
    dashboard_exprs,
    declared_names,
    metric_names,
    queried_metrics,
)
from tests.unit.fakes import Recording

README = DEPLOY.parent / "README.md"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes" / "outbox-worker.yaml"
SYSTEMD = DEPLOY / "systemd" / "outbox-worker.service"
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
ALL_FILES = sorted(p for p in DEPLOY.rglob("*") if p.is_file())


def kubernetes() -> list[dict[str, Any]]:
    """The Kubernetes objects, in file order."""
    return [doc for doc in yaml.safe_load_all(KUBERNETES.read_text()) if doc]


def kind(name: str) -> dict[str, Any]:
    """The one Kubernetes object of this kind."""
    (found,) = [doc for doc in kubernetes() if doc["kind"] == name]
    return found


def worker_container() -> dict[str, Any]:
    """The worker container of the Deployment."""
    (container,) = kind("Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    """A container's plain env values by name (secret references left out)."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def systemd() -> dict[str, list[str]]:
    """The unit's Key=value lines, every value of each key."""
    values: dict[str, list[str]] = {}
    for line in SYSTEMD.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    pairs = [tuple(line.split(None, 1)) for line in lines if not line.startswith("#")]
    stages = [i for i, (op, _) in enumerate(pairs) if op.upper() == "FROM"]
    return [(op.upper(), rest) for op, rest in pairs[stages[-1] :]]


def docker(op: str) -> list[str]:
    """Arguments of every ``op`` instruction in the final stage."""
    return [rest for name, rest in dockerfile() if name == op]


# --- every file -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    """Each YAML file in deploy/ is valid YAML with at least one document."""
    assert [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def known_variables() -> set[str]:
    """Every OUTBOX_* name the configuration reads, found by recording what it looks up."""
    env = Recording({"OUTBOX_DATABASE_URL": "postgresql://db/app", "OUTBOX_API_KEY": "sk_test_x"})
    read_settings(env)
    read_database_url(env)
    read_console_settings({}, env)
    return {name for name in env.read if name.startswith("OUTBOX_")}


def test_every_outbox_variable_in_deploy_is_one_the_worker_reads() -> None:
    """An OUTBOX_* name in any deploy file that config does not read would be silently ignored."""
    known = known_variables()
    assert "OUTBOX_RETAIN_DEAD" in known
    used = {
        (path.name, name)
        for path in ALL_FILES
        for name in re.findall(r"\bOUTBOX_[A-Z0-9_]+\b", path.read_text())
    }
    unknown = sorted(item for item in used if item[1] not in known)
    assert not unknown, f"deploy files name settings the worker does not read: {unknown}"


def deploy_commands() -> Iterator[tuple[str, list[str]]]:
    """(where, argv after `outbox-worker`) for every command the deploy files run."""
    entrypoint = json.loads(docker("ENTRYPOINT")[-1])
    assert entrypoint == ["outbox-worker"]
    yield "Dockerfile CMD", json.loads(docker("CMD")[-1])
    for name, service in yaml.safe_load(COMPOSE.read_text())["services"].items():
        if "build" in service and "command" in service:
            yield f"compose {name}", list(service["command"])
    for doc in kubernetes():
        pod = doc["spec"].get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            yield f"kubernetes {doc['kind']}", list(container["args"])
    for key in ("ExecStart", "ExecStartPre"):
        for line in systemd().get(key, []):
            program, *args = shlex.split(line)
            assert program.endswith("/outbox-worker")
            yield f"systemd {key}", args


def resolve(argv: list[str]) -> tuple[click.Command, list[str]]:
    """The click command ``argv`` names (through groups) and the arguments left for it."""
    _register_commands([])  # every command
    command: click.Command = cli
    while isinstance(command, click.Group) and argv and not argv[0].startswith("-"):
        found = command.get_command(click.Context(command), argv[0])
        assert found is not None, f"no command {argv[0]!r}"
        command, argv = found, argv[1:]
    return command, argv


def test_every_command_in_deploy_exists_with_its_options() -> None:
    """Each command and --option the deploy files run is one the CLI has."""
    seen = []
    for where, argv in deploy_commands():
        command, rest = resolve(argv)
        options = {opt for param in command.params for opt in param.opts}
        flags = [arg.split("=", 1)[0] for arg in rest if arg.startswith("--")]
        assert set(flags) <= options, f"{where}: {argv} uses options {command.name} lacks"
        seen.append(command.name)
    assert {"run", "migrate"} <= set(seen)


# --- health and metrics -----------------------------------------------------------------------


def test_kubernetes_probes_point_at_served_paths_on_the_metrics_port() -> None:
    """Liveness probes /healthz and readiness /readyz, on the port OUTBOX_METRICS_PORT serves."""
    container = worker_container()
    port = int(env_of(container)["OUTBOX_METRICS_PORT"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == health.HEALTHZ
    assert container["readinessProbe"]["httpGet"]["path"] == health.READYZ
    for probe in ("livenessProbe", "readinessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == port
    annotations = kind("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == port


def test_image_and_compose_health_checks_use_served_paths() -> None:
    """The Dockerfile HEALTHCHECK and compose's checks ask the worker's port for a real path."""
    (env,) = docker("ENV")
    port = env.split("=", 1)[1]
    assert docker("EXPOSE") == [port]
    checks = [*docker("HEALTHCHECK")]
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["worker"]["environment"]["OUTBOX_METRICS_PORT"] == port
    checks.append(" ".join(services["worker"]["healthcheck"]["test"]))
    for check in checks:
        (url,) = re.findall(r"http://[^'\"\s]+", check)
        assert url.startswith(f"http://127.0.0.1:{port}/")
        assert "/" + url.split("/", 3)[3] in health.PATHS


def test_every_metric_the_alerts_and_dashboard_query_is_declared() -> None:
    """Each metric named in an alert expression or a dashboard query is one the worker declares."""
    missing = queried_metrics() - declared_names(Metrics().registry)
    assert not missing, f"queried but never exported: {sorted(missing)}"


def test_alert_rules_and_the_dashboard_parse() -> None:
    """Every alert has a name, an expression and a severity; the dashboard is JSON with queries."""
    assert ALERTS.exists()
    assert DASHBOARD.exists()
    rules = alert_rules()
    assert {"OutboxBacklogOld", "OutboxDeliveryPaused", "OutboxDeadLetters"} <= {
        r["alert"] for r in rules
    }
    for rule in rules:
        assert rule["expr"]
        assert rule["labels"]["severity"] in {"page", "ticket"}
    assert len(dashboard_exprs()) >= 10


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("max(outbox_oldest_pending_seconds) > 900", {"outbox_oldest_pending_seconds"}),
        (
            'sum(increase(outbox_deliveries_total{outcome="dead"}[15m])) > 0',
            {"outbox_deliveries_total"},
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(outbox_send_seconds_bucket[5m])))",
            {"outbox_send_seconds_bucket"},
        ),
        ('absent(up{job="outbox-worker"} == 1)', {"up"}),
        (
            "time() - max(outbox_backlog_sampled_timestamp_seconds)",
            {"outbox_backlog_sampled_timestamp_seconds"},
        ),
    ],
)
def test_metric_names_are_extracted_from_promql(expr: str, names: set[str]) -> None:
    """Functions, labels, ranges, numbers and `by (...)` lists are not taken for metric names."""
    assert metric_names(expr) == names


# --- security and shutdown ---------------------------------------------------------------------


def test_containers_run_as_non_root() -> None:
    """The image's user, every pod and the systemd unit run as an unprivileged user."""
    user = docker("USER")[-1]
    assert user not in {"root", "0"}
    assert not user.startswith("0:")
    for doc in kubernetes():
        pod = doc["spec"].get("template", {}).get("spec")
        if pod is None:
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["kind"]
        assert pod["securityContext"]["runAsUser"] != 0, doc["kind"]
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
    unit = systemd()
    assert unit.get("DynamicUser") == ["yes"] or unit.get("User", ["root"])[-1] != "root"


def grace_in(env: dict[str, str]) -> timedelta:
    """The shutdown grace a deployment runs with: its OUTBOX_SHUTDOWN_GRACE, else the default."""
    value = env.get("OUTBOX_SHUTDOWN_GRACE")
    return DEFAULT_SHUTDOWN_GRACE if value is None else parse_duration(value)


def test_stop_timeouts_exceed_the_shutdown_grace() -> None:
    """Supervisors wait longer than the worker's grace, so a stopping worker is never killed."""
    assert timedelta(seconds=15) == DEFAULT_SHUTDOWN_GRACE
    unit_stop = parse_duration(systemd()["TimeoutStopSec"][-1])
    assert unit_stop > grace_in({})
    pod = kind("Deployment")["spec"]["template"]["spec"]
    k8s_stop = timedelta(seconds=pod["terminationGracePeriodSeconds"])
    assert k8s_stop > grace_in(env_of(worker_container()))
    worker = yaml.safe_load(COMPOSE.read_text())["services"]["worker"]
    assert parse_duration(worker["stop_grace_period"]) > grace_in(worker["environment"])


def documented_memory_ceiling() -> int:
    """Bytes: README "Memory" says to plan on N MiB + k x the claimed-bytes budget."""
    match = re.search(r"plan on (\d+) MiB \+ (\d+) x the budget", README.read_text())
    assert match, "README 'Memory' no longer states the ceiling as 'plan on N MiB + k x the budget'"
    return int(match.group(1)) * MIB + int(match.group(2)) * DEFAULT_MAX_CLAIMED_BYTES


def quantity(text: str) -> int:
    """A Kubernetes or systemd memory quantity in bytes (Mi, Gi, M, G)."""
    number, unit = re.fullmatch(r"(\d+)\s*([A-Za-z]*)", str(text)).groups()  # type: ignore[union-attr]
    scale = {"Mi": MIB, "Gi": 1024 * MIB, "M": MIB, "G": 1024 * MIB, "": 1}[unit]
    return int(number) * scale


def test_memory_limits_are_above_the_documented_ceiling() -> None:
    """The worker's memory request and limit, and systemd's MemoryMax, clear about 190 MiB."""
    ceiling = documented_memory_ceiling()
    assert 180 * MIB < ceiling < 200 * MIB
    resources = worker_container()["resources"]
    assert quantity(resources["requests"]["memory"]) >= ceiling
    assert quantity(resources["limits"]["memory"]) > ceiling
    assert quantity(systemd()["MemoryMax"][-1]) > ceiling


# --- Kubernetes objects -----------------------------------------------------------------------


def test_kubernetes_has_a_migration_job_and_a_disruption_budget_for_the_workers() -> None:
    """The Job runs `migrate`; the PodDisruptionBudget selects the Deployment's pods."""
    (job_container,) = kind("Job")["spec"]["template"]["spec"]["containers"]
    assert job_container["args"] == ["migrate"]
    budget = kind("PodDisruptionBudget")
    labels = kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"].get("maxUnavailable") == 1
