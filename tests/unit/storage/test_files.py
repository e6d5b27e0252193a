from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.errors import IntegrityError, NotFoundError, StorageError
from loopml.spec import FilesConfig
from loopml.storage import ArtifactStore, FileStore
from loopml.storage._files import TMP_PREFIX
from loopml.testing import FileStoreContract


def store(tmp_path: Path, url: str = "lake") -> FileStore:
    return FileStore(FilesConfig(url=url), root=tmp_path)


class TestLocalFileStore(FileStoreContract):
    @pytest.fixture
    def files(self, tmp_path: Path) -> FileStore:
        return store(tmp_path)


class TestFsspecMemoryFileStore(FileStoreContract):
    """The same store on a non-local fsspec filesystem (where a put is the atomic step)."""

    @pytest.fixture
    def files(self, tmp_path: Path) -> Iterator[FileStore]:
        s = store(tmp_path, f"memory://loopml-contract-{tmp_path.name}")
        yield s
        s.delete("", recursive=True)


def test_relative_folder_is_under_the_project(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.is_local and s.base == str(tmp_path / "lake")
    s.write_bytes("a/b.bin", b"x")
    assert (tmp_path / "lake" / "a" / "b.bin").read_bytes() == b"x"


def test_atomic_write_leaves_no_temporary_file_on_failure(tmp_path: Path) -> None:
    s = store(tmp_path)

    def fail(path: str) -> None:
        Path(path).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        s.write_atomic("a/file.bin", fail)
    assert not s.exists("a/file.bin")
    assert not [n for n in s.list("a") if n.startswith(TMP_PREFIX)]


def test_paths_outside_the_store_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        store(tmp_path).path("../escape")


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        store(tmp_path).read_bytes("nope")


def test_memory_filesystem_works_through_fsspec(tmp_path: Path) -> None:
    s = store(tmp_path, "memory://loopml-test-lake")
    assert not s.is_local
    s.write_bytes("x/y.bin", b"data")
    assert s.read_bytes("x/y.bin") == b"data"
    assert s.list("x") == ["y.bin"]


def test_artifacts_are_content_addressed_and_checked(tmp_path: Path) -> None:
    artifacts = ArtifactStore(store(tmp_path, "artifacts"))
    digest = artifacts.put(b"model bytes")
    assert digest == hashlib.sha256(b"model bytes").hexdigest()
    assert artifacts.put(b"model bytes") == digest
    assert artifacts.get(digest) == b"model bytes"
    path = tmp_path / "artifacts" / "sha256" / digest[:2] / digest
    path.write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="corrupt"):
        artifacts.get(digest)
    with pytest.raises(StorageError):
        artifacts.get("not-a-digest")


def test_an_artifacts_size_is_read_without_reading_it(tmp_path: Path) -> None:
    artifacts = ArtifactStore(store(tmp_path, "artifacts"))
    digest = artifacts.put(b"x" * 1234)
    assert artifacts.size(digest) == 1234
    with pytest.raises(OSError):
        artifacts.size(hashlib.sha256(b"never stored").hexdigest())
    with pytest.raises(StorageError):
        artifacts.size("not-a-digest")
