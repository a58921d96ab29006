"""What the figures were measured on: hardware, software versions and the load at the time."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from bench.archives import REPO, first_line_of


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory() -> str:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def operating_system() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    return " ".join(_read("/proc/loadavg").split()[:3]) or "unknown"


def telerad_revision() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' with uncommitted changes' if dirty else ''}"


async def postgres_version(postgres_url: str) -> str:
    dsn = make_url(postgres_url).set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False)
    try:
        connection = await asyncpg.connect(dsn, timeout=10)
    except Exception as error:
        return f"unreachable ({type(error).__name__})"
    try:
        return f"PostgreSQL {await connection.fetchval('SHOW server_version')}"
    finally:
        await connection.close()


async def describe(postgres_url: str) -> dict[str, str]:
    """The machine and the software on it, as label → value."""
    rabbitmq = await first_line_of("rabbitmqctl", "-q", "version")
    return {
        "CPU": f"{os.cpu_count()} x {cpu_model()}",
        "memory": memory(),
        "system": f"{operating_system()}, kernel {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "pydicom / pynetdicom": f"{package_version('pydicom')} / {package_version('pynetdicom')}",
        "dcmtk": (await first_line_of("storescu", "--version")).strip("$ ").removeprefix("dcmtk: "),
        "PostgreSQL": await postgres_version(postgres_url),
        "RabbitMQ": f"RabbitMQ {rabbitmq}",
        "Telerad": f"commit {telerad_revision()}",
    }
