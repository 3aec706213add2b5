"""The central scraper at fleet scale: 100 Redis servers through /scrape, scraped at once by a
real Prometheus every 15 s, beside the Go redis_exporter doing the same.

100 `redis-server` processes listen on distinct loopback addresses (127.0.1.1 ... 127.0.1.100,
one port), each with a few hundred keys, hits and misses. The sidecar runs as the central
scraper does (`--redis.addr=` and a config file whose `scrape_targets` allows the 100), the Go
exporter (Debian's prometheus-redis-exporter) with its defaults (its /scrape takes any target).
One Prometheus scrapes both, each through the multi-target relabelling, 100 targets per job,
every `--interval`. Both exporters see the same scrapes at the same moments, so machine noise
falls on both; the CPU ratio is the figure to trust.

Reported per exporter: scrapes, how many succeeded (`up`), their `scrape_duration_seconds`
(p50, p99, max, and how many under 0.1 s), the process's CPU seconds over the run and its RSS.

    .venv/bin/python bench/fleet_redis.py --targets 100 --minutes 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.net import free_port, wait_http, wait_port  # noqa: E402

REDIS_PORT = 6390


def address(i: int) -> str:
    return f"127.0.1.{i + 1}"


def start_redis(n: int, workdir: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        directory = workdir / f"redis-{i}"
        directory.mkdir()
        procs.append(subprocess.Popen(
            ["redis-server", "--bind", address(i), "--port", str(REDIS_PORT), "--save", "",
             "--appendonly", "no", "--dir", str(directory), "--maxmemory", "64mb"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for i in range(n):
        wait_port(address(i), REDIS_PORT)
        client = redis.Redis(host=address(i), port=REDIS_PORT)
        pipe = client.pipeline(transaction=False)
        for k in range(300):
            pipe.set(f"k{k}", "v" * 64, ex=3600 if k % 3 else None)
        for k in range(400):
            pipe.get(f"k{k}")  # 300 hits, 100 misses
        pipe.execute()
        client.close()
    return procs


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def job(name: str, exporter: str, targets: list[str], timeout: str) -> dict[str, Any]:
    return {"job_name": name, "metrics_path": "/scrape", "scrape_timeout": timeout,
            "static_configs": [{"targets": targets}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": exporter}]}


def query(client: httpx.Client, expr: str) -> list[dict[str, Any]]:
    body = client.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--interval", default="15s")
    args = parser.parse_args()
    go_binary = shutil.which("prometheus-redis-exporter")
    prom_binary = shutil.which("prometheus")
    if not go_binary or not prom_binary:
        raise SystemExit("needs prometheus-redis-exporter and prometheus (scripts/system-deps.sh)")
    with tempfile.TemporaryDirectory(prefix="fleet-redis-") as tmp:
        work = Path(tmp)
        servers = start_redis(args.targets, work)
        procs: list[subprocess.Popen[bytes]] = list(servers)
        try:
            run(args, work, go_binary, prom_binary, procs)
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                p.wait(20)


def run(args: argparse.Namespace, work: Path, go_binary: str, prom_binary: str,
        procs: list[subprocess.Popen[bytes]]) -> None:
    urls = [f"redis://{address(i)}:{REDIS_PORT}" for i in range(args.targets)]
    config = work / "scraper.yml"
    config.write_text(yaml.safe_dump({"scrape_targets": [{"address": u} for u in urls]}))
    ours_port, go_port, prom_port = free_port(), free_port(), free_port()
    ours = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--redis.addr=", f"--config.file={config}",
         f"--web.listen-address=127.0.0.1:{ours_port}", "--log.level=warn"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    go = subprocess.Popen([go_binary, f"--web.listen-address=127.0.0.1:{go_port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs += [ours, go]
    wait_http(f"http://127.0.0.1:{ours_port}/healthz")
    wait_http(f"http://127.0.0.1:{go_port}/metrics")
    timeout = "10s"
    prom_config = {"global": {"scrape_interval": args.interval},
                   "scrape_configs": [
                       job("ours", f"127.0.0.1:{ours_port}", urls, timeout),
                       job("go", f"127.0.0.1:{go_port}", urls, timeout)]}
    (work / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
    prom = subprocess.Popen(
        [prom_binary, f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
         "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(prom)
    client = httpx.Client(base_url=f"http://127.0.0.1:{prom_port}", timeout=30)
    wait_http(f"http://127.0.0.1:{prom_port}/-/ready", timeout=60)
    while not query(client, 'count(up{job="go"} == 1)'):  # first scrapes a few seconds in
        time.sleep(0.5)
    cpu0 = {"ours": cpu_seconds(ours.pid), "go": cpu_seconds(go.pid)}
    started = time.time()
    time.sleep(args.minutes * 60)
    seconds = time.time() - started
    cpu = {"ours": cpu_seconds(ours.pid) - cpu0["ours"], "go": cpu_seconds(go.pid) - cpu0["go"]}
    window = f"[{int(seconds)}s]"
    results: dict[str, Any] = {}
    for name in ("ours", "go"):
        durations = [float(v[1]) for s in client.get(
            "/api/v1/query", params={"query": f'scrape_duration_seconds{{job="{name}"}}{window}'}
        ).json()["data"]["result"] for v in s["values"]]
        ups = [float(v[1]) for s in client.get(
            "/api/v1/query", params={"query": f'up{{job="{name}"}}{window}'}
        ).json()["data"]["result"] for v in s["values"]]
        redis_up = query(client, f'count(redis_up{{job="{name}"}} == 1)')
        durations.sort()
        results[name] = {
            "scrapes": len(ups), "succeeded": int(sum(ups)),
            "redis_up_now": int(float(redis_up[0]["value"][1])) if redis_up else 0,
            "scrape_s_p50": round(durations[len(durations) // 2], 4),
            "scrape_s_p99": round(durations[int(0.99 * (len(durations) - 1))], 4),
            "scrape_s_max": round(durations[-1], 4),
            "scrapes_under_0.1s": sum(d < 0.1 for d in durations),
            "cpu_seconds": round(cpu[name], 2),
            "cpu_ms_per_scrape": round(1000 * cpu[name] / max(1, len(ups)), 3),
            "rss_mib": rss_mib((ours if name == "ours" else go).pid),
        }
    results["cpu_ratio_ours_over_go"] = round(cpu["ours"] / cpu["go"], 3) if cpu["go"] else None
    results["seconds"] = round(seconds, 1)
    results["targets"] = args.targets
    results["interval"] = args.interval
    results["load_average_after"] = os.getloadavg()
    results["command"] = " ".join([".venv/bin/python bench/fleet_redis.py", *sys.argv[1:]])
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
