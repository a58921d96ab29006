"""Worklist benchmarks: query latency with 100,000 items, and the time from study.received to the item
being visible through the gateway (issue 5; LAT-S2W and QIDO-N in shared/reference/performance.md).

The whole platform runs distributed in its own process (RabbitMQ, PostgreSQL); the items are loaded
straight into the worklist's database with COPY (as months of a busy centre would leave them), then
every query goes through the gateway with a radiologist's token on a keep-alive connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg

from bench.archives import _asyncpg_dsn, telerad_platform
from bench.core import BenchContext, Benchmark, Measurement, Result
from radcommon.config import CommonSettings
from radcommon.contracts import PriorityValues, StudyReceivedV1
from radcommon.messaging import Message
from telerad.platform import rabbitmq_bus

NAME = "worklist"
DEMO_ORGANIZATION = uuid.UUID("00000000-0000-4000-8000-000000000001")
PASSWORD = f"bench-{uuid.uuid4().hex}"
SURNAMES = ["SMITH", "JONES", "TAYLOR", "BROWN", "WILLIAMS", "WILSON", "JOHNSON", "DAVIES", "ROBINSON", "WRIGHT",
            "THOMPSON", "EVANS", "WALKER", "WHITE", "ROBERTS", "GREEN", "HALL", "WOOD", "JACKSON", "CLARKE"]
MODALITIES = [("CT", "HEAD"), ("CT", "CHEST"), ("MR", "BRAIN"), ("MR", "KNEE"), ("CR", "CHEST"), ("US", "ABDOMEN"),
              ("DX", "HAND"), ("MG", "BREAST")]
STATUSES = ["final"] * 70 + ["amended"] * 3 + ["preliminary"] * 5 + ["in_progress"] * 4 + ["assigned"] * 8 + \
    ["received"] * 10
PRIORITIES = [("stat", 0, 60)] * 10 + [("urgent", 1, 240)] * 20 + [("routine", 2, 1440)] * 70


@dataclass
class Running:
    gateway_url: str
    amqp_url: str
    worklist_dsn: str


@contextlib.asynccontextmanager
async def platform(ctx: BenchContext, run_dir: Path) -> AsyncIterator[Running]:
    async with telerad_platform(ctx, run_dir, PASSWORD) as running:
        yield Running(running.gateway_url, running.amqp_url, _asyncpg_dsn(running.database_urls["worklist"]))


async def load_items(dsn: str, count: int) -> None:
    """``count`` items over the last 90 days in the demo organisation, in the shares of a busy centre."""
    rng = random.Random(42)
    now = datetime.now(UTC)
    records = []
    readers = [uuid.uuid4() for _ in range(12)]
    for n in range(count):
        received = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
        priority, rank, minutes = rng.choice(PRIORITIES)
        status = rng.choice(STATUSES)
        modality, body_part = rng.choice(MODALITIES)
        deadline = received + timedelta(minutes=minutes)
        warn_at = received + timedelta(minutes=minutes * 0.75)
        reader = rng.choice(readers) if status != "received" else None
        final = received + timedelta(minutes=rng.uniform(5, minutes * 1.3)) if status in ("final", "amended") else None
        name = f"{rng.choice(SURNAMES)}^{rng.choice(SURNAMES).title()}"
        records.append((
            uuid.uuid4(), DEMO_ORGANIZATION, f"2.25.{uuid.uuid4().int}", f"PID{n:07d}", name, f"ACC{n:07d}",
            received.date(), f"{modality} {body_part}", "", "BENCH", json.dumps([modality]), json.dumps([body_part]),
            priority, rank, status, 1, 100, received, deadline, warn_at,
            warn_at if warn_at < now else None, deadline if deadline < now and final is None else None, reader,
            received if reader else None, reader if status == "in_progress" else None, None, None,
            final, final, reader if final else None, final or received))
    columns = ["id", "organization_id", "study_instance_uid", "patient_id", "patient_name", "accession_number",
               "study_date", "study_description", "referring_physician_name", "calling_ae_title", "modalities",
               "body_parts", "priority", "priority_rank", "status", "number_of_series", "number_of_instances",
               "received_at", "deadline", "warn_at", "warned_at", "breached_at", "assignee_id", "assigned_at",
               "claimed_by", "claimed_at", "claim_expires_at", "preliminary_at", "finalized_at", "reported_by",
               "updated_at"]
    connection = await asyncpg.connect(dsn)
    try:
        # alerts for what is past its time count as raised already, as the monitor would have left them
        await connection.copy_records_to_table("worklist_items", records=records, columns=columns)
        await connection.execute("ANALYZE worklist_items")
    finally:
        await connection.close()


QUERIES = [
    ("default page: priority then deadline, 50", "?limit=50"),
    ("open items by deadline", "?status=received,assigned,in_progress&sort=deadline&limit=50"),
    ("mine, open", "?assignee=me&status=assigned,in_progress&limit=50"),
    ("patient name contains", "?patient=smith&limit=50"),
    ("patient ID exact", "?patient=PID0031337&limit=50"),
    ("accession exact", "?accession=ACC0042424&limit=50"),
    ("CT, one month, newest first", "?modality=CT&received_from={month_ago}&sort=-received&limit=50"),
    ("breached, open", "?sla=breached&limit=50"),
    ("page 20 (offset 1,000)", "?limit=50&offset=1000"),
    ("dashboard counts", "/counts"),
]


def _percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def _sign_in(session: aiohttp.ClientSession, gateway_url: str) -> dict[str, str]:
    async with session.post(f"{gateway_url}/api/auth/login",
                            json={"email": "radiologist@demo.telerad", "password": PASSWORD}) as response:
        response.raise_for_status()
        return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


async def query_latency(ctx: BenchContext, running: Running, items: int) -> list[Result]:
    requests = 50 if ctx.quick else 200
    month_ago = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    results = []
    async with aiohttp.ClientSession() as session:
        headers = await _sign_in(session, running.gateway_url)
        for title, query in QUERIES:
            path = "/api/worklist" + query.format(month_ago=month_ago)
            samples, total = [], None
            for n in range(requests + 5):
                started = time.perf_counter()
                async with session.get(running.gateway_url + path, headers=headers) as response:
                    body = await response.json()
                    if response.status != 200:
                        raise RuntimeError(f"{path}: {response.status} {body}")
                if n >= 5:  # the first few warm the connection and the caches
                    samples.append((time.perf_counter() - started) * 1000)
                total = body.get("total", body.get("total_open"))
            p50, p99 = statistics.median(samples), _percentile(samples, 0.99)
            target_p99 = 150.0
            results.append(Result(
                NAME, f"query: {title}",
                {"items": f"{items:,}", "matches": f"{total:,}" if isinstance(total, int) else "-",
                 "p50": Measurement((p50,), "ms", 1), "p99": Measurement((p99,), "ms", 1),
                 "requests": requests},
                reference="Orthanc QIDO page of 50 @10k studies: 115 ms p50, 199 ms p99",
                target="p50 ≤ 50 ms, p99 ≤ 150 ms @100k",
                verdict="meets" if p50 <= 50 and p99 <= target_p99 else "misses"))
    return results


async def received_to_visible(ctx: BenchContext, running: Running) -> list[Result]:
    """Publish study.received as dicom-ingest would, then poll the gateway until the item shows."""
    studies = 20 if ctx.quick else 100
    common = CommonSettings(amqp_url=running.amqp_url)
    bus = rabbitmq_bus(common)
    await bus.connect()
    samples = []
    try:
        async with aiohttp.ClientSession() as session:
            headers = await _sign_in(session, running.gateway_url)
            for n in range(studies):
                accession = f"LAT{n:05d}{uuid.uuid4().hex[:4]}"
                event = StudyReceivedV1(
                    organization_id=DEMO_ORGANIZATION, study_instance_uid=f"2.25.{uuid.uuid4().int}",
                    patient_id=f"LATP{n}", patient_name="LATENCY^Probe", accession_number=accession,
                    modalities=["CT"], body_parts=["HEAD"], priority=PriorityValues.STAT, number_of_series=1,
                    number_of_instances=1)
                started = time.perf_counter()
                await bus.publish([Message(str(event.event_id), event.routing_key, event.model_dump_json().encode())])
                while True:
                    async with session.get(f"{running.gateway_url}/api/worklist?accession={accession}",
                                           headers=headers) as response:
                        if (await response.json())["total"] == 1:
                            break
                    if time.perf_counter() - started > 30:
                        raise RuntimeError("a study never became visible")
                samples.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.5)  # open loop at 2 studies/s, as LAT-S2W sends them
    finally:
        await bus.close()
    p50, p99 = statistics.median(samples), _percentile(samples, 0.99)
    return [Result(NAME, "study.received → visible in GET /api/worklist",
                   {"items": "100,000 + probes", "p50": Measurement((p50,), "ms", 1),
                    "p99": Measurement((p99,), "ms", 1), "requests": studies},
                   reference="Orthanc: visible when the C-STORE-RSP arrives (store → QIDO 54-61 ms p50 incl. "
                             "storescu start)",
                   target="LAT-S2W p50 ≤ 100 ms, p99 ≤ 500 ms (from the C-STORE-RSP; here from the event)",
                   verdict="meets" if p50 <= 100 and p99 <= 500 else "misses")]


async def run(ctx: BenchContext) -> list[Result]:
    items = 20_000 if ctx.quick else 100_000
    async with platform(ctx, ctx.work_dir / "worklist") as running:
        async with aiohttp.ClientSession() as session:
            # the loaded backlog stays as loaded: its waiting items are not handed out during the measurement
            async with session.put(f"{running.gateway_url}/api/worklist/availability", json={"available": False},
                                   headers=await _sign_in(session, running.gateway_url)) as response:
                response.raise_for_status()
        clock = time.monotonic()
        await load_items(running.worklist_dsn, items)
        ctx.log(f"worklist: {items:,} items loaded in {time.monotonic() - clock:.1f} s")
        results = await query_latency(ctx, running, items)
        results += await received_to_visible(ctx, running)
    return results


BENCHMARK = Benchmark(
    NAME, "Worklist: query latency with 100,000 items, and study.received → visible",
    "The platform runs distributed in one process of its own (RabbitMQ, PostgreSQL; gateway, identity, "
    "worklist and dicom-ingest). 100,000 items (quick mode: 20,000) over 90 days are loaded into the "
    "worklist's database with COPY: 73 % reported, 27 % open; 10 % STAT, 20 % urgent, 70 % routine; 8 "
    "modality/body-part pairs; 20 surnames. Each query is sent through the gateway with a radiologist's "
    "token on one keep-alive connection, 5 warm-up requests then 200 timed ones (quick: 50), one at a "
    "time; p50 and p99 are of the whole HTTP round trip (gateway → worklist → PostgreSQL and back). "
    "Latency to visible: study.received.v1 published on RabbitMQ as dicom-ingest would, then "
    "GET /api/worklist?accession= polled back-to-back until the item shows; 100 studies at 2/s.",
    run)
