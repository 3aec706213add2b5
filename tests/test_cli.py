import re
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import load_config
from exporter.config import ConfigError, parse_duration, parse_listen_address


def test_defaults_match_redis_exporter() -> None:
    config = load_config([], {})
    assert [t.address for t in config.targets] == ["redis://localhost:6379"]
    assert config.web_listen_address == ":9121"
    assert config.otlp_listen_address == "127.0.0.1:4318"
    assert config.scrape_timeout == 5.0


def test_flags_win_over_environment() -> None:
    env = {"REDIS_ADDR": "redis://a:1,redis://b:2", "EXPORTER_SCRAPE_TIMEOUT": "2s"}
    assert [t.address for t in load_config([], env).targets] == ["redis://a:1", "redis://b:2"]
    config = load_config(["--redis.addr", "c:3", "--scrape.timeout", "750ms"], env)
    assert [t.address for t in config.targets] == ["redis://c:3"]
    assert config.scrape_timeout == 0.75


def test_empty_address_disables_metrics_targets() -> None:
    assert load_config(["--redis.addr", ""], {}).targets == ()


def test_password_from_url_file_and_env(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    config = load_config(["--redis.addr", "redis://u:inurl@h:1",
                          "--redis.password-file", str(secret)], {})
    target = config.targets[0]
    assert (target.username, target.password, target.address) == ("u", "from-file", "redis://h:1")
    assert "from-file" not in repr(target) and "inurl" not in repr(target)
    assert load_config(["--redis.addr", "h:1"], {"REDIS_PASSWORD": "e"}).targets[0].password == "e"


def test_redis_exporter_json_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw.json"
    secret.write_text('{"redis://h1:6379": "one", "redis://h2:6379": "two"}')
    config = load_config(["--redis.addr", "redis://h1:6379", "--redis.addr", "h2",
                          "--redis.password-file", str(secret)], {})
    assert [t.password for t in config.targets] == ["one", "two"]


def test_config_file_targets_and_allow_list(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret")
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"""
scrape_timeout: 3s
targets:
  - redis://10.0.0.1:6379
scrape_targets:
  - address: redis://10.0.0.2:6380
    username: metrics
    password_file: {secret}
slow_queries:
  threshold: 250ms
otlp:
  staleness: 2m
""")
    config = load_config(["--config.file", str(cfg)], {})
    assert [t.address for t in config.targets] == ["redis://10.0.0.1:6379"]
    allowed = config.scrape_targets["redis://10.0.0.2:6380"]
    assert (allowed.username, allowed.password) == ("metrics", "s3cret")
    assert config.scrape_timeout == 3.0
    assert config.slow_queries.threshold_seconds == 0.25
    assert config.otlp.staleness_seconds == 120


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (["--scrape.timeout", "soon"], "--scrape.timeout"),
        (["--web.listen-address", "nowhere"], "--web.listen-address"),
        (["--redis.addr", "http://x:1"], "--redis.addr"),
        (["--log.format", "xml"], "--log.format"),
        (["--config.file", "/nonexistent.yml"], "--config.file"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_bad_input_names_the_culprit(argv: list[str], culprit: str) -> None:
    with pytest.raises(ConfigError, match=culprit.lstrip("-").split(".")[0]):
        load_config(argv, {})


def test_bad_flag_stops_startup_with_one_line_and_no_secret() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--redis.addr", "redis://u:hunter2@h:notaport"],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--redis.addr" in lines[0] and "Traceback" not in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout


def test_durations_and_listen_addresses() -> None:
    assert parse_duration("1m30s", "x") == 90
    assert parse_duration(2, "x") == 2
    assert parse_listen_address(":9121", "x") == ("0.0.0.0", 9121)
    assert parse_listen_address("[::1]:1", "x") == ("::1", 1)
    with pytest.raises(ConfigError):
        parse_duration("0s", "x")


def test_scrape_timeout_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("scrape_timeout: 3s\n")
    assert load_config([], {}).scrape_timeout == 5
    assert load_config(["--config.file", str(cfg)], {}).scrape_timeout == 3
    env = {"EXPORTER_SCRAPE_TIMEOUT": "2s"}
    assert load_config(["--config.file", str(cfg)], env).scrape_timeout == 2
    assert load_config(["--config.file", str(cfg), "--scrape.timeout=1s"], env).scrape_timeout == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["--redis.password=hunter2-xyz"],
        ["--redis.password", "hunter2-xyz"],
        ["--redis.addr", "redis://:ab/hunter2-xyz@h:x"],
        ["--redis.addr", "redis://u:hunter2-xyz@h:port"],
    ],
)
def test_errors_never_echo_a_password(argv: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(argv, {})
    assert "hunter2-xyz" not in str(err.value)


def test_limit_sections_of_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("server: {max_connections: 10, header_timeout: 2s}\n"
                   "redis: {max_reply_bytes: 1048576}\nauth: {max_pending_checks: 4}\n"
                   "otlp: {staleness: 1m, max_series_total: 500}\n")
    config = load_config([f"--config.file={cfg}"], {})
    assert config.server.max_connections == 10 and config.server.header_timeout_seconds == 2.0
    assert config.server.max_header_bytes == 64 * 1024  # the default, where not set
    assert config.redis.max_reply_bytes == 1 << 20 and config.auth.max_pending_checks == 4
    assert config.otlp.staleness_seconds == 60 and config.otlp.max_series_total == 500


@pytest.mark.parametrize(("text", "culprit"), [
    ("server: {max_conections: 10}", "server.max_conections"),
    ("server: {max_connections: -1}", "server.max_connections"),
    ("server: {header_timeout: soon}", "server.header_timeout"),
    ("redis: [1]", "redis must be a mapping"),
])
def test_bad_limits_name_the_key(tmp_path: Path, text: str, culprit: str) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(text + "\n")
    with pytest.raises(ConfigError, match=re.escape(culprit)):
        load_config([f"--config.file={cfg}"], {})


def test_otlp_config_file_from_flag_or_environment(tmp_path: Path) -> None:
    path = tmp_path / "otlp.yml"
    path.write_text("bearer_token_file: token\n")
    assert load_config([], {}).otlp_config_file is None
    assert load_config([f"--otlp.config.file={path}"], {}).otlp_config_file == str(path)
    assert load_config([], {"EXPORTER_OTLP_CONFIG_FILE": str(path)}).otlp_config_file == str(path)
    with pytest.raises(ConfigError, match="--otlp.config.file: .* does not exist"):
        load_config(["--otlp.config.file", str(tmp_path / "nope.yml")], {})


@pytest.mark.parametrize(("text", "culprit"), [
    ("slow_queries: {threshold: 500}", "slow_queries.threshold: 500 has no unit"),
    ("otlp: {staleness: 300}", "otlp.staleness: 300 has no unit"),
    ("server: {header_timeout: 2.5}", "server.header_timeout: 2.5 has no unit"),
    ("scrape_timeout: 3", "scrape_timeout: 3 has no unit"),
    ("scrape_timeout: soon", "scrape_timeout: invalid duration"),
    ("otlp: {stalenes: 1m}", "unknown key otlp.stalenes"),
    ("slow_queries: {treshold: 1s}", "unknown key slow_queries.treshold"),
    ("slow_query: {threshold: 1s}", "unknown key slow_query"),
    ("targets: [{address: 'h:1', pasword: x}]", "unknown key targets[0].pasword"),
    ("targets: [{address: 'rediss://h:1', tls: {sni: x}}]", "unknown key targets[0].tls.sni"),
    ("targets: [{address: 'ftp://h:1'}]", "targets[0]: invalid Redis address"),
])
def test_config_file_errors_name_the_file_and_the_key(tmp_path: Path, text: str,
                                                      culprit: str) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load_config([f"--config.file={cfg}"], {})
    message = str(err.value)
    assert message.startswith(f"--config.file {cfg}: ") and culprit in message, message
    assert "--scrape.timeout" not in message


def test_flags_keep_taking_bare_seconds_but_say_where_a_bad_value_came_from() -> None:
    assert load_config(["--scrape.timeout=2"], {}).scrape_timeout == 2
    assert load_config([], {"EXPORTER_SCRAPE_TIMEOUT": "1.5"}).scrape_timeout == 1.5
    with pytest.raises(ConfigError, match="^EXPORTER_SCRAPE_TIMEOUT: invalid"):
        load_config([], {"EXPORTER_SCRAPE_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="^--scrape.timeout: invalid"):
        load_config(["--scrape.timeout=soon"], {})


def test_reading_the_config_loads_no_protobuf_and_no_server() -> None:
    """`exporter.config` is what a bad flag is reported from: it must stay cheap to import."""
    probe = ("import sys, exporter.config; print(sorted({m.split('.')[0] for m in sys.modules"
             " if m.startswith(('google.protobuf', 'opentelemetry', 'starlette', 'uvicorn'))}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]", out
