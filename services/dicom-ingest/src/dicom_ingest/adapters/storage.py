"""Instance files on disk, content-addressed, behind a small interface an object store can replace.

Names are made by the server from the SHA-256 of the bytes, never from anything the sender chose,
so no UID (``../``, ``/``, NUL, 65+ characters) ever reaches a path. A file appears under its name
complete or not at all: written to a temporary file in the same directory, flushed to disk, renamed.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import threading
from pathlib import Path
from typing import Protocol

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class InstanceStorage(Protocol):
    def put(self, data: bytes) -> str: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...


class FileStorage:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        (root / "objects").mkdir(parents=True, exist_ok=True)
        self._objects = str(root / "objects")
        self._serial = itertools.count()

    def path(self, key: str) -> Path:
        if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / "objects" / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        # plain os calls rather than pathlib and tempfile: this runs once per received instance, and
        # those layers cost about a third of the Python time of a small instance's write
        key = hashlib.sha256(data).hexdigest()
        directory = os.path.join(self._objects, key[:2], key[2:4])
        target = os.path.join(directory, key)
        if os.path.exists(target):
            return key
        # unique among the threads and processes writing here; O_EXCL refuses a leftover of a dead writer
        temporary = os.path.join(directory, f".incoming-{os.getpid()}-{threading.get_ident()}-{next(self._serial)}")
        try:
            fd = os.open(temporary, _CREATE, 0o600)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(temporary, _CREATE, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        if self.fsync:
            directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory_fd)
            finally:
                os.close(directory_fd)
        return key

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def files(self) -> list[Path]:
        """Every stored file and leftover temporary (for tests and the orphan sweep)."""
        return [p for p in (self.root / "objects").rglob("*") if p.is_file()]
