"""``python -m dicom_ingest.scp_worker``: one SCP worker process of :mod:`dicom_ingest.entrypoints.scp_workers`.

Reads its settings as one JSON line on standard input, listens, writes ``{"ready": <pid>}`` on
standard output, and runs until standard input closes (the service stopping, or gone) or SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from pydicom import config

from dicom_ingest.bootstrap import scp_worker
from dicom_ingest.config import DicomIngestSettings
from radcommon.logging import setup_logging
from radcommon.telemetry import setup_tracing


async def serve() -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    spec = json.loads(await stdin.readline())
    setup_logging("dicom-ingest", spec["log_level"], spec["log_format"])
    setup_tracing("dicom-ingest")
    settings = DicomIngestSettings(**spec["settings"])
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)

    async def until_stdin_closes() -> None:
        await stdin.read()
        stopping.set()

    async with scp_worker(settings):
        print(json.dumps({"ready": os.getpid()}), flush=True)
        watch = asyncio.create_task(until_stdin_closes())
        await stopping.wait()
        watch.cancel()


def quiet_pydicom_reading() -> None:
    """pydicom validates every value it reads against its VR (warnings only) and every UID it makes with a
    regular expression; pynetdicom makes about 1,000 UIDs decoding and negotiating one A-ASSOCIATE-RQ with
    120 contexts, a third of an association's set-up (53 -> 35 ms of CPU). A worker only runs the SCP, which
    checks what it indexes itself (dicom.attributes), so here the setting is the process's to change."""
    config.settings.reading_validation_mode = config.IGNORE


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the service, which stops its workers
    quiet_pydicom_reading()
    asyncio.run(serve())
