import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dicom_ingest.adapters.storage import FileStorage

HOSTILE_BYTES = [b"", b"../../etc/passwd", b"/absolute\0nul", b"1.2.840.10008.5.1.4.1.1.2", bytes(range(256))]


def fail_with(error: BaseException) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail


@pytest.fixture
def storage(tmp_path: Path) -> FileStorage:
    return FileStorage(tmp_path / "dicom")


def test_put_stores_the_bytes_under_their_sha256(storage: FileStorage) -> None:
    key = storage.put(b"DICM instance")

    assert key == hashlib.sha256(b"DICM instance").hexdigest()
    assert storage.get(key) == b"DICM instance"
    assert storage.exists(key)
    assert storage.files() == [storage.root / "objects" / key[:2] / key[2:4] / key]


def test_a_new_directory_is_flushed_in_its_parent_before_a_file_in_it_counts_as_written(
        storage: FileStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = FileStorage._sync_directory
    monkeypatch.setattr(FileStorage, "_sync_directory", staticmethod(lambda d: (synced.append(d), real(d))))
    objects = str(storage.root / "objects")
    key = storage.put(b"first")
    # objects/ab and objects/ab/cd are new: each flushed in its parent, then the file's name in its directory
    assert synced == [objects, os.path.join(objects, key[:2]), os.path.join(objects, key[:2], key[2:4])]
    synced.clear()
    _, spooled = storage.spool(b"second", "ab")  # the spool directory exists: only the file's name is flushed
    assert synced == [str(storage.root / "spool")]
    synced.clear()
    assert storage.set_aside(spooled) is not None  # spool/failed is new: flushed in the spool directory
    assert synced == [str(storage.root / "spool")]


def test_putting_the_same_bytes_again_writes_nothing(storage: FileStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    key = storage.put(b"DICM instance")
    monkeypatch.setattr(os, "open", fail_with(AssertionError("wrote an object it already holds")))

    assert storage.put(b"DICM instance") == key
    assert storage.files() == [storage.path(key)]


def test_different_bytes_get_different_files(storage: FileStorage) -> None:
    keys = {storage.put(data) for data in HOSTILE_BYTES}

    assert len(keys) == len(HOSTILE_BYTES)
    assert sorted(storage.files()) == sorted(storage.path(key) for key in keys)


@pytest.mark.parametrize("data", HOSTILE_BYTES)
def test_the_file_name_is_the_hash_whatever_the_bytes_say(storage: FileStorage, data: bytes) -> None:
    key = storage.put(data)

    [path] = storage.files()
    assert path.name == key == hashlib.sha256(data).hexdigest()
    assert path.resolve().parent.parent.parent == (storage.root / "objects").resolve()


OS_WRITE = os.write


def failing_write(error: BaseException) -> Callable[[int, Any], int]:
    """A write that gets half-way, then fails, as on a full disk."""

    def write(fd: int, data: Any) -> int:
        OS_WRITE(fd, bytes(data[:len(data) // 2]))
        raise error

    return write


FAILURES: dict[str, tuple[str, Callable[[BaseException], Callable[..., Any]]]] = {
    "write fails": ("write", failing_write),
    "fsync fails": ("fsync", fail_with),
    "rename fails": ("replace", fail_with),
}


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk full", "interrupted"])
@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_put_leaves_no_file_and_no_temporary(storage: FileStorage, monkeypatch: pytest.MonkeyPatch,
                                                      failure: str, error: BaseException) -> None:
    name, make = FAILURES[failure]
    monkeypatch.setattr(os, name, make(error))

    with pytest.raises(type(error)):
        storage.put(b"DICM instance")

    monkeypatch.undo()
    assert storage.files() == []
    assert not storage.exists(hashlib.sha256(b"DICM instance").hexdigest())


def test_a_put_after_a_failed_one_succeeds(storage: FileStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "replace", fail_with(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        storage.put(b"DICM instance")
    monkeypatch.undo()

    key = storage.put(b"DICM instance")

    assert storage.files() == [storage.path(key)]


def test_delete_removes_the_file_and_tolerates_a_missing_one(storage: FileStorage) -> None:
    key = storage.put(b"DICM instance")

    storage.delete(key)
    storage.delete(key)

    assert storage.files() == []
    assert not storage.exists(key)


@pytest.mark.parametrize("key", [
    "", "../etc", "abc", "0" * 63, "0" * 65, "A" * 64, "g" * 64, "../" + "0" * 61, "00/" + "0" * 61,
    "0" * 63 + "\n", "0" * 63 + "\0", "\u0660" * 64], ids=repr)
def test_anything_but_a_key_is_refused_before_it_reaches_a_path(storage: FileStorage, key: str) -> None:
    for use in (storage.path, storage.get, storage.exists, storage.delete):
        with pytest.raises(ValueError, match="not a storage key"):
            use(key)


def test_a_spooled_file_is_filed_under_its_key_once_and_leaves_the_spool(storage: FileStorage) -> None:
    key, path = storage.spool(b"DICM spooled", "0a.4354")
    assert key == hashlib.sha256(b"DICM spooled").hexdigest() and storage.spooled() == [path]
    assert not storage.exists(key)  # not readable by key before it is filed
    directory = storage.adopt(path, key)
    assert directory == str(storage.path(key).parent) and storage.get(key) == b"DICM spooled"
    assert storage.adopt(path, key) is None  # filed already: nothing more to sync
    storage.sync({directory})
    storage.unspool(path)
    storage.unspool(path)  # twice (two processes recovering the same file): no error
    assert storage.spooled() == [] and storage.files() == [storage.path(key)]
    assert storage.adopt(path, key) is None  # unspooled by another process after filing it


@pytest.mark.parametrize("label", ["", "../x", "0a/4354", "0A.43", "0a.43\0"])
def test_a_spool_label_holds_nothing_but_hex_digits_and_dots(storage: FileStorage, label: str) -> None:
    with pytest.raises(ValueError, match="not a spool label"):
        storage.spool(b"DICM", label)
    assert storage.spooled() == []


def test_a_spool_on_another_file_system_is_filed_by_a_copy(storage: FileStorage,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    key, path = storage.spool(b"DICM elsewhere", "0a")
    monkeypatch.setattr(os, "link", fail_with(OSError(18, "Invalid cross-device link")))
    assert storage.adopt(path, key) is not None
    assert storage.get(key) == b"DICM elsewhere" and storage.adopt(path, key) is None
    assert not os.path.samefile(path, storage.path(key))


def test_a_spooled_file_set_aside_is_kept_out_of_the_spool(storage: FileStorage) -> None:
    _, path = storage.spool(b"DICM refused", "0b")
    aside = storage.set_aside(path)
    assert aside is not None and Path(aside).read_bytes() == b"DICM refused"
    assert storage.spooled() == [] and storage.set_aside(path) is None
