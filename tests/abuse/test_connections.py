"""Issue 8, items 1, 2, 3 and 11 against the real sidecar process: slowloris and connection caps
on both listeners, accept() failures at the fd limit, oversized headers under both HTTP
protocols, stalled TLS handshakes, and every common signal with a request in flight.

Attackers connect from 127.0.0.2 and up (the whole of 127/8 is loopback), the normal client
from 127.0.0.1, so that the per-client cap tells them apart as it would on a network."""

from __future__ import annotations

import contextlib
import re
import resource
import signal
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.abuse import log_lines, metrics_text, rss_bytes, sample, timed_get
from tests.support.redis_servers import TLSFiles, make_tls_files
from tests.support.sidecar import SidecarProcess, run_sidecar

MB = 1024 * 1024
HUNG_REDIS_TIMEOUT = 2.0
WAVES = 3


def write_config(tmp_path: Path, **server: object) -> str:
    path = tmp_path / "config.yml"
    path.write_text("server:\n" + "".join(f"  {k}: {v}\n" for k, v in server.items()))
    return f"--config.file={path}"


def connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks


@contextlib.contextmanager
def hung_redis() -> Iterator[int]:
    """A 'Redis' that accepts and never answers: a scrape of it is held for the scrape timeout."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_slowloris_is_capped_and_timed_out_on_both_listeners(tmp_path: Path) -> None:
    config = write_config(tmp_path, max_connections=48, max_connections_per_client=16,
                          header_timeout="2s")
    with run_sidecar(["--redis.addr=redis://127.0.0.1:6379", config]) as proc:
        metrics_text(proc)
        usual = max(timed_get(f"{proc.web_url}/metrics")[1] for _ in range(3))
        rss_before = rss_bytes(proc.proc.pid)
        slow: list[socket.socket] = []
        silent: list[socket.socket] = []
        for port in (proc.web_port, proc.otlp_port):
            for _ in range(40):  # 16 admitted, 24 refused at once (per client)
                sock = connect(port, "127.0.0.2")
                with contextlib.suppress(OSError):
                    sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")
                slow.append(sock)
            silent += [connect(port, "127.0.0.3") for _ in range(8)]  # never a first byte
        attack = slow + silent
        started = time.monotonic()
        latencies, peak = [], 0
        while time.monotonic() - started < 1.5:  # slowloris: a header byte every 0.3 s
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"x")
            latencies.append(timed_get(f"{proc.web_url}/metrics")[1])
            latencies.append(timed_get(f"{proc.otlp_url}/v1/metrics")[1])
            peak = max(peak, rss_bytes(proc.proc.pid))
            time.sleep(0.3)
        assert all(closed_by_peer(sock, 3.0) for sock in attack)
        elapsed = time.monotonic() - started
        text = metrics_text(proc)
        rss_after = rss_bytes(proc.proc.pid)
        logs = proc.logs()
    for listener in ("web", "otlp"):
        assert sample(text, "tradesense_exporter_connections_rejected_total",
                      listener=listener, reason="per_client") == 24
        assert sample(text, "tradesense_exporter_connections_rejected_total",
                      listener=listener, reason="header_timeout") == 24
    assert sample(text, "tradesense_exporter_connections_open", listener="otlp") == 0
    assert sample(text, "tradesense_exporter_connections_open", listener="web") <= 1
    assert elapsed < 4.5  # every attacking connection closed by the 2 s header deadline
    assert max(latencies) < max(1.0, 5 * usual), (usual, latencies)
    assert peak < rss_before + 10 * MB and rss_after < rss_before + 10 * MB
    assert "Traceback" not in logs
    assert log_lines(logs, "connections refused") <= 4  # per listener and reason, throttled
    print(f"slowloris: usual {usual * 1000:.0f} ms, during max {max(latencies) * 1000:.0f} ms, "
          f"RSS {rss_before / MB:.1f} -> peak {peak / MB:.1f} -> {rss_after / MB:.1f} MB")


def test_a_full_listener_frees_itself_within_the_header_timeout(tmp_path: Path) -> None:
    config = write_config(tmp_path, max_connections=24, max_connections_per_client=4,
                          header_timeout="1s")
    with run_sidecar(["--redis.addr=redis://127.0.0.1:6379", config]) as proc:
        time.sleep(0.3)  # the start-up probe's connection is released
        attack = [connect(proc.web_port, f"127.0.0.{10 + i // 4}") for i in range(24)]
        time.sleep(0.3)
        refused = connect(proc.web_port, "127.0.0.1")
        assert closed_by_peer(refused, 0.5)  # closed at once, not after the header timeout
        time.sleep(1.2)
        status, took = timed_get(f"{proc.web_url}/metrics")
        assert status == 200 and took < 1.0
        text = metrics_text(proc)
        for sock in attack:
            sock.close()
        logs = proc.logs()
    assert sample(text, "tradesense_exporter_connections_rejected_total",
                  listener="web", reason="max_connections") == 1
    assert sample(text, "tradesense_exporter_connections_rejected_total",
                  listener="web", reason="header_timeout") == 24
    assert "Traceback" not in logs


def test_malformed_requests_are_counted_not_logged_each() -> None:
    with run_sidecar(["--redis.addr=redis://127.0.0.1:6379"]) as proc:
        for port in (proc.web_port, proc.otlp_port):
            for _ in range(30):
                with connect(port, "127.0.0.2") as sock:
                    sock.sendall(b"\x00\x01 nonsense\r\n\r\n")
                    assert closed_by_peer(sock, 2.0)
        status, took = timed_get(f"{proc.web_url}/metrics")
        text = metrics_text(proc)
        logs = proc.logs()
    assert status == 200 and took < 2.0
    for listener in ("web", "otlp"):
        assert sample(text, "tradesense_exporter_connections_rejected_total",
                      listener=listener, reason="invalid_request") == 30
    assert log_lines(logs, "Invalid HTTP request received.") == 1  # throttled: 1 per 10 s
    assert "Traceback" not in logs


def test_accept_failures_at_the_fd_limit_neither_flood_the_log_nor_spin(tmp_path: Path) -> None:
    config = write_config(tmp_path, max_connections=400, max_connections_per_client=400,
                          header_timeout="2s")
    with run_sidecar(["--redis.addr=redis://127.0.0.1:6379", config]) as proc:
        pid = proc.proc.pid
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (64, 64))
        attack = [connect(port, "127.0.0.2") for port in (proc.web_port, proc.otlp_port)
                  for _ in range(60)]
        time.sleep(0.5)
        cpu_before = cpu_seconds(pid)
        time.sleep(3.0)
        cpu_used = cpu_seconds(pid) - cpu_before
        for sock in attack:
            sock.close()
        deadline = time.monotonic() + 8
        status = 0
        while time.monotonic() < deadline and status != 200:
            with contextlib.suppress(OSError):
                status = timed_get(f"{proc.web_url}/healthz", timeout=2)[0]
            time.sleep(0.2)
        text = metrics_text(proc)
        logs = proc.logs()
    assert status == 200
    assert sample(text, "tradesense_exporter_accept_errors_total") >= 2
    assert cpu_used < 0.5, cpu_used  # backs off (1 s per listener), does not spin
    assert "Traceback" not in logs
    assert log_lines(logs, "accept failed") <= 2, logs[-2000:]
    print(f"fd limit: CPU {cpu_used:.2f} s in 3 s, "
          f"{sample(text, 'tradesense_exporter_accept_errors_total'):.0f} accept failures, "
          f"{log_lines(logs, 'accept failed')} log line(s)")


@pytest.mark.parametrize("protocol", ["httptools", "h11"])
def test_huge_headers_are_refused_before_memory_is_spent(protocol: str) -> None:
    with run_sidecar(["--redis.addr=redis://127.0.0.1:6379"],
                     env={"EXPORTER_HTTP_PROTOCOL": protocol}) as proc:
        metrics_text(proc)
        rss_before = rss_bytes(proc.proc.pid)
        peak, sent_most = 0, 0
        for port in (proc.web_port, proc.otlp_port):
            with connect(port, "127.0.0.2") as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nx-big: ")
                sent = 0
                with contextlib.suppress(OSError):
                    while sent < 256 * MB:  # what took RSS to 299 MB before
                        sock.sendall(b"a" * 65536)
                        sent += 65536
                        if sent % (2 * MB) == 0:
                            peak = max(peak, rss_bytes(proc.proc.pid))
                sent_most = max(sent_most, sent)
                reply = b""
                with contextlib.suppress(OSError):
                    reply = sock.recv(4096)
                assert reply == b"" or reply.startswith(b"HTTP/1.1 431"), reply
        peak = max(peak, rss_bytes(proc.proc.pid))
        text = metrics_text(proc)
        rss_after = rss_bytes(proc.proc.pid)
        logs = proc.logs()
    for listener in ("web", "otlp"):
        assert sample(text, "tradesense_exporter_connections_rejected_total",
                      listener=listener, reason="header_too_large") == 1
    assert sent_most < 16 * MB  # refused after 64 KiB, plus what the socket buffers held
    assert peak < rss_before + 10 * MB and rss_after < rss_before + 10 * MB
    assert "Traceback" not in logs
    print(f"{protocol}: {sent_most / MB:.1f} MB sent before the close, "
          f"RSS {rss_before / MB:.1f} -> peak {peak / MB:.1f} -> {rss_after / MB:.1f} MB")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("certs"))


def test_stalled_tls_handshakes_are_capped_and_time_out(tmp_path: Path, certs: TLSFiles) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {certs.server_cert}\n"
                   f"  key_file: {certs.server_key}\n")
    config = write_config(tmp_path, max_connections=96, max_connections_per_client=20,
                          tls_handshake_timeout="2s")
    client = ssl.create_default_context(cafile=str(certs.ca_cert))

    def tls_get() -> float:
        started = time.monotonic()
        with connect(proc.web_port, "127.0.0.1") as raw, \
                client.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            assert tls.recv(64).startswith(b"HTTP/1.1 200")
        return time.monotonic() - started

    with run_sidecar(["--redis.addr=redis://127.0.0.1:6379", config,
                      f"--web.config.file={web}"], scheme="https") as proc:
        usual = max(tls_get() for _ in range(3))
        rss_before = rss_bytes(proc.proc.pid)
        peaks, afters, durings, elapsed = [], [], [], 0.0
        for _wave in range(WAVES):  # the second wave reuses the first one's memory
            attack = []
            started = time.monotonic()
            for i in range(120):  # 4 sources x 30: 80 admitted, 40 refused at once
                sock = connect(proc.web_port, f"127.0.0.{2 + i % 4}")
                with contextlib.suppress(OSError):
                    sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # half a hello
                attack.append(sock)
            time.sleep(0.3)
            peaks.append(rss_bytes(proc.proc.pid))
            durings.append(tls_get())
            assert all(closed_by_peer(sock, 4.0) for sock in attack)
            elapsed = max(elapsed, time.monotonic() - started)
            for sock in attack:
                sock.close()
            afters.append(rss_bytes(proc.proc.pid))
        text = metrics_text_tls(proc, client)
        logs = proc.logs()
    assert sample(text, "tradesense_exporter_connections_rejected_total",
                  listener="web", reason="per_client") == WAVES * 40
    assert sample(text, "tradesense_exporter_connections_rejected_total",
                  listener="web", reason="tls_handshake_timeout") == WAVES * 80
    assert sample(text, "tradesense_exporter_connections_open", listener="web") <= 1
    assert elapsed < 5
    assert max(durings) < max(1.0, 5 * usual)
    assert max(peaks) < rss_before + 20 * MB  # 80 handshakes: about 85 KB each
    assert afters[-1] < afters[0] + 3 * MB  # no growth from one wave to the next
    assert "Traceback" not in logs
    print(f"TLS: usual {usual * 1000:.0f} ms, during max {max(durings) * 1000:.0f} ms, RSS "
          f"{rss_before / MB:.1f} -> peaks {[round(p / MB, 1) for p in peaks]} -> after waves "
          f"{[round(a / MB, 1) for a in afters]} MB")


def metrics_text_tls(proc: SidecarProcess, client: ssl.SSLContext) -> str:
    with urllib.request.urlopen(f"https://localhost:{proc.web_port}/metrics", timeout=10,
                                context=client) as response:
        return str(response.read().decode())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
                                 signal.SIGHUP, signal.SIGUSR1], ids=lambda s: s.name)
def test_signals_finish_the_request_in_flight(sig: signal.Signals) -> None:
    stops = sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
    result: dict[str, object] = {}
    with hung_redis() as port, run_sidecar([f"--redis.addr=redis://127.0.0.1:{port}",
                                            f"--scrape.timeout={HUNG_REDIS_TIMEOUT:g}s"]) as proc:
        def scrape() -> None:
            started = time.monotonic()
            with urllib.request.urlopen(f"{proc.web_url}/metrics", timeout=15) as response:
                result["status"] = response.status
                result["body"] = response.read().decode()
            result["took"] = time.monotonic() - started

        thread = threading.Thread(target=scrape, daemon=True)
        thread.start()
        time.sleep(0.5)  # the scrape is now held by the hung 'Redis'
        proc.proc.send_signal(sig)
        thread.join(10)
        if stops:
            code = proc.proc.wait(10)
        else:
            time.sleep(0.3)
            assert proc.proc.poll() is None
            assert timed_get(f"{proc.web_url}/healthz")[0] == 200
            code = proc.stop()
        logs = proc.logs()
    assert result.get("status") == 200, result
    assert "redis_up 0" in str(result["body"])
    assert HUNG_REDIS_TIMEOUT - 0.5 < float(result["took"]) < HUNG_REDIS_TIMEOUT + 2  # type: ignore[arg-type]
    assert code == 0
    assert f"signal={sig.name}" in logs
    if stops:
        assert re.search(rf"msg=\"shutting down\" signal={sig.name} in_flight=1", logs), logs
    elif sig == signal.SIGHUP:
        assert 'msg="signal ignored" signal=SIGHUP' in logs
    else:
        assert "msg=status signal=SIGUSR1 web_open=" in logs
    assert "Traceback" not in logs
