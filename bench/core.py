"""What every benchmark shares: its context, its results, and the shape of a benchmark module.

A benchmark is a module that exposes ``BENCHMARK = Benchmark(name, title, method, run)``, where
``async def run(ctx) -> list[Result]`` measures and returns one :class:`Result` per table row; add it
to :data:`bench.run.BENCHMARKS` and the report gets a section for it.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import BenchSettings


@dataclass(frozen=True)
class Measurement:
    """Samples of one quantity, reported as median [min-max] (n)."""

    samples: tuple[float, ...]
    unit: str = ""
    digits: int = 0

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError("a measurement needs at least one sample")

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def __str__(self) -> str:
        def f(value: float) -> str:
            return f"{value:,.{self.digits}f}"

        unit = self.unit if self.unit in ("", "x", "%") else f" {self.unit}"
        if len(self.samples) == 1:
            return f"{f(self.samples[0])}{unit}"
        return f"{f(self.median)}{unit} [{f(min(self.samples))}-{f(max(self.samples))}]"

    def as_json(self) -> dict[str, object]:
        return {"median": self.median, "min": min(self.samples), "max": max(self.samples),
                "n": len(self.samples), "unit": self.unit, "samples": list(self.samples)}


Value = Measurement | str | int


@dataclass(frozen=True)
class Result:
    """One row of a benchmark's table.

    ``values`` are the row's columns in order (the report's columns are their union, in order of
    first appearance); ``reference`` is the figure shared/reference/performance.md gives for the same
    case, ``target`` the target stated there, ``verdict`` how this run compares with it. A row with
    ``failures`` makes ``make bench`` exit non-zero.
    """

    benchmark: str
    case: str
    values: dict[str, Value]
    reference: str = ""
    target: str = ""
    verdict: str = ""
    failures: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        return {"benchmark": self.benchmark, "case": self.case, "reference": self.reference, "target": self.target,
                "verdict": self.verdict, "failures": list(self.failures),
                "values": {k: v.as_json() if isinstance(v, Measurement) else v for k, v in self.values.items()}}


@dataclass
class BenchContext:
    settings: BenchSettings
    #: Scratch space of this invocation (archives, logs); removed afterwards unless BENCH_KEEP=1.
    work_dir: Path
    #: Facts benchmarks learn on the way (server versions...), shown with the machine description.
    facts: dict[str, str] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.settings.quick

    def log(self, message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    @property
    def runs(self) -> int:
        return self.settings.timed_runs

    @property
    def warmups(self) -> int:
        return self.settings.warmup_runs

    @property
    def dataset_dir(self) -> Path:
        return self.settings.cache_dir / "datasets"


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    #: Markdown: what is measured, how, and under which settings (shown above the table).
    method: str
    run: Callable[[BenchContext], Awaitable[list[Result]]]


@dataclass
class Outcome:
    """What one benchmark produced in this invocation: results, or the error that stopped it."""

    benchmark: Benchmark
    results: list[Result] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.error) or any(r.failures for r in self.results)
