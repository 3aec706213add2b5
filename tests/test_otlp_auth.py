"""--otlp.config.file: the OTLP listener with TLS and a bearer token, pushed to by the real
OpenTelemetry SDK exporter in another process (OTEL_EXPORTER_OTLP_HEADERS,
OTEL_EXPORTER_OTLP_CERTIFICATE), against a real sidecar process."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import yaml

from exporter.webconfig import load_web_config
from tests.support.net import wait_port
from tests.support.redis_servers import TLSFiles as Certs
from tests.support.redis_servers import make_tls_files as make_certs
from tests.support.sidecar import SidecarProcess, run_sidecar

pytestmark = pytest.mark.e2e

TOKEN = "t0ken-for-the-otlp-listener-4f9a"

PUSH = """
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

reader = InMemoryMetricReader()
provider = MeterProvider(metric_readers=[reader],
                         resource=Resource.create({"service.name": "tls-push"}))
provider.get_meter("test").create_counter("secured.pushes").add(3)
print(OTLPMetricExporter(timeout=5).export(reader.get_metrics_data()).name)
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def sidecar(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    directory = tmp_path_factory.mktemp("otlp")
    (directory / "token").write_text(TOKEN + "\n")
    config = directory / "otlp.yml"
    config.write_text(f"""
tls_server_config:
  cert_file: {certs.server_cert}
  key_file: {certs.server_key}
bearer_token_file: token
""")
    with run_sidecar(["--redis.addr=", f"--otlp.config.file={config}"], wait=False) as proc:
        wait_port("127.0.0.1", proc.otlp_port)
        wait_port("127.0.0.1", proc.web_port)
        yield proc


def _push(sidecar: SidecarProcess, certs: Certs, headers: str | None) -> str:
    return _run_push({"OTEL_EXPORTER_OTLP_ENDPOINT": f"https://127.0.0.1:{sidecar.otlp_port}",
                      "OTEL_EXPORTER_OTLP_CERTIFICATE": str(certs.ca_cert),
                      "OTEL_EXPORTER_OTLP_HEADERS": headers or ""})


def _run_push(env: dict[str, str]) -> str:
    """The SDK's OTLP/HTTP metric exporter in another process; its export result."""
    result = subprocess.run([sys.executable, "-c", PUSH], capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin", **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _metrics(sidecar: SidecarProcess) -> str:
    with urllib.request.urlopen(f"{sidecar.web_url}/metrics", timeout=10) as response:
        return response.read().decode()


def _value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert match, series
    return float(match.group(1))


UNAUTHORIZED = ('tradesense_exporter_otlp_requests_rejected_total'
                '{signal="metrics",reason="unauthorized"}')
AUTH_REJECTED = ('tradesense_exporter_auth_rejected_total'
                 '{listener="otlp",reason="unauthorized"}')


def test_sdk_push_with_tls_and_the_token_is_accepted(sidecar: SidecarProcess,
                                                      certs: Certs) -> None:
    assert _push(sidecar, certs, f"Authorization=Bearer%20{TOKEN}") == "SUCCESS"
    assert "secured_pushes_total" in _metrics(sidecar)


@pytest.mark.parametrize("headers", [None, "Authorization=Bearer%20wrong-token-0000000000",
                                     f"Authorization=Basic%20{TOKEN}"],
                         ids=["missing", "wrong", "other-scheme"])
def test_sdk_push_without_the_token_gets_401_and_is_counted(
    sidecar: SidecarProcess, certs: Certs, headers: str | None
) -> None:
    before = _metrics(sidecar)
    assert _push(sidecar, certs, headers) == "FAILURE"
    after = _metrics(sidecar)
    assert _value(after, UNAUTHORIZED) == _value(before, UNAUTHORIZED) + 1
    assert _value(after, AUTH_REJECTED) == _value(before, AUTH_REJECTED) + 1


def test_401_names_the_scheme_and_nothing_is_logged_per_request(
    sidecar: SidecarProcess, certs: Certs
) -> None:
    lines = len(sidecar.logs().splitlines())
    with httpx.Client(verify=ssl.create_default_context(cafile=str(certs.ca_cert))) as client:
        for i in range(50):
            response = client.post(f"https://127.0.0.1:{sidecar.otlp_port}/v1/traces",
                                   content=b"{}", headers={
                                       "content-type": "application/json",
                                       "authorization": f"Bearer guess-{i}"})
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert len(sidecar.logs().splitlines()) == lines
    assert "guess-" not in sidecar.logs() and TOKEN not in sidecar.logs()
    text = _metrics(sidecar)
    assert _value(text, UNAUTHORIZED.replace("metrics", "traces")) >= 50


def test_plain_http_is_not_served_on_the_tls_otlp_listener(sidecar: SidecarProcess) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"http://127.0.0.1:{sidecar.otlp_port}/v1/metrics", timeout=3,
                   headers={"authorization": f"Bearer {TOKEN}"})


def test_bad_otlp_config_stops_startup_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "otlp.yml"
    path.write_text("bearer_token_file: nowhere\n")
    with run_sidecar([f"--otlp.config.file={path}"], wait=False) as proc:
        assert proc.proc.wait(20) == 2
        lines = proc.logs().strip().splitlines()
        assert len(lines) == 1 and "--otlp.config.file" in lines[0], lines


REPO = Path(__file__).resolve().parents[1]


def _compose_services() -> dict[str, Any]:
    text = (REPO / "docker-compose.monitoring.yml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text)["services"])


def test_compose_app_and_sidecar_share_the_otlp_token() -> None:
    """docker-compose.monitoring.yml: the sidecar's --otlp.config.file is the repository's
    deploy/otlp/otlp.yml (bind-mounted), and the app sends that file's token."""
    services = _compose_services()
    flag = next(a for a in services["sidecar"]["command"] if a.startswith("--otlp.config.file="))
    container_path = Path(flag.split("=", 1)[1])
    mounts = {Path(v.split(":")[1]): REPO / v.split(":")[0] for v in services["sidecar"]["volumes"]}
    host_path = mounts[container_path.parent] / container_path.name
    config = load_web_config(str(host_path), bearer=True)
    assert config.bearer_token is not None
    header = services["app"]["environment"]["OTEL_EXPORTER_OTLP_HEADERS"]
    assert unquote(header) == f"Authorization=Bearer {config.bearer_token.decode()}"


def test_compose_otlp_config_takes_the_app_push_and_refuses_others() -> None:
    """The compose pair run here: the sidecar with deploy/otlp/otlp.yml, the SDK with the app's
    OTEL_EXPORTER_OTLP_HEADERS (plain HTTP, as on the compose network)."""
    header = _compose_services()["app"]["environment"]["OTEL_EXPORTER_OTLP_HEADERS"]
    with run_sidecar(["--redis.addr=", f"--otlp.config.file={REPO / 'deploy/otlp/otlp.yml'}"],
                     wait=False) as proc:
        wait_port("127.0.0.1", proc.otlp_port)
        wait_port("127.0.0.1", proc.web_port)
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{proc.otlp_port}"}
        assert _run_push({**env, "OTEL_EXPORTER_OTLP_HEADERS": header}) == "SUCCESS"
        assert _run_push(env) == "FAILURE"
