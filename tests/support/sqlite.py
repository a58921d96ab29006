"""Migrated SQLite databases for tests: a service's migrations run once per session into a template, and each
test gets a copy (milliseconds) instead of migrating again (a tenth of a second or more per service)."""

from __future__ import annotations

import atexit
import importlib
import shutil
import tempfile
from pathlib import Path

from radcommon.db import Database

#: Built lazily, on the caller's event loop (Alembic's ``op`` and ``context`` are process-wide: no threads).
_templates: dict[str, Path] = {}
_folder = Path(tempfile.mkdtemp(prefix="telerad-sqlite-templates-"))
atexit.register(shutil.rmtree, _folder, True)


def migrations_of(service: str) -> Path:
    package = importlib.import_module(service.replace("-", "_"))
    return Path(package.__file__ or "").parent / "migrations"


async def _template(service: str) -> Path:
    if service not in _templates:
        path = _folder / f"{service.replace('-', '_')}.db"
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await db.ensure_created()
            await db.migrate(migrations_of(service))
        finally:
            await db.engine.dispose()
        if any(path.with_name(path.name + suffix).exists() for suffix in ("-wal", "-journal")):
            raise AssertionError(f"{path} is not self-contained after its last connection closed")
        _templates[service] = path
    return _templates[service]


async def copy_migrated(service: str, path: Path) -> Path:
    """``path`` as a database the service's migrations brought to their newest revision, unless it exists."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(await _template(service), path)
    return path
