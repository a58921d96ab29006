"""``telerad up`` | ``telerad serve <service>`` | ``telerad dead-letters`` | ``telerad contracts``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from identity.service_layer.organizations import generated_password
from radcommon.config import CommonSettings
from radcommon.logging import setup_logging
from radcommon.telemetry import setup_tracing
from telerad.platform import SERVICES, Platform, build_service, local_bus, rabbitmq_bus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telerad", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="run every service in this process (SQLite under TELERAD_DATA_DIR, local bus)")
    serve = commands.add_parser("serve", help="run one service against RabbitMQ and PostgreSQL")
    serve.add_argument("service", choices=SERVICES)
    dead = commands.add_parser("dead-letters", help="list or replay a queue's dead letters")
    dead.add_argument("action", choices=("list", "replay"))
    dead.add_argument("queue", help="a consuming queue, e.g. worklist.events")
    dead.add_argument("--message-id", action="append", help="replay only these (repeatable)")
    dead.add_argument("--embedded", action="store_true", help="the local bus of `telerad up` instead of RabbitMQ")
    contracts = commands.add_parser("contracts", help="write or check the event catalogue in contracts/")
    contracts.add_argument("action", choices=("write", "check"))
    contracts.add_argument("--dir", type=Path, default=Path("contracts"))
    args = parser.parse_args(argv)

    common = CommonSettings()
    if args.command == "contracts":
        from radcommon.contracts.catalogue import check_catalogue, write_catalogue

        if args.action == "write":
            write_catalogue(args.dir)
            return 0
        problems = check_catalogue(args.dir)
        print("\n".join(problems) or "contracts: catalogue matches the models")
        return 1 if problems else 0
    if args.command == "dead-letters":
        return asyncio.run(_dead_letters(common, args.action, args.queue, args.message_id, args.embedded))
    setup_logging("telerad" if args.command == "up" else args.service, common.log_level, common.log_format)
    setup_tracing("telerad" if args.command == "up" else args.service)
    if args.command == "up":
        return asyncio.run(_until_stopped(lambda: _up(common)))
    return asyncio.run(_until_stopped(lambda: _serve(common, args.service)))


async def _up(common: CommonSettings) -> Callable[[], Awaitable[None]]:
    platform = Platform(common, local_bus(common), embedded=True)
    await platform.start()
    password = os.environ.get("TELERAD_DEMO_PASSWORD") or generated_password()
    seeded = await platform.seed_demo(password)
    if seeded:
        chosen = "" if os.environ.get("TELERAD_DEMO_PASSWORD") else "  (generated; TELERAD_DEMO_PASSWORD chooses)"
        sign_in = f"""  demo organisation seeded; users admin@, manager@, radiologist@, technician@demo.telerad
            password: {password}{chosen}"""
    else:
        sign_in = "  demo organisation already seeded: sign in with the password printed at the first start"
    ingest = platform.services["dicom-ingest"].scp  # type: ignore[attr-defined]
    print(f"""
Telerad is running (embedded: every service in this process, data under {common.data_dir.resolve()})
  gateway   {platform.gateway_url}   the API under /api, described at {platform.gateway_url}/openapi.json
  viewer    {common.public_url.rstrip('/')}/viewer/   OHIF: sign in, then pick a study (one study:
            {common.public_url.rstrip('/')}/viewer/viewer?StudyInstanceUIDs=<uid>)
  DICOM     AE title {ingest.settings.ae_title} on {ingest.settings.dicom_host}:{ingest.port}
            e.g. storescu -aec {ingest.settings.ae_title} {ingest.settings.dicom_host} {ingest.port} +sd <folder>
{sign_in}
  sign in   curl -s -X POST {platform.gateway_url}/api/auth/login -H 'Content-Type: application/json' \\
              -d '{{"email": "radiologist@demo.telerad", "password": "..."}}'
            then: curl -H "Authorization: Bearer <access_token>" {platform.gateway_url}/api/worklist
  DICOM     calling AE titles STORESCU, ECHOSCU and ANY-SCU from 127.0.0.1 are registered to the demo
            organisation; register other modalities with POST /api/modalities (admin or manager)
Stop with Ctrl-C.
""", flush=True)
    return platform.stop


async def _serve(common: CommonSettings, name: str) -> Callable[[], Awaitable[None]]:
    bus = rabbitmq_bus(common)
    await bus.connect()
    service = build_service(name, common, bus, embedded=False)
    await service.prepare()
    await service.start()

    async def stop() -> None:
        await service.stop()
        await bus.close()

    return stop


async def _until_stopped(start: Callable[[], Awaitable[Callable[[], Awaitable[None]]]]) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)
    stop = await start()
    try:
        await stopping.wait()
    finally:
        await stop()
    return 0


async def _dead_letters(common: CommonSettings, action: str, queue: str, ids: list[str] | None,
                        embedded: bool) -> int:
    bus = local_bus(common) if embedded else rabbitmq_bus(common)
    await bus.connect()
    try:
        if action == "list":
            for letter in await bus.dead_letters(queue):
                print(json.dumps({"message_id": letter.message.message_id, "routing_key": letter.message.routing_key,
                                  "attempts": letter.attempts, "error": letter.error,
                                  "body": letter.message.body.decode(errors="replace")}))
        else:
            print(f"replayed {await bus.replay_dead_letters(queue, ids)} message(s) onto {queue}")
    finally:
        await bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
