"""N keep-alive clients loop `GET /metrics` for a few seconds against a sidecar scraping a
redis-server of its own; Redis's `cmdstat_info` counts the INFO calls it really got.

    .venv/bin/python bench/redis_metrics_storm.py [--source DIR] [--clients 50] [--seconds 4]

`--source` is the directory the sidecar is run from (`python -m exporter` there), so a checkout
of an older commit (`git archive <commit> exporter | tar -x -C DIR`) can be measured beside the
working tree. A normal client's `/metrics` is timed five times during the storm.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.abuse.test_redis import LOOPERS, info_calls
from tests.support.abuse import timed_get
from tests.support.net import free_port, wait_port
from tests.support.redis_servers import start_redis


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp) / "redis")
        web, otlp = free_port(), free_port()
        sidecar = subprocess.Popen(
            [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{web}",
             f"--otlp.listen-address=127.0.0.1:{otlp}", f"--redis.addr={server.url}"],
            cwd=args.source, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port("127.0.0.1", web)
            before = info_calls(server)
            storm = subprocess.Popen([sys.executable, "-c", LOOPERS, str(web),
                                      str(args.clients), str(args.seconds)],
                                     stdout=subprocess.PIPE)
            time.sleep(min(1.0, args.seconds / 4))
            normal = [timed_get(f"http://127.0.0.1:{web}/metrics")[1] for _ in range(5)]
            out, _ = storm.communicate(timeout=args.seconds + 60)
            calls = info_calls(server) - before - 1  # less the INFO that read `before`
            ok = json.loads(out)["ok"]
        finally:
            sidecar.kill()
            sidecar.wait()
            server.stop()
    print(f"{args.source}: {args.clients} clients x {args.seconds:g} s: {ok} responses "
          f"({ok / args.seconds:.0f}/s), {calls} INFO on Redis ({calls / args.seconds:.1f}/s); "
          f"normal client {min(normal) * 1000:.0f}..{max(normal) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
