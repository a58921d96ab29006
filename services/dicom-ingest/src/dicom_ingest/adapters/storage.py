"""Instance files on disk, content-addressed, behind a small interface an object store can replace.

Names are made by the server from the SHA-256 of the bytes, never from anything the sender chose,
so no UID (``../``, ``/``, NUL, 65+ characters) ever reaches a path. A file appears under its name
complete or not at all: written to a temporary file in the same directory, flushed to disk, renamed; a
directory made for it is flushed in its parent too, so a new name survives a crash with every level above it.
A received instance may be written to the spool first and filed under its name once it is indexed
(:mod:`dicom_ingest.adapters.spool_index`).
"""

from __future__ import annotations

import contextlib
import errno
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
        (root / "spool").mkdir(exist_ok=True)
        #: Instances acknowledged before they are indexed (dicom_ingest.adapters.spool_index), until they are.
        self._spool = str(root / "spool")
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
        self._write(directory, target, data)
        return key

    def spool(self, data: bytes, label: str) -> tuple[str, str]:
        """Write ``data`` to the spool, durably, under a new name holding its key and ``label`` (``[0-9a-f.]``
        only); returns its key and the spooled file's path. :meth:`adopt` later files it under its key."""
        if label.strip("0123456789abcdef.") or not label:
            raise ValueError(f"not a spool label: {label!r}")
        key = hashlib.sha256(data).hexdigest()
        path = os.path.join(self._spool, f"{key}.{label}.{os.getpid():x}-{next(self._serial):x}")
        self._write(self._spool, path, data)
        return key, path

    def spooled(self) -> list[str]:
        """The paths of the files in the spool (complete ones: not temporaries, not set aside)."""
        with os.scandir(self._spool) as entries:
            return sorted(e.path for e in entries if not e.name.startswith(".") and e.is_file(follow_symlinks=False))

    def adopt(self, path: str, key: str) -> str | None:
        """File the spooled ``path`` under ``key`` as well (a hard link; the spooled name stays until
        :meth:`unspool`). The directory to :meth:`sync` for the new name to last, or ``None`` if the key
        was held already. FileNotFoundError if neither the spooled file nor the key exists."""
        directory = os.path.join(self._objects, key[:2], key[2:4])
        target = os.path.join(directory, key)
        try:
            self._link(path, target)
        except FileExistsError:
            return None
        except FileNotFoundError:
            if os.path.exists(target):  # filed and unspooled by another process (recovery running twice)
                return None
            if not os.path.exists(path):
                raise
            self._make_directories(directory)
            try:
                self._link(path, target)
            except FileExistsError:
                return None
        return directory

    def _link(self, path: str, target: str) -> None:
        try:
            os.link(path, target)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):  # not on one file system, or no links
                raise
            if os.path.exists(target):
                raise FileExistsError(target) from None
            with open(path, "rb") as file:  # a copy, written as put writes
                self._write(os.path.dirname(target), target, file.read())

    def sync(self, directories: set[str]) -> None:
        """Make the names :meth:`adopt` added in ``directories`` last (no-op without fsync)."""
        if self.fsync:
            for directory in sorted(directories):
                self._sync_directory(directory)

    def unspool(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def set_aside_files(self) -> list[str]:
        """The paths of the spooled files :meth:`set_aside` moved out of the spool."""
        failed = os.path.join(self._spool, "failed")
        try:
            with os.scandir(failed) as entries:
                return sorted(e.path for e in entries if e.is_file(follow_symlinks=False))
        except FileNotFoundError:
            return []

    def set_aside(self, path: str) -> str | None:
        """Move a spooled file the index cannot take to ``spool/failed``, for an operator; its new path."""
        failed = os.path.join(self._spool, "failed")
        self._make_directories(failed)
        target = os.path.join(failed, os.path.basename(path))
        try:
            os.replace(path, target)
            os.utime(target)  # when it was set aside
        except FileNotFoundError:
            return None
        return target

    def _write(self, directory: str, target: str, data: bytes) -> None:
        """``data`` at ``target``, complete or not at all: a temporary file in ``directory``, fsync, rename."""
        # unique among the threads and processes writing here; O_EXCL refuses a leftover of a dead writer
        temporary = os.path.join(directory, f".incoming-{os.getpid()}-{threading.get_ident()}-{next(self._serial)}")
        try:
            fd = os.open(temporary, _CREATE, 0o600)
        except FileNotFoundError:
            self._make_directories(directory)
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
            self._sync_directory(directory)

    def _make_directories(self, directory: str) -> None:
        """``directory`` and any missing parent, each new one's entry flushed in its parent (with fsync): a
        name fsynced in a directory whose own entry was never flushed can vanish with it in a crash."""
        missing = []
        while not os.path.isdir(directory):
            missing.append(directory)
            directory = os.path.dirname(directory)
        for new in reversed(missing):
            with contextlib.suppress(FileExistsError):  # made meanwhile by another thread or process
                os.mkdir(new)
            if self.fsync:  # even so: that one may not have flushed it yet
                self._sync_directory(os.path.dirname(new))

    @staticmethod
    def _sync_directory(directory: str) -> None:
        directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def files(self) -> list[Path]:
        """Every stored file and leftover temporary (for tests and the orphan sweep)."""
        return [p for p in (self.root / "objects").rglob("*") if p.is_file()]
