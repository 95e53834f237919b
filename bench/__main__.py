"""``python -m bench numbers|consoles|network|distribution|cli|security|monitoring|settlement|analytics [--json]``: run a benchmark, print its figures."""

from __future__ import annotations

import argparse
import json
import platform
import os
import sys
from datetime import datetime, timezone


def machine() -> dict:
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("suite", choices=["numbers", "consoles", "network", "distribution", "cli", "security", "monitoring",
                                          "settlement", "analytics"])
    parser.add_argument("--json", action="store_true", help="print only one JSON object")
    parser.add_argument("--pool", type=int, default=10_000_000, help="numbers: size of the search pool")
    parser.add_argument("--orders", type=int, default=83_334, help="settlement: orders of the world (12 entries each)")
    parser.add_argument("--records", type=int, default=100_000_000,
                        help="analytics: usage records of the store (about; generated once, cached in bench/_work/)")
    parser.add_argument("--no-spark", action="store_true", help="analytics: leave Spark out")
    parser.add_argument("--monitor-seconds", type=float, default=30, help="analytics: seconds of feed for the lag")
    parser.add_argument("--runs", type=int, default=3, help="consoles: visits timed per page (the median is given)")
    parser.add_argument("--per-province", type=int, default=2, help="consoles: number blocks per province of the demo")
    args = parser.parse_args()
    if args.suite == "numbers":
        from bench import numbers

        result = numbers.run(pool_size=args.pool, log=None if args.json else print)
    elif args.suite == "distribution":
        from bench import distribution

        result = distribution.run(log=None if args.json else print)
    elif args.suite == "cli":
        from bench import cli

        result = cli.run(log=None if args.json else print)
    elif args.suite == "security":
        from bench import security

        result = security.run(log=None if args.json else print)
    elif args.suite == "monitoring":
        from bench import monitoring

        result = monitoring.run(log=None if args.json else print)
    elif args.suite == "settlement":
        from bench import settlement

        result = settlement.run(log=None if args.json else print, orders_count=args.orders)
    elif args.suite == "analytics":
        from bench import analytics

        result = analytics.run(log=None if args.json else print, records=args.records, spark=not args.no_spark,
                               monitor_seconds=args.monitor_seconds)
    elif args.suite == "network":
        from bench import network

        result = network.run(log=None if args.json else print)
    else:
        from bench import consoles

        result = consoles.run(runs=args.runs, per_province=args.per_province)
    result["machine"] = machine()
    if args.json:
        json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
