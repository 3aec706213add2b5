"""A throwaway CA and certificates made with openssl, for TLS tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _run(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _issue(directory: Path, name: str, ca: Path, ca_key: Path, cn: str, server: bool) -> None:
    key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    ext = directory / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   + ("extendedKeyUsage=serverAuth\n" if server else
                      "extendedKeyUsage=clientAuth\n"))
    _run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-subj", f"/CN={cn}",
         "-out", str(csr))
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert))
    key.chmod(0o644)


def make_certs(directory: Path) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-days", "2",
         "-subj", "/CN=tradesense-test-ca", "-out", str(ca))
    _issue(directory, "server", ca, ca_key, "localhost", server=True)
    _issue(directory, "client", ca, ca_key, "client", server=False)
    return Certs(ca, directory / "server.crt", directory / "server.key",
                 directory / "client.crt", directory / "client.key")
