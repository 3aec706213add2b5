"""python -m examples.tradesense_app [--host 127.0.0.1] [--port 8000] [--workers 1]"""

from __future__ import annotations

import argparse
import logging

import uvicorn

from examples.tradesense_app.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.tradesense_app",
                                     description="The instrumented TradeSense example API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes; each instruments itself after the fork")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.workers > 1:
        uvicorn.run("examples.tradesense_app.app:create_app", factory=True, host=args.host,
                    port=args.port, workers=args.workers, log_level=args.log_level)
    else:
        uvicorn.run(create_app(), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
