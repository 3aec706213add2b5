"""The console script: the sidecar's CLI, or one line saying which extra to install."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from exporter.cli import main as cli_main
    except ImportError as missing:
        print(f"tradesense-exporter: error: the sidecar needs its dependencies ({missing.name} is "
              "missing): pip install 'tradesense-exporter[sidecar]'", file=sys.stderr)
        return 2
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
