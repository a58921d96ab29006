"""QIDO-N: QIDO-RS search latency with N studies indexed, Telerad (through its gateway) against Orthanc's DICOMweb
plugin.

Both archives are filled with the same files over dcmtk storescu (4 associations): N single-instance 8x8 studies,
one patient each (20 surnames), dated over the two years 2023-2024, modalities CT 30 %, MR 20 %, CR, DX and US,
plus one study whose single series holds 500 instances. Then each query of performance.md's QIDO-N set is sent on
one keep-alive connection per archive, one request at a time: 20 warm-up requests, then 200 timed (20 when the
warm-up median is over 100 ms, as the reference measured), the whole HTTP round trip including the body. The two
archives take turns query by query, alternating which goes first. Every answer is checked for its number of matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundImageStorage,
    generate_uid,
)

from bench import archives
from bench.archives import Archive, ArchiveUnavailable, _asyncpg_dsn
from bench.core import BenchContext, Benchmark, Measurement, Result, Value
from bench.datasets import ORG_ROOT
from bench.ingest import push

NAME = "qido"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"  # Debian's orthanc-dicomweb
PASSWORD = f"bench-{uuid.uuid4().hex}"
GENERATOR_VERSION = 2
SURNAMES = ["SMITH", "JONES", "TAYLOR", "BROWN", "WILLIAMS", "WILSON", "JOHNSON", "DAVIES", "ROBINSON", "WRIGHT",
            "THOMPSON", "EVANS", "WALKER", "WHITE", "ROBERTS", "GREEN", "HALL", "WOOD", "JACKSON", "CLARKE"]
MODALITIES = ["CT"] * 6 + ["MR"] * 4 + ["CR"] * 4 + ["DX"] * 3 + ["US"] * 3
SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage, "CR": ComputedRadiographyImageStorage,
               "DX": DigitalXRayImageStorageForPresentation, "US": UltrasoundImageStorage}
FIRST_DAY, DAYS = date(2023, 1, 1), 730
LISTING = 500
WARMUPS, REQUESTS, SLOW_REQUESTS, SLOW_MS = 20, 200, 20, 100.0


@dataclass(frozen=True)
class IndexSet:
    """The generated files, and the values the queries look for."""

    folder: Path
    files: tuple[Path, ...]
    studies: int
    patient_id: str
    study_instance_uid: str
    listing_study: str
    listing_series: str
    #: Studies dated January 2024 (what the one-month query matches before its limit).
    january_2024: int


@dataclass(frozen=True)
class Query:
    case: str
    path: str
    params: dict[str, str]
    expected: int
    #: shared/reference/performance.md §3 (Orthanc 1.10.1 + DICOMweb 1.7, 10,231 studies): p50 / p99 ms.
    reference: str
    #: QIDO-N targets @100k studies: p50 and p99 ms (None: no p99 target).
    target: tuple[float, float | None]


def queries(data: IndexSet) -> list[Query]:
    exact, page, listing = (10.0, 30.0), (50.0, 150.0), (150.0, None)
    return [
        Query("PatientID exact", "/studies", {"PatientID": data.patient_id}, 1, "23.6 / 25.3 ms", exact),
        Query("StudyInstanceUID exact", "/studies", {"StudyInstanceUID": data.study_instance_uid}, 1,
              "21.7 / 35.6 ms", exact),
        Query("StudyDate one month, limit=50", "/studies", {"StudyDate": "20240101-20240131", "limit": "50"},
              min(50, data.january_2024),
              "no limit: 1,126 / 1,673 ms (831 matches)", page),
        Query("page: limit=50", "/studies", {"limit": "50"}, 50, "115 / 199 ms", page),
        Query("ModalitiesInStudy=MR, limit=50", "/studies", {"ModalitiesInStudy": "MR", "limit": "50"}, 50,
              "239 / 286 ms", page),
        Query(f"a series' {LISTING} instances", f"/studies/{data.listing_study}/series/{data.listing_series}"
              "/instances", {}, LISTING, "610 / 784 ms", listing),
    ]


# --- the data set --------------------------------------------------------------------------------------------------

def ensure_index_set(cache_dir: Path, studies: int) -> IndexSet:
    """``studies`` single-instance studies and the listing series, generated once into the cache."""
    folder = cache_dir / f"qido-{studies}-v{GENERATOR_VERSION}"
    loaded = _load(folder, studies)
    if loaded is not None:
        return loaded
    shutil.rmtree(folder, ignore_errors=True)
    temporary = cache_dir / f".qido-{studies}.incoming-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        manifest = _generate(temporary, studies)
        (temporary / "manifest.json").write_text(json.dumps(manifest))
        temporary.rename(folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    loaded = _load(folder, studies)
    if loaded is None:
        raise RuntimeError(f"the data set just generated under {folder} does not load")
    return loaded


def _load(folder: Path, studies: int) -> IndexSet | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("version") != GENERATOR_VERSION or manifest.get("studies") != studies:
        return None
    files = tuple(folder / name for name in manifest["files"])
    if len(files) != studies + LISTING or not all(path.exists() for path in files):
        return None
    return IndexSet(folder, files, studies, manifest["patient_id"], manifest["study_instance_uid"],
                    manifest["listing_study"], manifest["listing_series"], manifest["january_2024"])


def _generate(folder: Path, studies: int) -> dict[str, Any]:
    rng = np.random.default_rng(20240101)
    names, probe, january = [], studies // 2, 0
    for n in range(studies):
        modality = MODALITIES[int(rng.integers(len(MODALITIES)))]
        day = FIRST_DAY + timedelta(days=int(rng.integers(DAYS)))
        study_uid = generate_uid(ORG_ROOT)
        january += (day.year, day.month) == (2024, 1)
        if n == probe:
            probe_study = study_uid
        ds = _instance(study_uid, generate_uid(ORG_ROOT), 1, modality, f"QIDO{n:07d}",
                       f"{SURNAMES[n % len(SURNAMES)]}^Patient{n}", f"Q{n:09d}", day, rng)
        names.append(_save(ds, folder, f"study_{n:07d}.dcm"))
    listing_study, listing_series = generate_uid(ORG_ROOT), generate_uid(ORG_ROOT)
    for i in range(1, LISTING + 1):
        ds = _instance(listing_study, listing_series, i, "CT", "QIDOLISTING", "LISTING^Series", "QLISTING",
                       date(2022, 6, 1), rng)
        names.append(_save(ds, folder, f"listing_{i:04d}.dcm"))
    return {"version": GENERATOR_VERSION, "studies": studies, "files": names, "patient_id": f"QIDO{probe:07d}",
            "study_instance_uid": probe_study, "listing_study": listing_study, "listing_series": listing_series,
            "january_2024": january}


def _instance(study: str, series: str, number: int, modality: str, patient_id: str, patient_name: str,
              accession: str, day: date, rng: np.random.Generator) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASSES[modality]
    meta.MediaStorageSOPInstanceUID = generate_uid(ORG_ROOT)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = day.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = f"{int(rng.integers(7, 20)):02d}{int(rng.integers(60)):02d}00"
    ds.AccessionNumber, ds.Modality = accession, modality
    ds.ReferringPhysicianName = "Referrer^Rita"
    ds.StudyDescription = ds.SeriesDescription = f"{modality} BENCH"
    ds.PatientName, ds.PatientID = patient_name, patient_id
    ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, number
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = rng.integers(0, 4095, size=(8, 8)).astype("<u2").tobytes()
    return ds


def _save(ds: Dataset, folder: Path, name: str) -> str:
    ds.save_as(folder / name, enforce_file_format=True)
    return name


# --- the archives ----------------------------------------------------------------------------------------------------

@dataclass
class Telerad:
    gateway_url: str
    dicom_port: int
    ingest_dsn: str


@contextlib.asynccontextmanager
async def telerad(ctx: BenchContext, run_dir: Path) -> AsyncIterator[Telerad]:
    """The platform, distributed, in a process of its own (``bench.telerad_platform``).

    Studies are never announced during the run (a settle time of a day), so the worklist stays idle and the
    searches are all the platform does.
    """
    async with archives.telerad_platform(ctx, run_dir, PASSWORD, DICOM_INGEST_SETTLE_SECONDS="86400") as running:
        yield Telerad(running.gateway_url, running.dicom_port,
                      _asyncpg_dsn(running.database_urls["dicom-ingest"]))


async def load(files: tuple[Path, ...], archive: Archive) -> float:
    """Send every file over 4 associations; the instances per second. Anything not stored is an error."""
    await asyncio.to_thread(lambda: [path.read_bytes() for path in files])
    seconds, failures = await push([list(files[i::4]) for i in range(4)], archive)
    stored = await archive.instance_count()
    if failures or stored != len(files):
        raise ArchiveUnavailable(f"{archive.name} holds {stored} of the {len(files)} instances sent; "
                                 + "; ".join(failures[:3]))
    return len(files) / seconds


async def sign_in(client: aiohttp.ClientSession, gateway_url: str) -> dict[str, str]:
    async with client.post(f"{gateway_url}/api/auth/login",
                           json={"email": "radiologist@demo.telerad", "password": PASSWORD}) as response:
        response.raise_for_status()
        return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


# --- measuring -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Latency:
    samples: tuple[float, ...]
    matches: int

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def measure(client: aiohttp.ClientSession, url: str, params: dict[str, str], headers: dict[str, str]
                  ) -> Latency:
    async def once() -> tuple[float, int]:
        started = time.perf_counter()
        async with client.get(url, params=params, headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{url} {params}: {response.status} {body[:300]!r}")
        return (time.perf_counter() - started) * 1000, len(json.loads(body)) if body.strip() else 0

    warm = [await once() for _ in range(WARMUPS)]
    timed = SLOW_REQUESTS if statistics.median(ms for ms, _ in warm) > SLOW_MS else REQUESTS
    samples = [await once() for _ in range(timed)]
    return Latency(tuple(ms for ms, _ in samples), samples[-1][1])


async def run(ctx: BenchContext) -> list[Result]:
    for tool, package in (("storescu", "dcmtk"), (ctx.settings.orthanc, "orthanc")):
        if shutil.which(tool) is None:
            raise ArchiveUnavailable(f"{tool} is not installed (make tools installs Debian's {package})")
    if not await asyncio.to_thread(Path(DICOMWEB_PLUGIN).exists):
        raise ArchiveUnavailable(f"{DICOMWEB_PLUGIN} is missing (make tools installs Debian's orthanc-dicomweb)")
    ctx.facts["Orthanc"] = await archives.orthanc_version(ctx.settings.orthanc)
    studies = 1_000 if ctx.quick else 10_000
    data = await asyncio.to_thread(ensure_index_set, ctx.dataset_dir, studies)
    run_dir = ctx.work_dir / NAME
    try:
        async with telerad(ctx, run_dir / "telerad") as platform, \
                archives.orthanc(ctx, run_dir / "orthanc", plugins=(DICOMWEB_PLUGIN,)) as orthanc:
            ingest = Archive("Telerad", "TELERAD", platform.dicom_port, postgres_dsn=platform.ingest_dsn)
            rates = {"Telerad": await load(data.files, ingest), "Orthanc": await load(data.files, orthanc)}
            await _analyze(platform.ingest_dsn)  # as autovacuum would have by now in a running archive
            ctx.log(f"{NAME}: {len(data.files):,} instances loaded: Telerad {rates['Telerad']:.0f} inst/s, "
                    f"Orthanc {rates['Orthanc']:.0f} inst/s")
            return await compare(ctx, data, platform.gateway_url + "/dicomweb", orthanc.http_url + "/dicom-web",
                                 platform.gateway_url)
    finally:
        if not ctx.settings.keep:
            await asyncio.to_thread(shutil.rmtree, run_dir, True)


async def _analyze(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def compare(ctx: BenchContext, data: IndexSet, telerad_root: str, orthanc_root: str,
                  gateway_url: str) -> list[Result]:
    results = []
    # one connection each, kept alive: what a viewer's browser holds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as telerad_client, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as orthanc_client:
        async with orthanc_client.get(orthanc_root.rsplit("/", 1)[0] + "/plugins/dicom-web") as response:
            if response.status != 200:
                raise ArchiveUnavailable("Orthanc did not load its DICOMweb plugin")
            ctx.facts["Orthanc DICOMweb plugin"] = str((await response.json()).get("Version", "unknown"))
        for number, query in enumerate(queries(data)):
            headers = await sign_in(telerad_client, gateway_url)  # a fresh token: tokens are short-lived
            systems = [("Telerad", telerad_client, telerad_root, headers), ("Orthanc", orthanc_client, orthanc_root,
                                                                            {})]
            measured: dict[str, Latency] = {}
            for name, client, root, auth in (systems if number % 2 == 0 else systems[::-1]):
                measured[name] = await measure(client, root + query.path, query.params,
                                               {"Accept": "application/dicom+json", **auth})
                ctx.log(f"{NAME}: {query.case}: {name} p50 {measured[name].p50:.1f} ms, p99 "
                        f"{measured[name].p99:.1f} ms, {measured[name].matches} matches")
            results.append(summarise(query, data, measured))
    return results


def summarise(query: Query, data: IndexSet, measured: dict[str, Latency]) -> Result:
    telerad, orthanc = measured["Telerad"], measured["Orthanc"]
    values: dict[str, Value] = {"studies": f"{data.studies:,} (+1 of {LISTING} instances)"}
    for name, latency in measured.items():
        values[f"{name} p50"] = Measurement((latency.p50,), "ms", 1)
        values[f"{name} p99"] = Measurement((latency.p99,), "ms", 1)
    values["Telerad / Orthanc p50"] = Measurement((telerad.p50 / orthanc.p50,), "x", 2)
    values["matches Telerad / Orthanc / expected"] = f"{telerad.matches} / {orthanc.matches} / {query.expected}"
    values["requests"] = f"{len(telerad.samples)} / {len(orthanc.samples)}"
    failures = tuple(f"{name} answered {latency.matches} matches, not {query.expected}"
                     for name, latency in measured.items() if latency.matches != query.expected)
    p50_target, p99_target = query.target
    meets = telerad.p50 <= p50_target and (p99_target is None or telerad.p99 <= p99_target)
    verdict = (f"{'meets' if meets else '**misses**'} the 100k target at {data.studies:,} studies; "
               f"{orthanc.p50 / telerad.p50:.1f}x Orthanc's speed (p50)")
    target = f"p50 ≤ {p50_target:g} ms" + (f", p99 ≤ {p99_target:g} ms" if p99_target is not None else "")
    return Result(NAME, f"QIDO-N: {query.case}", values, reference=f"Orthanc @10,231 studies: {query.reference}",
                  target=target + " @100k studies", verdict=verdict, failures=failures)


BENCHMARK = Benchmark(
    NAME, "QIDO-RS: search latency, Telerad through its gateway against Orthanc's DICOMweb plugin",
    (__doc__ or "").split("\n", 1)[1].strip() + """

* **Telerad**: the whole platform distributed in one process of its own (`bench.telerad_platform`: gateway,
  identity, worklist, reporting, signature, dicom-ingest on PostgreSQL and RabbitMQ); every search goes through
  the gateway with a radiologist's token (checked on each request), to dicom-ingest and its PostgreSQL index. The
  studies are never announced during the run (settle time of a day), so nothing else works meanwhile; `ANALYZE`
  runs after loading.
* **Orthanc**: `Orthanc config.json` with Debian's DICOMweb plugin (`orthanc-dicomweb`), default settings
  otherwise (SQLite index), searched directly at `/dicom-web` without authentication.
* Quick mode indexes 1,000 studies instead of 10,000; the targets are stated at 100,000.""",
    run,
)
