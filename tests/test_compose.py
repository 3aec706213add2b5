"""docker-compose.monitoring.yml and what it mounts, checked without Docker."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.tools import run_tool

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.monitoring.yml"
PROMETHEUS_CONFIGS = sorted((REPO / "deploy" / "prometheus").glob("prometheus*.yml"))
SERVICES = {"redis", "sidecar", "app", "prometheus", "alertmanager", "grafana"}


def _compose() -> dict[str, Any]:
    with open(COMPOSE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of each bind mount, short or long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE.parent / source).resolve(), target))
    return mounts


def _named_volumes(service: dict[str, Any]) -> list[str]:
    names = []
    for volume in service.get("volumes", []):
        source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
        if source and not source.startswith((".", "/")):
            names.append(source)
    return names


def _flag(command: list[str], flag: str) -> str:
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(flag + "=")]
    assert len(values) == 1, f"{flag} in {command}"
    return values[0]


def test_valid_yaml_with_the_stack() -> None:
    services = _compose()["services"]
    assert set(services) >= SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_pinned(name: str) -> None:
    service = _compose()["services"][name]
    if "build" in service and "image" not in service:
        return
    image = service["image"]
    match = re.fullmatch(r"(?P<repo>[\w./-]+):(?P<tag>[\w.-]+)(@sha256:[0-9a-f]{64})?", image)
    assert match, f"{name}: {image} has no tag"
    assert match.group("tag") != "latest", f"{name}: {image}"
    if "build" not in service:
        assert re.search(r"\d", match.group("tag")), f"{name}: {image} is not a version"


def test_images_match_the_brief() -> None:
    services = _compose()["services"]
    assert services["redis"]["image"].startswith("redis:7.")
    assert re.fullmatch(r"grafana/grafana:11\.\d+\.\d+", services["grafana"]["image"])
    assert re.fullmatch(r"prom/prometheus:v2\.\d+\.\d+", services["prometheus"]["image"])
    assert re.fullmatch(r"prom/alertmanager:v0\.\d+\.\d+", services["alertmanager"]["image"])


def test_sidecar_and_app_are_built_from_the_repository_dockerfile() -> None:
    services = _compose()["services"]
    for name in ("sidecar", "app"):
        build = services[name]["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == REPO
        assert (REPO / build.get("dockerfile", "Dockerfile")).is_file()
    assert services["app"]["entrypoint"] == ["python", "-m", "examples.tradesense_app"]
    env = services["app"]["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://sidecar:4318"
    assert {"REDIS_URL", "DATABASE_URL"} <= set(env)
    sidecar = services["sidecar"]["command"]
    assert _flag(sidecar, "--otlp.listen-address") == "0.0.0.0:4318"
    assert _flag(sidecar, "--redis.addr") == "redis://redis:6379"


def test_redis_runs_as_tradesense_runs_it() -> None:
    command = _compose()["services"]["redis"]["command"]
    args = command.split() if isinstance(command, str) else [str(a) for a in command]
    pairs = dict(zip(args[1::2], args[2::2], strict=False))
    assert args[0] == "redis-server"
    assert pairs["--maxmemory"] == "256mb"
    assert pairs["--maxmemory-policy"] == "allkeys-lru"
    assert pairs["--appendonly"] == "yes"
    assert pairs["--appendfsync"] == "everysec"


def test_every_mounted_file_exists() -> None:
    mounts = [m for s in _compose()["services"].values() for m in _bind_mounts(s)]
    assert len(mounts) >= 6
    for source, target in mounts:
        assert source.exists(), f"{source} (mounted at {target}) does not exist"
        assert REPO in source.parents, f"{source} is outside the repository"


def test_named_volumes_declared_and_used_for_state() -> None:
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    used = {v for s in compose["services"].values() for v in _named_volumes(s)}
    assert used == declared
    for name in ("redis", "prometheus", "alertmanager", "grafana"):
        assert _named_volumes(compose["services"][name]), f"{name} keeps no state"


def test_health_checks() -> None:
    """Every service that publishes a port or that another waits for has a health check."""
    services = _compose()["services"]
    awaited = {dep for s in services.values()
               for dep, cond in (s.get("depends_on") or {}).items()
               if isinstance(cond, dict) and cond.get("condition") == "service_healthy"}
    for name, service in services.items():
        if name in awaited or service.get("ports") or name in SERVICES:
            check = service.get("healthcheck", {})
            assert check.get("test") and not check.get("disable"), name


def test_published_ports_only_on_loopback() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def _container_root(tmp_path: Path, service: dict[str, Any]) -> Path:
    """The service's bind mounts laid out under tmp_path as the container sees them."""
    for source, target in _bind_mounts(service):
        destination = tmp_path / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination)
        else:
            shutil.copy(source, destination)
    return tmp_path


def test_mounted_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    prometheus = _compose()["services"]["prometheus"]
    config = _flag(prometheus["command"], "--config.file")
    root = _container_root(tmp_path, prometheus)
    result = run_tool("promtool", ["check", "config", str(root / config.lstrip("/"))])
    assert result.returncode == 0, result.stdout + result.stderr
    # The rule glob resolves, inside the container, to the repository's rule files.
    rule_files = sorted(p.name for p in (REPO / "alerts").glob("*.rules.yml"))
    assert f"SUCCESS: {len(rule_files)} rule files found" in result.stdout, result.stdout
    for name in rule_files:
        assert name in result.stdout


@pytest.mark.parametrize("path", PROMETHEUS_CONFIGS, ids=lambda p: p.name)
def test_prometheus_configs_pass_promtool_from_the_repository(path: Path) -> None:
    """Also as `prometheus --config.file=deploy/prometheus/...` run from the repository root."""
    result = run_tool("promtool", ["check", "config", str(path.relative_to(REPO))], cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(list((REPO / "alerts").glob("*.rules.yml")))
    assert f"SUCCESS: {count} rule files found" in result.stdout, result.stdout


def test_both_prometheus_configs_agree() -> None:
    """The compose and the local configuration differ only in addresses and alerting."""
    configs = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in PROMETHEUS_CONFIGS]
    assert len(configs) == 2
    compose_cfg, local_cfg = (configs if "alerting" in configs[0] else configs[::-1])
    assert compose_cfg["rule_files"] == local_cfg["rule_files"]
    assert compose_cfg["global"] == local_cfg["global"]
    assert ([j["job_name"] for j in compose_cfg["scrape_configs"]]
            == [j["job_name"] for j in local_cfg["scrape_configs"]])
    jobs = {j["job_name"]: j for j in compose_cfg["scrape_configs"]}
    assert jobs["tradesense-exporter"]["static_configs"][0]["targets"] == ["sidecar:9121"]
    assert compose_cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"]


def test_grafana_provisioning() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = {target: source for source, target in _bind_mounts(grafana)}
    datasources = yaml.safe_load(
        mounts["/etc/grafana/provisioning/datasources/datasources.yml"].read_text())
    prometheus = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert len(prometheus) == 1 and prometheus[0]["url"] == "http://prometheus:9090"
    assert prometheus[0]["isDefault"] is True
    assert prometheus[0]["jsonData"]["timeInterval"] == "15s"
    providers = yaml.safe_load(
        mounts["/etc/grafana/provisioning/dashboards/dashboards.yml"].read_text())["providers"]
    assert len(providers) == 1
    path = providers[0]["options"]["path"]
    assert mounts[path] == REPO / "dashboards"
    assert {p.name for p in mounts[path].glob("*.json")} == {
        "api.json", "database.json", "redis.json", "sidecar.json"}
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (mounts[path] / Path(home).relative_to(path)).is_file()
