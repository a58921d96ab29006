"""ING-CT-1/4 and ING-SM-1/4: C-STORE ingest with dcmtk storescu, Telerad against Orthanc.

For every run: a fresh, empty archive; the files pre-read into the page cache; then P ``storescu``
processes started at once, the files dealt round-robin between them, one association each; wall
time from the first start to the last exit. Afterwards the archive is asked how many instances it
holds (Telerad: its index in PostgreSQL; Orthanc: ``GET /statistics``), and anything short of every
instance sent is a failure. Rounds interleave the two archives (alternating which goes first), and
the ratio is taken per round, because this VM drifts by about 20 % (performance.md §1).
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

from bench import archives
from bench.archives import Archive, ArchiveUnavailable, cpu_used, own_processes
from bench.core import BenchContext, Benchmark, Measurement, Result, Value
from bench.datasets import (
    CT_500,
    CT_QUICK,
    SMALL_200,
    SMALL_2000,
    SMALL_QUICK,
    DatasetFiles,
    DatasetSpec,
    ensure_dataset,
)
from bench.reference import INGEST, IngestReference

CALLING_AE_TITLE = "STORESCU"  # registered for the demo organisation by bench.telerad_ingest
Starter = Callable[[BenchContext, Path], AbstractAsyncContextManager[Archive]]
SYSTEMS: dict[str, Starter] = {"Telerad": archives.telerad, "Orthanc": archives.orthanc}


@dataclass(frozen=True)
class Case:
    id: str
    spec: DatasetSpec
    quick_spec: DatasetSpec
    associations: int
    #: TCP_NODELAY=1 for storescu; off for ING-NAGLE, a sender with Nagle's algorithm on, as DCMTK's default.
    nodelay: bool = True
    #: Each instance on an association of its own (ING-ASSOC), as many CR, DX and US modalities send.
    one_per_association: bool = False
    #: Settings of dicom-ingest other than its defaults, for this case (environment variables).
    telerad_env: tuple[tuple[str, str], ...] = ()


CASES = (Case("ING-CT-1", CT_500, CT_QUICK, 1), Case("ING-CT-4", CT_500, CT_QUICK, 4),
         Case("ING-SM-1", SMALL_2000, SMALL_QUICK, 1), Case("ING-SM-4", SMALL_2000, SMALL_QUICK, 4),
         Case("ING-SM-1-IDX", SMALL_2000, SMALL_QUICK, 1,
              telerad_env=(("DICOM_INGEST_ACKNOWLEDGE_WHEN", "indexed"),)),
         Case("ING-NAGLE", SMALL_200, SMALL_QUICK, 1, nodelay=False),
         Case("ING-ASSOC", SMALL_200, SMALL_QUICK, 4, one_per_association=True))


@dataclass(frozen=True)
class Run:
    system: str
    sent: int
    stored: int
    seconds: float
    megabytes: float
    cpu_seconds: float
    #: Of ``cpu_seconds``, what the archive's own processes used (the rest: its PostgreSQL backends).
    own_cpu_seconds: float
    load_average: float
    failures: tuple[str, ...]

    @property
    def instances_per_second(self) -> float:
        return self.sent / self.seconds

    @property
    def megabytes_per_second(self) -> float:
        return self.megabytes / self.seconds

    @property
    def cpu_ms_per_instance(self) -> float:
        return 1000 * self.cpu_seconds / self.sent

    @property
    def database_cpu_ms_per_instance(self) -> float:
        return 1000 * (self.cpu_seconds - self.own_cpu_seconds) / self.sent


async def run(ctx: BenchContext) -> list[Result]:
    if shutil.which("storescu") is None:
        raise ArchiveUnavailable("dcmtk's storescu is not installed (make tools)")
    ctx.facts["Orthanc"] = await archives.orthanc_version(ctx.settings.orthanc)
    results = []
    for case in CASES:
        dataset = await asyncio.to_thread(ensure_dataset, case.quick_spec if ctx.quick else case.spec,
                                          ctx.dataset_dir)
        timed: dict[str, list[Run]] = {name: [] for name in SYSTEMS}
        failures: list[str] = []
        for round_number in range(ctx.warmups + ctx.runs):
            order = list(SYSTEMS) if round_number % 2 == 0 else list(reversed(SYSTEMS))
            for system in order:
                result = await one_run(ctx, system, dataset, case.associations,
                                       ctx.work_dir / f"{case.id}-r{round_number}-{system.lower()}",
                                       nodelay=case.nodelay, one_per_association=case.one_per_association,
                                       telerad_env=dict(case.telerad_env))
                failures += [f"{system}, round {round_number}: {f}" for f in result.failures]
                if round_number >= ctx.warmups:
                    timed[system].append(result)
        results.append(summarise(case, dataset, timed, failures, quick=ctx.quick))
    return results


async def one_run(ctx: BenchContext, system: str, dataset: DatasetFiles, associations: int, run_dir: Path, *,
                  nodelay: bool = True, one_per_association: bool = False,
                  telerad_env: dict[str, str] | None = None) -> Run:
    starter = SYSTEMS[system]
    if system == "Telerad" and telerad_env:
        starter = functools.partial(archives.telerad, env=telerad_env)
    try:
        async with starter(ctx, run_dir) as archive:
            await asyncio.to_thread(_read_into_page_cache, dataset.files)
            before = await archive.cpu_seconds()
            seconds, failures = await push(dataset.parts(associations), archive, nodelay=nodelay,
                                           one_per_association=one_per_association)
            after = await archive.cpu_seconds()
            used, own = cpu_used(before, after), cpu_used(before, after, only=own_processes(archive, after))
            load = os.getloadavg()[0]
            stored = await archive.instance_count()
    finally:
        if not ctx.settings.keep:
            await asyncio.to_thread(shutil.rmtree, run_dir, True)
    sent = len(dataset.files)
    if stored != sent:
        failures.append(f"{system} holds {stored} of the {sent} instances sent")
    result = Run(system, sent, stored, seconds, dataset.megabytes, used, own, load, tuple(failures))
    ctx.log(f"{run_dir.name}: {result.instances_per_second:.0f} inst/s, {result.megabytes_per_second:.1f} MB/s, "
            f"{result.cpu_ms_per_instance:.2f} ms CPU/inst, {stored}/{sent} stored"
            + (f"; {'; '.join(failures)}" if failures else ""))
    return result


async def push(parts: list[list[Path]], archive: Archive, *, nodelay: bool = True,
               one_per_association: bool = False) -> tuple[float, list[str]]:
    """Send each part on its own association, all at once (or each of its files on an association of its own,
    one after the other); the wall time and what went wrong."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    if not nodelay:
        env.pop("TCP_NODELAY")

    async def send(number: int, files: list[Path]) -> list[str]:
        failures = []
        for batch in ([[path] for path in files] if one_per_association else [files]):
            process = await asyncio.create_subprocess_exec(
                "storescu", "-aet", CALLING_AE_TITLE, "-aec", archive.ae_title, "127.0.0.1",
                str(archive.dicom_port), *map(str, batch), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env)
            output, _ = await process.communicate()
            errors = [line for line in output.decode(errors="replace").splitlines() if line.startswith(("E:", "F:"))]
            if process.returncode != 0 or errors:
                failures.append(f"storescu #{number + 1} exited {process.returncode}: {' | '.join(errors[:3])}")
        return failures

    start = time.perf_counter()
    sent = await asyncio.gather(*(send(number, part) for number, part in enumerate(parts)))
    seconds = time.perf_counter() - start
    return seconds, [failure for failures in sent for failure in failures]


def _read_into_page_cache(files: tuple[Path, ...]) -> None:
    for path in files:
        path.read_bytes()


def summarise(case: Case, dataset: DatasetFiles, timed: dict[str, list[Run]], failures: list[str], *,
              quick: bool = False) -> Result:
    telerad, orthanc = timed["Telerad"], timed["Orthanc"]
    ratios = tuple(t.instances_per_second / o.instances_per_second for t, o in zip(telerad, orthanc, strict=True))
    kib = dataset.total_bytes / len(dataset.files) / 1024
    values: dict[str, Value] = {
        "dataset": f"{dataset.spec.name} ({len(dataset.files):,} x {kib:,.1f} KiB = {dataset.megabytes:,.1f} MB)",
        "assoc.": case.associations,
    }
    for name, runs in timed.items():
        values[f"{name} inst/s"] = Measurement(tuple(r.instances_per_second for r in runs), digits=0)
    for name, runs in timed.items():
        values[f"{name} MB/s"] = Measurement(tuple(r.megabytes_per_second for r in runs), digits=1)
    values["Telerad / Orthanc"] = Measurement(ratios, "x", digits=2)
    values["CPU ms/inst Telerad (ingest + its PG backends)"] = Measurement(
        tuple(r.cpu_ms_per_instance for r in telerad), digits=2)
    values["of which PG backends"] = Measurement(tuple(r.database_cpu_ms_per_instance for r in telerad), digits=2)
    values["CPU ms/inst Orthanc"] = Measurement(tuple(r.cpu_ms_per_instance for r in orthanc), digits=2)
    for name, runs in timed.items():
        values[f"stored {name}"] = f"{min(r.stored for r in runs)}/{runs[0].sent}"
    values["load avg (1 min) after runs"] = Measurement(tuple(r.load_average for r in telerad + orthanc), digits=1)
    reference = INGEST[case.id]
    return Result("ingest", case.id, values, reference=reference.figures, target=reference.target,
                  verdict="quick run: no verdict" if quick else verdict(reference, values), failures=tuple(failures))


def verdict(reference: IngestReference, values: dict[str, Value]) -> str:
    ratio = values["Telerad / Orthanc"]
    cpu = values["CPU ms/inst Telerad (ingest + its PG backends)"]
    assert isinstance(ratio, Measurement) and isinstance(cpu, Measurement)
    if reference.must_ratio == 0 and reference.must_instances_per_second is None:
        return f"{ratio.median:.2f}x Orthanc; CPU {cpu.median:.2f} ms/inst (no target in performance.md)"
    if reference.must_instances_per_second is not None:
        rate = values["Telerad inst/s"]
        assert isinstance(rate, Measurement)
        if rate.median >= reference.must_instances_per_second:
            return f"{rate.median:.0f} inst/s: meets the must target ({reference.must_instances_per_second:g})"
        return f"**{rate.median:.0f} inst/s: below the must target ({reference.must_instances_per_second:g})**"
    if ratio.median >= reference.ambitious_ratio:
        text = f"{ratio.median:.2f}x: meets the ambitious target"
    elif ratio.median >= reference.must_ratio:
        text = f"{ratio.median:.2f}x: meets the must target, not the ambitious one"
    else:
        text = f"**{ratio.median:.2f}x: below the must target ({reference.must_ratio:.1f}x)**"
    if reference.cpu_must_ms is not None and reference.cpu_ambitious_ms is not None:
        if cpu.median <= reference.cpu_ambitious_ms:
            text += f"; CPU {cpu.median:.2f} ms/inst meets the ambitious target"
        elif cpu.median <= reference.cpu_must_ms:
            text += f"; CPU {cpu.median:.2f} ms/inst meets the must target"
        else:
            text += f"; **CPU {cpu.median:.2f} ms/inst over the must target**"
    return text


BENCHMARK = Benchmark(
    name="ingest",
    title="Ingest: C-STORE with dcmtk storescu, Telerad against Orthanc",
    method=(__doc__ or "").split("\n", 1)[1].strip() + """

* **Telerad**: dicom-ingest in distributed mode as `telerad serve dicom-ingest` runs it (its own process,
  a new PostgreSQL database, a new RabbitMQ virtual host, default settings: every file fsync'd, a C-STORE
  answered once its file is durably spooled and indexed right behind it, the association's release waiting for
  the index). Its CPU is the ingest process plus the PostgreSQL backends connected to its database (RabbitMQ
  carries one event per study and is not counted). **ING-SM-1-IDX** is ING-SM-1 with
  `DICOM_INGEST_ACKNOWLEDGE_WHEN=indexed`: each C-STORE answered after its index row is committed.
* **Orthanc**: `Orthanc config.json` with a new storage and SQLite index, free ports, default settings
  otherwise (`SyncStorageArea` on: every file fsync'd). Its CPU is the Orthanc process.
* **Nagle**: `TCP_NODELAY=1` in the environment of every storescu and of Orthanc (DCMTK leaves Nagle on
  otherwise; performance.md §2.4); dicom-ingest sets `TCP_NODELAY` on its accepted sockets itself, and re-arms
  `TCP_QUICKACK` before each read. **ING-NAGLE** is ING-SM-1 on 200 instances with a stock storescu (no
  `TCP_NODELAY`: Nagle on, as most modalities); its target is absolute (performance.md §6). **ING-ASSOC** sends
  the same 200 instances each on an association of its own (one storescu per file, four at a time), as many CR,
  DX and US modalities do; performance.md sets no target for it, so it is reported as a ratio only.
* Client and servers share this machine's cores; storescu's own CPU is in neither column.""",
    run=run,
)
