"""--web.config.file: TLS and bcrypt basic auth, served by a real sidecar process."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest

from exporter.webconfig import WebConfigError, load_web_config
from tests.support.redis_servers import TLSFiles as Certs
from tests.support.redis_servers import make_tls_files as make_certs
from tests.support.sidecar import SidecarProcess, run_sidecar

pytestmark = pytest.mark.e2e

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
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  ciphers: []\n",
         "unknown key tls_server_config.ciphers"),
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


def _client_cert(certs: Certs, name: str, san: str | None) -> tuple[str, str]:
    """A client certificate from the test CA, with `san` as its subjectAltName."""
    d = certs.ca_cert.parent

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=30)

    ext = d / f"{name}.ext"
    ext.write_text("extendedKeyUsage=clientAuth\n" + (f"subjectAltName={san}\n" if san else ""))
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name)
    return str(d / f"{name}.crt"), str(d / f"{name}.key")


AES256 = "ECDHE-ECDSA-AES256-GCM-SHA384"
AES128 = "ECDHE-ECDSA-AES128-GCM-SHA256"


@pytest.fixture(scope="module")
def strict_sidecar(certs: Certs,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    web = tmp_path_factory.mktemp("strict") / "web.yml"
    web.write_text(f"""
tls_server_config:
  cert_file: {certs.server_cert}
  key_file: {certs.server_key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {certs.ca_cert}
  client_allowed_sans: [prometheus.monitoring.svc, spiffe://cluster/ns/monitoring/sa/prom]
  max_version: TLS12
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
  curve_preferences: [CurveP256]
""")
    with run_sidecar(["--redis.addr=", f"--web.config.file={web}"], scheme="https") as proc:
        yield proc


def _get_healthz(port: int, certs: Certs, cert: tuple[str, str], ciphers: str | None = None,
                 curve: str | None = None) -> tuple[str, str]:
    """A real handshake and request: (the cipher negotiated, the response's status line)."""
    ctx = ssl.create_default_context(cafile=str(certs.ca_cert))
    ctx.load_cert_chain(*cert)
    if ciphers:
        ctx.set_ciphers(ciphers)
    if curve:
        ctx.set_ecdh_curve(curve)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := tls.recv(4096):
            reply += chunk
        cipher = tls.cipher()
        assert cipher is not None
        return cipher[0], reply.split(b"\r\n", 1)[0].decode()


def test_client_allowed_sans_admit_only_the_names_listed(strict_sidecar: SidecarProcess,
                                                       certs: Certs) -> None:
    san: str | None
    for name, san in (("prom", "DNS:prometheus.monitoring.svc"),
                      ("spiffe", "URI:spiffe://cluster/ns/monitoring/sa/prom")):
        cipher, status = _get_healthz(strict_sidecar.web_port, certs,
                                      _client_cert(certs, name, san))
        assert status == "HTTP/1.1 200 OK" and cipher == AES256
    for name, san in (("intruder", "DNS:intruder.example"), ("bare", None),
                      ("ip", "IP:127.0.0.1")):
        with pytest.raises((ssl.SSLError, OSError)):
            _get_healthz(strict_sidecar.web_port, certs, _client_cert(certs, name, san))


def test_cipher_suites_and_curve_preferences_are_enforced(strict_sidecar: SidecarProcess,
                                                          certs: Certs) -> None:
    cert = _client_cert(certs, "prom2", "DNS:prometheus.monitoring.svc")
    assert _get_healthz(strict_sidecar.web_port, certs, cert, curve="prime256v1")[0] == AES256
    with pytest.raises(ssl.SSLError):
        _get_healthz(strict_sidecar.web_port, certs, cert, ciphers=AES128)
    with pytest.raises(ssl.SSLError):
        _get_healthz(strict_sidecar.web_port, certs, cert, curve="secp384r1")


def _negotiated(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    cipher = c.cipher()
    assert cipher is not None
    return cipher[0]


@pytest.mark.parametrize(("prefer", "expected"), [(True, AES256), (False, AES128)])
def test_prefer_server_cipher_suites_is_enforced(certs: Certs, tmp_path: Path, prefer: bool,
                                                 expected: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"""
tls_server_config:
  cert_file: {certs.server_cert}
  key_file: {certs.server_key}
  max_version: TLS12
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
  prefer_server_cipher_suites: {str(prefer).lower()}
""")
    server = load_web_config(str(path)).tls
    assert server is not None
    client = ssl.create_default_context(cafile=str(certs.ca_cert))
    client.set_ciphers(f"{AES128}:{AES256}")
    assert _negotiated(server, client) == expected


@pytest.mark.parametrize(("extra", "message"), [
    ("  curve_preferences: [CurveP256, X25519]\n", "curve_preferences: .* one curve only"),
    ("  curve_preferences: [P256]\n", "curve_preferences: 'P256'"),
    ("  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", "cipher_suites: 'TLS_RSA_WITH_RC4"),
    ("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "cipher_suites: 'TLS_AES_128_GCM"),
    ("  prefer_server_cipher_suites: maybe\n", "prefer_server_cipher_suites must be"),
    ("  client_allowed_sans: [a.example]\n", "client_allowed_sans needs client_auth_type"),
])
def test_tls_keys_that_cannot_be_enforced_are_refused(certs: Certs, tmp_path: Path, extra: str,
                                                      message: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {certs.server_cert}\n"
                    f"  key_file: {certs.server_key}\n" + extra)
    with pytest.raises(WebConfigError, match=message):
        load_web_config(str(path))


def test_a_refused_tls_key_stops_startup_naming_the_file_and_key(certs: Certs,
                                                                 tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {certs.server_cert}\n"
                    f"  key_file: {certs.server_key}\n  curve_preferences: [CurveP256, X25519]\n")
    with run_sidecar(["--redis.addr=", f"--web.config.file={path}"], wait=False) as proc:
        assert proc.proc.wait(20) == 2
        lines = proc.logs().strip().splitlines()
        assert len(lines) == 1, lines
        assert f"--web.config.file {path}: tls_server_config.curve_preferences" in lines[0]
