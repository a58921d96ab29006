"""Run the selected benchmarks, then write the report (even when one failed, saying so)."""

from __future__ import annotations

import asyncio
import shutil
import time
import traceback
from datetime import UTC, datetime

from bench import ingest, qido, worklist
from bench.config import BenchSettings
from bench.core import BenchContext, Benchmark, Outcome
from bench.machine import describe, load_average
from bench.report import as_json, render, write_atomically

#: Every benchmark, in report order; a new one is a module exposing ``BENCHMARK`` and a line here.
BENCHMARKS: tuple[Benchmark, ...] = (ingest.BENCHMARK, worklist.BENCHMARK, qido.BENCHMARK)


def selected(only: str) -> list[Benchmark]:
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {b.name: b for b in BENCHMARKS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"no such benchmark: {', '.join(unknown)} (known: {', '.join(known)})")
    return [known[n] for n in names] if names else list(BENCHMARKS)


async def run_benchmarks(settings: BenchSettings) -> int:
    """Run, report, and return the exit status: 1 when any benchmark failed or found a failure."""
    benchmarks = selected(settings.only)
    started, load_at_start = datetime.now(UTC), load_average()
    work_dir = settings.cache_dir.resolve() / "runs" / f"{started:%Y%m%dT%H%M%S}-{id(settings):x}"
    ctx = BenchContext(settings, work_dir)
    outcomes = []
    try:
        for benchmark in benchmarks:
            outcome = Outcome(benchmark)
            clock = time.monotonic()
            ctx.log(f"{benchmark.name}: running ({'quick' if ctx.quick else 'full'}, {ctx.runs} timed round(s), "
                    f"{ctx.warmups} warm-up)")
            try:
                outcome.results = await benchmark.run(ctx)
            except Exception as error:
                outcome.error = f"{type(error).__name__}: {error}"
                ctx.log(traceback.format_exc())
            outcome.seconds = time.monotonic() - clock
            outcomes.append(outcome)
    finally:
        if not settings.keep:
            await asyncio.to_thread(shutil.rmtree, work_dir, True)
    machine = {**await describe(settings.postgres_url), **ctx.facts}
    text = render(outcomes, machine, started=started, finished=datetime.now(UTC), quick=ctx.quick, runs=ctx.runs,
                  warmups=ctx.warmups, load=(load_at_start, load_average()))
    write_atomically(settings.output, text)
    if settings.json_output is not None:
        write_atomically(settings.json_output, as_json(outcomes, machine, quick=ctx.quick))
    failed = [o.benchmark.name for o in outcomes if o.failed]
    ctx.log(f"report written to {settings.output}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
