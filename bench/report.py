"""docs/benchmarks.md: the machine, then one section and table per benchmark, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

from bench.core import Measurement, Outcome, Result
from bench.reference import SOURCE


def render(outcomes: list[Outcome], machine: dict[str, str], *, started: datetime, finished: datetime,
           quick: bool, runs: int, warmups: int, load: tuple[str, str]) -> str:
    mode = "quick (a smoke test: few instances, not a measurement)" if quick else "full"
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python -m bench`) on {started:%Y-%m-%d %H:%M} UTC in "
        f"{(finished - started).total_seconds() / 60:.1f} min; mode: {mode}. Each case ran {runs} timed "
        f"round(s) after {warmups} warm-up round(s); every round runs each system once, interleaved. "
        "Figures are median [min-max] over the timed rounds.",
        "",
        f"Reference figures and targets come from `{SOURCE}` (Orthanc 1.10.1 and pynetdicom measured on a "
        "2-vCPU VM like this one). That VM drifts by about 20 % between passes: **compare the ratios "
        "measured in this run**, not absolute figures across runs or machines. Speed targets live here, "
        "never in timed unit tests.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {label} | {_cell(value)} |" for label, value in machine.items()],
        f"| load average (1, 5, 15 min) | {load[0]} at the start, {load[1]} at the end |",
        "",
    ]
    for outcome in outcomes:
        lines += _section(outcome)
    return "\n".join(lines).rstrip() + "\n"


def _section(outcome: Outcome) -> list[str]:
    benchmark = outcome.benchmark
    lines = [f"## {benchmark.title}", "", benchmark.method.strip(), ""]
    if outcome.error:
        lines += [f"**Failed after {outcome.seconds:.0f} s, no figures:** {_cell(outcome.error)}", ""]
    if outcome.results:
        lines += table(outcome.results)
    failures = [f"- {r.case}: {f}" for r in outcome.results for f in r.failures]
    if failures:
        lines += ["**Failures** (the runs counted above include them):", "", *failures, ""]
    return lines


def table(results: list[Result]) -> list[str]:
    columns: list[str] = []
    for result in results:
        columns += [c for c in result.values if c not in columns]
    extra = [(name, getattr(results[0], attr)) for name, attr in
             (("reference (performance.md)", "reference"), ("target", "target"), ("this run", "verdict"))
             if any(getattr(r, attr) for r in results)]
    header = ["case", *columns, *(name for name, _ in extra)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        cells = [result.case, *(_cell(result.values.get(c, "")) for c in columns)]
        cells += [_cell(getattr(result, attr)) for attr in ("reference", "target", "verdict")
                  if any(getattr(r, attr) for r in results)]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _cell(value: Measurement | str | int) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def as_json(outcomes: list[Outcome], machine: dict[str, str], *, quick: bool) -> str:
    return json.dumps({
        "quick": quick, "machine": machine,
        "benchmarks": [{"name": o.benchmark.name, "error": o.error, "seconds": o.seconds} for o in outcomes],
        "results": [r.as_json() for o in outcomes for r in o.results],
    }, indent=2, ensure_ascii=False)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
