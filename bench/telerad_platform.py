"""``python -m bench.telerad_platform``: every service in one process, distributed (RabbitMQ, PostgreSQL).

Settings come from the environment as for ``telerad serve`` (``TELERAD_*``, ``<SERVICE>_DATABASE_URL``
...). It seeds the demo organisation with the password in ``BENCH_DEMO_PASSWORD``, prints one JSON
line ``{"gateway_url": ..., "dicom_port": ...}`` once listening, and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal

from radcommon.config import CommonSettings
from radcommon.logging import setup_logging
from telerad.platform import Platform, rabbitmq_bus


async def serve() -> None:
    common = CommonSettings()
    setup_logging("platform", common.log_level, common.log_format)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    platform = Platform(common, rabbitmq_bus(common), embedded=False)
    try:
        await platform.start()
        await platform.seed_demo(os.environ["BENCH_DEMO_PASSWORD"])
        print(json.dumps({"gateway_url": platform.gateway_url, "dicom_port": platform.dicom_port}), flush=True)
        await stopping.wait()
    finally:
        with contextlib.suppress(Exception):
            await platform.stop()


if __name__ == "__main__":
    asyncio.run(serve())
