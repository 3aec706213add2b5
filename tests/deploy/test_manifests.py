"""deploy/kubernetes/: every overlay renders, validates against the Kubernetes API schemas
(kubernetes-validate) and the Operator's CRD schemas, and keeps the topology's promises."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from exporter.cli import load_config
from tests.deploy.manifests import (
    OPERATOR_GROUP,
    OVERLAYS,
    ROOT,
    Doc,
    all_containers,
    arg,
    container,
    crd_errors,
    matches,
    named,
    of_kind,
    pod_spec,
    render,
)

pytestmark = pytest.mark.e2e  # each overlay rendered by kubectl (tests/conftest.py)

# Native sidecars (restartPolicy: Always on an init container) are on by default from 1.29.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
EVERYTHING = "prometheus-operator"
SIDECAR = "tradesense-exporter"


def test_the_overlays_are_there() -> None:
    assert {"app-sidecar", "central-scraper", EVERYTHING} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_kinds_validate_against_the_api_schemas(overlay: str, version: str) -> None:
    docs = [d for d in render(overlay) if OPERATOR_GROUP not in d["apiVersion"]]
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{overlay} {doc['kind']}/{doc['metadata']['name']} ({version}): "
                        f"{error.message} at {'/'.join(map(str, error.path))}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_operator_kinds_validate_against_the_crd_schemas(overlay: str) -> None:
    for doc in render(overlay):
        if OPERATOR_GROUP in doc["apiVersion"]:
            assert crd_errors(doc) == [], f"{doc['kind']}/{doc['metadata']['name']}"


def test_the_crd_check_refuses_a_misspelt_field() -> None:
    monitor = dict(named(render(EVERYTHING), "PodMonitor", SIDECAR))
    endpoint = {**monitor["spec"]["podMetricsEndpoints"][0], "relabellings": []}
    monitor["spec"] = {**monitor["spec"], "podMetricsEndpoints": [endpoint]}
    assert any("relabellings" in e for e in crd_errors(monitor))


def test_the_prometheus_rule_holds_exactly_the_groups_of_alerts() -> None:
    groups = []
    for path in sorted((ROOT / "alerts").glob("*.rules.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    rule = named(render(EVERYTHING), "PrometheusRule", "tradesense")
    assert rule["spec"]["groups"] == groups
    assert len(groups) >= 8


def test_the_dashboards_are_config_maps_for_grafanas_sidecar() -> None:
    maps = {m["metadata"]["name"]: m for m in of_kind(render(EVERYTHING), "ConfigMap")
            if m["metadata"].get("labels", {}).get("grafana_dashboard") == "1"}
    files = sorted((ROOT / "dashboards").glob("*.json"))
    assert sorted(maps) == [f"tradesense-dashboard-{p.stem}" for p in files]
    for path in files:
        config_map = maps[f"tradesense-dashboard-{path.stem}"]
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert json.loads(config_map["data"][path.name]) == json.loads(path.read_text())


def app(docs: tuple[Doc, ...]) -> Doc:
    return named(docs, "Deployment", "tradesense-api")


def scraper(docs: tuple[Doc, ...]) -> Doc:
    return named(docs, "Deployment", "tradesense-redis-scraper")


def test_the_sidecar_is_a_native_sidecar_on_localhost_scraping_no_redis() -> None:
    deployment = app(render("app-sidecar"))
    sidecar = only_init(deployment)
    assert sidecar["restartPolicy"] == "Always"
    assert arg(sidecar, "--redis.addr") == ""
    assert arg(sidecar, "--otlp.listen-address").startswith("127.0.0.1:")
    app_container = container(deployment, "app")
    env = {e["name"]: e.get("value") for e in app_container["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    # each worker process makes its own instance id: none may be set for the whole pod
    assert "service.instance.id" not in (env.get("OTEL_RESOURCE_ATTRIBUTES") or "")


def only_init(deployment: Doc) -> Doc:
    inits = pod_spec(deployment).get("initContainers", [])
    assert [c["name"] for c in inits] == [SIDECAR]
    return dict(inits[0])


@pytest.mark.parametrize("overlay", ["app-sidecar", "central-scraper"])
def test_every_container_is_non_root_read_only_with_resources(overlay: str) -> None:
    for deployment in of_kind(render(overlay), "Deployment"):
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for c in all_containers(deployment):
            where = f"{deployment['metadata']['name']}/{c['name']}"
            security = c["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert c["resources"]["requests"]["cpu"], where
            assert c["resources"]["requests"]["memory"], where
            assert c["resources"]["limits"]["memory"], where


@pytest.mark.parametrize("overlay", ["app-sidecar", "central-scraper"])
def test_the_exporter_is_probed_on_healthz(overlay: str) -> None:
    for deployment in of_kind(render(overlay), "Deployment"):
        exporter = container(deployment, SIDECAR)
        ports = {p["name"]: p["containerPort"] for p in exporter["ports"]}
        assert ports == {"metrics": 9121}
        assert arg(exporter, "--web.listen-address") == ":9121"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert exporter[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}


@pytest.mark.parametrize("overlay", ["app-sidecar", "central-scraper"])
def test_only_prometheus_reaches_the_web_port(overlay: str) -> None:
    docs = render(overlay)
    prometheus = [{"namespaceSelector": {"matchLabels": {
                       "kubernetes.io/metadata.name": "monitoring"}},
                   "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    for deployment in of_kind(docs, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        policies = [p for p in of_kind(docs, "NetworkPolicy")
                    if matches(p["spec"]["podSelector"]["matchLabels"], labels)]
        assert len(policies) == 1, deployment["metadata"]["name"]
        spec = policies[0]["spec"]
        assert "Ingress" in spec["policyTypes"]
        reaching = [rule for rule in spec["ingress"]
                    if not rule.get("ports")
                    or any(p["port"] in ("metrics", 9121) for p in rule["ports"])]
        assert reaching, "the web port is not reachable at all"
        for rule in reaching:
            assert rule.get("from") == prometheus, rule


def test_the_pod_monitor_selects_the_app_pods_sidecar_port() -> None:
    docs = render(EVERYTHING)
    monitor = named(docs, "PodMonitor", SIDECAR)
    deployment = app(docs)
    assert monitor["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert matches(monitor["spec"]["selector"]["matchLabels"],
                   deployment["spec"]["template"]["metadata"]["labels"])
    ports = {p["name"] for c in all_containers(deployment) for p in c.get("ports", [])}
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert endpoint["port"] in ports
        assert {"action": "drop", "sourceLabels": ["__name__"], "regex": "redis_.*"} in \
            endpoint["metricRelabelings"]


def test_the_service_monitor_scrapes_each_allowed_redis_once(tmp_path: Path) -> None:
    docs = render(EVERYTHING)
    monitor = named(docs, "ServiceMonitor", "tradesense-redis-scraper")
    service = named(docs, "Service", "tradesense-redis-scraper")
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert {p["name"] for p in service["spec"]["ports"]} >= {
        e["port"] for e in monitor["spec"]["endpoints"]}
    config = scraper_config(docs, tmp_path)
    scraped = [e["params"]["target"] for e in monitor["spec"]["endpoints"]
               if e["path"] == "/scrape"]
    assert sorted(t for ts in scraped for t in ts) == sorted(config.scrape_targets)
    assert all(len(ts) == 1 for ts in scraped)
    assert [e["path"] for e in monitor["spec"]["endpoints"]].count("/metrics") == 1


def scraper_config(docs: tuple[Doc, ...], tmp_path: Path):  # type: ignore[no-untyped-def]
    """The scraper's configuration as the sidecar itself loads it from the container's args,
    with the ConfigMap's file and the Secret's files laid out under `tmp_path`."""
    deployment = scraper(docs)
    exporter = container(deployment, SIDECAR)
    mounts = {m["name"]: m["mountPath"] for m in exporter["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    config_map_name = volumes["config"]["configMap"]["name"]
    config_map = named(docs, "ConfigMap", config_map_name)
    config_path = arg(exporter, "--config.file")
    assert config_path.startswith(mounts["config"] + "/")
    text = config_map["data"][Path(config_path).name]
    secrets = mounts["redis-passwords"]
    assert volumes["redis-passwords"]["secret"]["secretName"]
    for entry in yaml.safe_load(text)["scrape_targets"]:
        assert entry["password_file"].startswith(secrets + "/"), entry
    local = tmp_path / "secrets"
    local.mkdir()
    for entry in yaml.safe_load(text)["scrape_targets"]:
        (local / Path(entry["password_file"]).name).write_text("a-password\n")
    (tmp_path / "config.yml").write_text(text.replace(secrets, str(local)))
    args = [a if not a.startswith("--config.file=") else f"--config.file={tmp_path}/config.yml"
            for a in exporter["args"]]
    config = load_config(args, {})
    assert config.targets == ()
    return config


def test_the_scraper_is_one_replica_scraping_no_redis_on_metrics(tmp_path: Path) -> None:
    docs = render("central-scraper")
    deployment = scraper(docs)
    assert deployment["spec"]["replicas"] == 1
    config = scraper_config(docs, tmp_path)
    assert config.scrape_targets
    assert all(t.password for t in config.scrape_targets.values())
