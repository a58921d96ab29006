"""``python -m bench.telerad_ingest``: dicom-ingest as ``telerad serve dicom-ingest`` runs it, plus demo senders.

The same composition as the distributed entrypoint (RabbitMQ bus, PostgreSQL database, settings from
the environment: ``TELERAD_*`` and ``DICOM_INGEST_*``), except that it first registers the demo
modalities (calling AE titles STORESCU, ECHOSCU and ANY-SCU from 127.0.0.1), which a real deployment
does through ``POST /api/modalities``. Once listening it prints one JSON line, ``{"dicom_port": N}``,
and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys

from dicom_ingest.bootstrap import DicomIngestService
from radcommon.config import CommonSettings
from radcommon.logging import setup_logging
from radcommon.telemetry import setup_tracing
from telerad.platform import build_service, rabbitmq_bus


async def serve() -> None:
    common = CommonSettings()
    setup_logging("dicom-ingest", common.log_level, common.log_format)
    setup_tracing("dicom-ingest")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    bus = rabbitmq_bus(common)
    await bus.connect()
    service = build_service("dicom-ingest", common, bus, embedded=False)
    assert isinstance(service, DicomIngestService)
    try:
        await service.prepare()
        await service.register_demo_modalities(common.default_organization_id)
        await service.start()
        print(json.dumps({"dicom_port": service.scp.port}), flush=True)
        await stopping.wait()
    finally:
        with contextlib.suppress(Exception):
            await service.stop()
        await bus.close()


if __name__ == "__main__":
    asyncio.run(serve())
    sys.exit(0)
