"""--web.config.file: TLS and bcrypt basic auth, served by a real sidecar process."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest

from exporter.webconfig import WebConfigError, load_web_config
from tests.support.redis_servers import TLSFiles as Certs
from tests.support.redis_servers import make_tls_files as make_certs
from tests.support.sidecar import SidecarProcess, run_sidecar

USER, PASSWORD = "prometheus", "s3cret-scrape-pw"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_sidecar(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    web = tmp_path_factory.mktemp("web") / "web.yml"
    web.write_text(f"""
tls_server_config:
  cert_file: {certs.server_cert}
  key_file: {certs.server_key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {certs.ca_cert}
basic_auth_users:
  {USER}: {hashed}
http_server_config:
  headers:
    X-Frame-Options: deny
""")
    with run_sidecar(
        ["--redis.addr=redis://127.0.0.1:6379", f"--web.config.file={web}"], scheme="https"
    ) as proc:
        yield proc


def _client(certs: Certs, with_cert: bool = True) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(certs.ca_cert))
    if with_cert:
        ctx.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    return httpx.Client(verify=ctx)


def test_tls_with_client_cert_and_basic_auth(tls_sidecar: SidecarProcess, certs: Certs) -> None:
    with _client(certs) as client:
        ok = client.get(f"{tls_sidecar.web_url}/metrics", auth=(USER, PASSWORD))
        assert ok.status_code == 200
        assert "\nredis_up 1\n" in ok.text
        assert ok.headers["x-frame-options"] == "deny"
        again = client.get(f"{tls_sidecar.web_url}/metrics", auth=(USER, PASSWORD))
        assert again.status_code == 200
        assert client.get(f"{tls_sidecar.web_url}/metrics").status_code == 401
        wrong = client.get(f"{tls_sidecar.web_url}/metrics", auth=(USER, "nope"))
        assert wrong.status_code == 401
        assert (
            client.get(f"{tls_sidecar.web_url}/metrics", auth=("someone", PASSWORD)).status_code
            == 401
        )
        too_long = client.get(f"{tls_sidecar.web_url}/metrics", auth=(USER, "x" * 100))
        assert too_long.status_code == 401


def test_tls_refuses_clients_without_a_certificate(
    tls_sidecar: SidecarProcess, certs: Certs
) -> None:
    with _client(certs, with_cert=False) as client, pytest.raises(httpx.HTTPError):
        client.get(f"{tls_sidecar.web_url}/metrics", auth=(USER, PASSWORD))


def test_plain_http_is_not_served_on_a_tls_listener(tls_sidecar: SidecarProcess) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_sidecar.web_port}/metrics", timeout=3)


def test_no_secret_in_logs(tls_sidecar: SidecarProcess, certs: Certs) -> None:
    with _client(certs) as client:
        client.get(f"{tls_sidecar.web_url}/metrics", auth=(USER, "wrong-pw-xyz"))
    assert PASSWORD not in tls_sidecar.logs()
    assert "wrong-pw-xyz" not in tls_sidecar.logs()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("basic_auth_users:\n  u: plaintext\n", "not bcrypt"),
        ("tls_server_config:\n  cert_file: /nope.crt\n  key_file: /nope.key\n", "cert_file"),
        ("tls_server_config:\n  cert_file: a\n", "needs cert_file and key_file"),
        ("unknown_key: 1\n", "top-level keys"),
    ],
)
def test_bad_web_config_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(content)
    with pytest.raises(WebConfigError, match=message):
        load_web_config(str(path))


def test_bad_web_config_stops_startup_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  u: plaintext\n")
    with run_sidecar([f"--web.config.file={path}"], wait=False) as proc:
        assert proc.proc.wait(20) == 2
        lines = proc.logs().strip().splitlines()
        assert len(lines) == 1 and "--web.config.file" in lines[0], lines
