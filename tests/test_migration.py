"""docs/migrating.md's table of redis_exporter's flags, row by row, against the CLI: both flag
spellings and the variable, so that the document and the behaviour cannot drift apart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from exporter.cli import load_config
from exporter.config import Config, ConfigError
from exporter.migration import GO_FLAGS
from tests.support.net import free_port, wait_port

DOC = Path(__file__).resolve().parents[1] / "docs" / "migrating.md"
FILE = str(Path(__file__).resolve())  # any file that exists, for the *-file flags


@dataclass(frozen=True)
class Row:
    flag: str
    env: str | None
    default: str
    fate: str

    @property
    def boolean(self) -> bool:
        return self.default in ("true", "false")


def _rows() -> list[Row]:
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        flag, env, default, fate = cells
        rows.append(Row(flag.strip("`"), None if env == "none" else env.strip("`"),
                        "" if default == "empty" else default.strip("`"), fate))
    return rows


ROWS = _rows()
# Rows whose value goes through: the value given to redis_exporter, and the same setting here.
SAMPLES: dict[str, tuple[str, list[str]]] = {
    "redis.addr": ("redis://r1:6380", ["--redis.addr=redis://r1:6380"]),
    "redis.user": ("metrics", ["--redis.user=metrics"]),
    "redis.password-file": (FILE, [f"--redis.password-file={FILE}"]),
    "web.listen-address": (":9999", ["--web.listen-address=:9999"]),
    "tls-client-key-file": (FILE, [f"--redis.tls-key-file={FILE}"]),
    "tls-client-cert-file": (FILE, [f"--redis.tls-cert-file={FILE}"]),
    "tls-ca-cert-file": (FILE, [f"--redis.tls-ca-file={FILE}"]),
    "tls-server-name": ("redis.internal", ["--redis.tls-server-name=redis.internal"]),
    "skip-tls-verification": ("true", ["--redis.tls-insecure-skip-verify"]),
    "debug": ("true", ["--log.level=debug"]),
    "log-level": ("WARNING", ["--log.level=warn"]),
    "log-format": ("txt", ["--log.format=logfmt"]),
}


def _load(argv: Sequence[str], env: dict[str, str] | None = None) -> Config:
    return load_config(list(argv), env or {})


def _spellings(row: Row, value: str) -> list[list[str]]:
    forms = [[f"-{row.flag}={value}"], [f"--{row.flag}={value}"]]
    if row.boolean and value == "true":
        forms += [[f"-{row.flag}"], [f"--{row.flag}"]]
    if not row.boolean:
        forms += [[f"-{row.flag}", value], [f"--{row.flag}", value]]
    return forms


def _hint(fate: str) -> str:
    """What the refusal must point to: the first `--flag` after the colon, or the doc."""
    rest = fate.partition(":")[2]
    flag = re.search(r"`(--[\w.-]+)`", rest)
    if flag:
        return flag.group(1)
    return "docs/metrics.md" if "docs/metrics.md" in rest else rest.split(";")[0].split()[-1]


def _refused(argv: Sequence[str], env: dict[str, str], names: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(argv, env)
    message = str(err.value)
    assert "\n" not in message and names in message and hint.strip("`") in message, message


def test_the_table_lists_every_flag_of_redis_exporter_once() -> None:
    assert [r.flag for r in ROWS] == [f.name for f in GO_FLAGS]
    assert [r.env for r in ROWS] == [f.env for f in GO_FLAGS]
    assert len(ROWS) == 59


@pytest.mark.parametrize("row", ROWS, ids=[r.flag for r in ROWS])
def test_each_row_is_what_the_cli_does(row: Row) -> None:
    baseline = _load([])
    kind = row.fate.split(":")[0].split(";")[0].split(" (")[0].strip()
    if row.flag == "version":
        for argv in (["-version"], ["--version"]):
            with pytest.raises(SystemExit) as done:
                _load(argv)
            assert done.value.code == 0
    elif kind in ("same", "same,") or kind.startswith("as `"):
        value, ours = SAMPLES[row.flag]
        expected = _load(ours)
        assert expected != baseline or row.flag == "log-format"  # txt is the default here too
        for argv in _spellings(row, value):
            assert _load(argv) == expected, argv
        assert row.env is not None
        assert _load([], {row.env: value}) == expected
    elif kind == "accepted, either value":
        for value in ("true", "false"):
            for argv in _spellings(row, value):
                assert _load(argv) == baseline
            assert row.env is not None
            assert _load([], {row.env: value}) == baseline
    elif kind.startswith("refused unless"):
        accepted = ["" if v == "empty" else v.strip("`")
                    for v in kind.removeprefix("refused unless ").split(" or ")]
        assert row.default in accepted
        for value in accepted:
            assert _load([f"-{row.flag}={value}"]) == baseline
            assert row.env is not None
            assert _load([], {row.env: value}) == baseline
        other = ("false" if "true" in accepted else "true") if row.boolean else "x-other"
        for argv in _spellings(row, other):
            _refused(argv, {}, f"--{row.flag}", _hint(row.fate))
        assert row.env is not None
        _refused([], {row.env: other}, row.env, _hint(row.fate))
    elif kind == "refused":
        for argv in _spellings(row, "3s"):
            _refused(argv, {}, f"--{row.flag}", _hint(row.fate))
        assert row.env is not None
        _refused([], {row.env: "3s"}, row.env, _hint(row.fate))
    elif kind == "refused on a command line":
        for argv in _spellings(row, "hunter2-xyz"):
            with pytest.raises(ConfigError) as err:
                _load(argv)
            assert _hint(row.fate) in str(err.value) and "hunter2-xyz" not in str(err.value)
        assert row.env is not None
        assert _load(["--redis.addr=h:1"], {row.env: "p"}).targets[0].password == "p"
    else:
        pytest.fail(f"unknown fate {row.fate!r}")


def test_web_listen_address_variable_is_honoured_and_must_agree() -> None:
    env = {"REDIS_EXPORTER_WEB_LISTEN_ADDRESS": ":9200"}
    assert _load([], env).web_listen_address == ":9200"
    assert _load(["--web.listen-address=:9300"], env).web_listen_address == ":9300"
    with pytest.raises(ConfigError, match="EXPORTER_WEB_LISTEN_ADDRESS"):
        _load([], {**env, "EXPORTER_WEB_LISTEN_ADDRESS": ":9400"})


def test_a_go_style_flag_line_of_a_typical_deployment() -> None:
    config = _load(["-redis.addr", "redis://redis:6379", "-web.listen-address=:9121",
                    "-log-format=json", "-include-system-metrics", "-web.telemetry-path",
                    "/metrics"])
    assert [t.address for t in config.targets] == ["redis://redis:6379"]
    assert config.log_format == "json"


def test_our_own_flags_take_one_dash_too(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("scrape_timeout: 3s\n")
    config = _load([f"-config.file={cfg}", "-scrape.timeout", "2s", "-log.level=debug"])
    assert (config.scrape_timeout, config.log_level) == (2, "debug")


def test_debug_wins_over_log_level_as_in_redis_exporter() -> None:
    assert _load(["-debug", "-log-level=error"]).log_level == "debug"
    assert _load(["-log-level=error"]).log_level == "error"


@pytest.mark.e2e
def test_the_sidecar_listens_where_redis_exporters_variable_says(tmp_path: Path) -> None:
    web, otlp = free_port(), free_port()
    env = {**os.environ, "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": f"127.0.0.1:{web}"}
    with (tmp_path / "log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "exporter", "--redis.addr=",
                                 f"--otlp.listen-address=127.0.0.1:{otlp}"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_port("127.0.0.1", web)
        assert httpx.get(f"http://127.0.0.1:{web}/healthz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_an_unknown_redis_exporter_variable_is_refused() -> None:
    with pytest.raises(ConfigError, match="^REDIS_EXPORTER_WEB_LISTEN_ADRESS is not a variable"):
        _load([], {"REDIS_EXPORTER_WEB_LISTEN_ADRESS": ":9200"})
