"""``python -m bench [--quick] [--only ingest] [--output docs/benchmarks.md]``; ``BENCH_*`` variables likewise."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bench.config import BenchSettings
from bench.run import BENCHMARKS, run_benchmarks, selected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", default=None, help="few instances, one round (smoke test)")
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(b.name for b in BENCHMARKS)}")
    parser.add_argument("--runs", type=int, help="timed rounds per case (default 5, quick 1)")
    parser.add_argument("--output", type=Path, help="the Markdown report (default docs/benchmarks.md)")
    parser.add_argument("--json", type=Path, dest="json_output", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = BenchSettings(**overrides)
        selected(settings.only)
    except ValueError as error:  # pydantic's ValidationError too
        print(f"python -m bench: {error}", file=sys.stderr)
        return 2
    return asyncio.run(run_benchmarks(settings))


if __name__ == "__main__":
    sys.exit(main())
