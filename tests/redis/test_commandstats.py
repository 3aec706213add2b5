"""Commandstats, errorstats and latencystats -> per-command counters, error counters and latency
summaries with quantile labels 0..1."""

from __future__ import annotations

from exporter.exposition import Family
from exporter.redis.commandstats import command_families, error_families, quantile_pair
from exporter.redis.parse import parse_info
from tests.redis.scraping import by_name, reference_info, scrape
from tests.support.redis_servers import RedisServer


def per_cmd(fam: Family) -> dict[str, float]:
    return {dict(s.labels)["cmd"]: s.value for s in fam.samples}


def summary(fam: Family, cmd: str) -> dict[str, float]:
    out = {}
    for s in fam.samples:
        labels = dict(s.labels)
        if labels["cmd"] == cmd:
            out[s.suffix + labels.get("quantile", "")] = s.value
    return out


def test_reference_commandstats() -> None:
    fams = by_name(command_families(reference_info()))
    assert all(fams[name].type == "counter" for name in (
        "redis_commands_total", "redis_commands_duration_seconds_total",
        "redis_commands_rejected_calls_total", "redis_commands_failed_calls_total"))
    assert per_cmd(fams["redis_commands_total"])["config|get"] == 120
    assert per_cmd(fams["redis_commands_duration_seconds_total"])["config|get"] == 0.021191
    assert per_cmd(fams["redis_commands_rejected_calls_total"])["debug"] == 2
    assert per_cmd(fams["redis_commands_failed_calls_total"])["pfcount"] == 50
    assert len(fams["redis_commands_total"].samples) == 38


def test_latency_summary_quantiles_are_0_to_1_in_microseconds() -> None:
    fam = by_name(command_families(reference_info()))["redis_latency_percentiles_usec"]
    assert fam.type == "summary"
    assert summary(fam, "eval") == {"0.5": 958.463, "0.99": 41680.895, "0.999": 41680.895,
                                    "_sum": 42654, "_count": 3}
    assert {dict(s.labels).get("quantile") for s in fam.samples} == {"0.5", "0.99", "0.999", None}


def test_quantile_labels() -> None:
    assert quantile_pair("p50") == ("quantile", "0.5")
    assert quantile_pair("p99.9") == ("quantile", "0.999")
    assert quantile_pair("p99.99") == ("quantile", "0.9999")
    assert quantile_pair("p0") == ("quantile", "0")
    assert quantile_pair("p100") == ("quantile", "1")
    assert quantile_pair("p101") is None
    assert quantile_pair("x50") is None


def test_unusual_percentiles_and_malformed_lines() -> None:
    info = parse_info(
        "# Commandstats\r\ncmdstat_get:calls=4,usec=8,usec_per_call=2.00,rejected_calls=0,"
        "failed_calls=0\r\ncmdstat_set:calls=2,usec=6,usec_per_call=3.00,rejected_calls=0,"
        "failed_calls=0\r\n# Latencystats\r\nlatency_percentiles_usec_get:p25=1.0,p99.99=3.5\r\n"
        "latency_percentiles_usec_set:p50=oops\r\nlatency_percentiles_usec_del:p50=1.0\r\n")
    fam = by_name(command_families(info))["redis_latency_percentiles_usec"]
    assert summary(fam, "get") == {"0.25": 1.0, "0.9999": 3.5, "_sum": 8, "_count": 4}
    assert summary(fam, "set") == {}  # malformed: no partial summary
    assert summary(fam, "del") == {}  # no commandstats line to take count and sum from


def test_before_redis_6_2_there_are_no_rejected_or_failed_calls() -> None:
    info = parse_info("# Commandstats\r\ncmdstat_get:calls=21,usec=175,usec_per_call=8.33\r\n")
    fams = by_name(command_families(info))
    assert per_cmd(fams["redis_commands_total"]) == {"get": 21}
    assert per_cmd(fams["redis_commands_duration_seconds_total"]) == {"get": 0.000175}
    assert "redis_commands_rejected_calls_total" not in fams
    assert "redis_latency_percentiles_usec" not in fams


def test_field_order_does_not_matter() -> None:
    info = parse_info("# Commandstats\r\ncmdstat_get:usec=10,calls=5,failed_calls=1,"
                      "rejected_calls=2\r\n")
    fams = by_name(command_families(info))
    assert per_cmd(fams["redis_commands_total"]) == {"get": 5}
    assert per_cmd(fams["redis_commands_rejected_calls_total"]) == {"get": 2}
    assert per_cmd(fams["redis_commands_failed_calls_total"]) == {"get": 1}


def test_errorstats() -> None:
    fam = error_families(reference_info())[0]
    assert (fam.name, fam.type) == ("redis_errors_total", "counter")
    assert {dict(s.labels)["err"]: s.value for s in fam.samples} == {
        "ERR": 5, "NOSCRIPT": 1, "WRONGTYPE": 51}
    assert error_families(parse_info("# Errorstats\r\n")) == []


def test_live_master_counts_its_workload(redis_master: RedisServer) -> None:
    fams = by_name(scrape(redis_master))
    calls = per_cmd(fams["redis_commands_total"])
    assert calls["get"] == 300 and calls["eval"] == 1 and calls["bgsave"] == 1
    assert per_cmd(fams["redis_commands_failed_calls_total"])["incr"] == 1
    errors = {dict(s.labels)["err"]: s.value for s in fams["redis_errors_total"].samples}
    assert errors["WRONGTYPE"] == 1 and errors["ERR"] >= 2
    eval_latency = summary(fams["redis_latency_percentiles_usec"], "eval")
    assert eval_latency["_count"] == 1 and eval_latency["0.99"] >= 25_000
