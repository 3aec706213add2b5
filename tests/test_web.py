"""The web listener, against a real sidecar process and the shared Redis (read-only use)."""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from tests.support.net import free_port
from tests.support.sidecar import SidecarProcess, run_sidecar

pytestmark = pytest.mark.e2e

SHARED = "redis://127.0.0.1:6379"


class Listener:
    """A TCP port that only counts who dials it: proves a refused target is never dialled."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    tmp = tmp_path_factory.mktemp("web")
    secret = tmp / "pw"
    secret.write_text("Sup3rSecret-pw")
    cfg = tmp / "config.yml"
    cfg.write_text(f"""
scrape_targets:
  - address: {SHARED}
    username: default
    password_file: {secret}
""")
    # The allowed target's password is wrong for the shared Redis (which has none): the
    # failing-auth path must not leak it either.
    with run_sidecar([f"--redis.addr={SHARED}", f"--config.file={cfg}"]) as proc:
        yield proc


def test_metrics_serves_redis_and_own_metrics(sidecar: SidecarProcess) -> None:
    r = httpx.get(f"{sidecar.web_url}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert "\nredis_up 1\n" in text
    assert "# TYPE redis_keyspace_hits_total counter" in text
    assert "redis_exporter_build_info{" in text
    assert "process_resident_memory_bytes" in text


def test_gzip_and_openmetrics_are_negotiated(sidecar: SidecarProcess) -> None:
    r = httpx.get(f"{sidecar.web_url}/metrics",
                  headers={"Accept-Encoding": "gzip", "Accept": "application/openmetrics-text"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")
    assert "# TYPE redis_keyspace_hits counter" in r.text
    families = {f.name for f in parse_openmetrics(r.text)}  # strict: raises on any fault
    assert {"redis_up", "redis_keyspace_hits", "process_resident_memory_bytes"} <= families
    raw = httpx.get(f"{sidecar.web_url}/metrics", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert gzip.decompress(gzip.compress(raw.content)) == raw.content


def test_scrape_allows_only_configured_targets(sidecar: SidecarProcess) -> None:
    other = Listener()
    r = httpx.get(f"{sidecar.web_url}/scrape", params={"target": f"redis://127.0.0.1:{other.port}"})
    assert r.status_code == 403
    assert other.accepted == 0
    ok = httpx.get(f"{sidecar.web_url}/scrape", params={"target": "127.0.0.1:6379"})
    assert ok.status_code == 200
    assert "\nredis_up 1\n" in ok.text or "\nredis_up 0\n" in ok.text


def test_scrape_refuses_credentials_in_the_query(sidecar: SidecarProcess) -> None:
    r = httpx.get(f"{sidecar.web_url}/scrape", params={"target": "redis://u:pw-in-query@127.0.0.1"})
    assert r.status_code == 400
    assert "pw-in-query" not in r.text
    bare = httpx.get(f"{sidecar.web_url}/scrape", params={"target": "u:pw-in-query@127.0.0.1:1"})
    assert bare.status_code == 400 and "pw-in-query" not in bare.text
    assert httpx.get(f"{sidecar.web_url}/scrape").status_code == 400


def test_no_password_in_any_output(sidecar: SidecarProcess) -> None:
    outputs = [httpx.get(f"{sidecar.web_url}{p}").text
               for p in ("/", "/metrics", "/healthz", "/api/slow-queries")]
    outputs.append(httpx.get(f"{sidecar.web_url}/scrape", params={"target": SHARED}).text)
    outputs.append(sidecar.logs())
    for text in outputs:
        assert "Sup3rSecret-pw" not in text


def test_healthz_names_the_error_precisely(tmp_path: Path) -> None:
    closed = free_port()
    with run_sidecar([f"--redis.addr=redis://127.0.0.1:{closed}"]) as proc:
        text = httpx.get(f"{proc.web_url}/metrics").text
        assert "\nredis_up 0\n" in text
        assert "\nredis_exporter_last_scrape_error 1\n" in text
        health = httpx.get(f"{proc.web_url}/healthz").json()
        assert health["targets"][f"redis://127.0.0.1:{closed}"]["error"] == \
            "connection refused"
        assert "connection refused" in proc.logs()


def test_several_targets_carry_a_target_label() -> None:
    closed = free_port()
    with run_sidecar([f"--redis.addr={SHARED}",
                      f"--redis.addr=redis://127.0.0.1:{closed}"]) as proc:
        text = httpx.get(f"{proc.web_url}/metrics").text
        assert f'redis_up{{target="{SHARED}"}} 1' in text
        assert f'redis_up{{target="redis://127.0.0.1:{closed}"}} 0' in text
        assert text.count("# TYPE redis_up gauge") == 1


def test_index_page_links_endpoints(sidecar: SidecarProcess) -> None:
    page = httpx.get(sidecar.web_url + "/").text
    for path in ("/metrics", "/api/slow-queries", "/healthz"):
        assert f'href="{path}"' in page


def test_gzip_refused_with_q_zero(sidecar: SidecarProcess) -> None:
    r = httpx.get(f"{sidecar.web_url}/metrics", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in r.headers
    assert "\nredis_up 1\n" in r.text
