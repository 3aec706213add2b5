"""The sidecar as a real process on free loopback ports, with its log kept for inspection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port, wait_http, wait_port


@dataclass
class SidecarProcess:
    proc: subprocess.Popen[bytes]
    web_port: int
    otlp_port: int
    log_path: Path
    scheme: str = "http"

    @property
    def web_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.web_port}"

    @property
    def otlp_url(self) -> str:
        return f"http://127.0.0.1:{self.otlp_port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@contextmanager
def run_sidecar(args: Sequence[str] = (), env: dict[str, str] | None = None,
                scheme: str = "http", wait: bool = True) -> Iterator[SidecarProcess]:
    web, otlp = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "sidecar.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{web}",
                 f"--otlp.listen-address=127.0.0.1:{otlp}", *args],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})})
        sidecar = SidecarProcess(proc, web, otlp, log_path, scheme)
        try:
            if wait:
                wait_http(f"http://127.0.0.1:{otlp}/v1/metrics")
                wait_port("127.0.0.1", web)
            yield sidecar
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
