"""The console's deploy kit: the Kubernetes Deployment and Service, and the compose services."""

from __future__ import annotations

from typing import Any

import yaml

from tests.deploy_kit import DEPLOY
from tests.unit.test_deploy import COMPOSE, resolve

CONSOLE = DEPLOY / "kubernetes" / "outbox-console.yaml"


def objects() -> dict[str, dict[str, Any]]:
    """The console's Kubernetes objects by kind (one of each)."""
    docs = [doc for doc in yaml.safe_load_all(CONSOLE.read_text()) if doc]
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs)
    return by_kind


def option(args: list[str], name: str) -> str:
    """The value after ``name`` in an argument list."""
    return args[args.index(name) + 1]


def test_the_console_deployment_runs_the_console_with_sign_in_on_its_port() -> None:
    """One replica (sessions in memory), `console` with a tokens file, probes on /healthz."""
    deployment = objects()["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    command, rest = resolve(list(args))
    assert command.name == "console"
    flags = {arg for arg in rest if arg.startswith("--")}
    assert flags <= {opt for param in command.params for opt in param.opts}
    assert option(args, "--host") == "0.0.0.0"
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert any(option(args, "--tokens-file").startswith(path) for path in mounted)
    port = int(option(args, "--port"))
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_console_service_is_cluster_internal_and_selects_the_pods() -> None:
    """A ClusterIP Service (never a LoadBalancer) on the console's named port."""
    found = objects()
    service, deployment = found["Service"], found["Deployment"]
    assert service["spec"]["type"] == "ClusterIP"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_compose_console_publishes_on_loopback_with_its_token_volume() -> None:
    """The compose console listens on 127.0.0.1 of the host, with the token the one-shot made."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    console, maker = services["console"], services["console-token"]
    assert console["ports"] == ["127.0.0.1:8089:8089"]
    tokens = option(console["command"], "--tokens-file")
    assert option(maker["command"], "--tokens-file") == tokens
    assert console["depends_on"]["console-token"] == {"condition": "service_completed_successfully"}
    assert "8089/healthz" in " ".join(console["healthcheck"]["test"])
    for name in ("console", "console-token"):
        command, _ = resolve(list(services[name]["command"]))
        assert command.name == name
