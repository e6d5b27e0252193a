"""The contract every file store passes, and an in-memory file store for users' tests.

Subclass the contract in a test module and provide a ``files`` fixture returning a fresh, empty
store::

    class TestMyFiles(FileStoreContract):
        @pytest.fixture
        def files(self): ...

>>> from loopml.storage import ArtifactStore
>>> artifacts = ArtifactStore(MemoryFileStore())
>>> digest = artifacts.put(b"model bytes")
>>> artifacts.get(digest)
b'model bytes'
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from loopml.errors import IntegrityError, NotFoundError, StorageError
from loopml.storage import ArtifactStore, ByteStore


class MemoryFileStore:
    """A :class:`~loopml.storage.ByteStore` in this process's memory: the bytes of each file in a
    dict by its relative path, so ``ArtifactStore(MemoryFileStore())`` stores artifacts without
    a disk. A write replaces a whole file at once (under one lock), as the real store's rename
    does."""

    def __init__(self) -> None:
        self.url = "memory"
        self._lock = threading.Lock()
        self._files: dict[str, bytes] = {}

    @staticmethod
    def _key(rel: str) -> str:
        parts = rel.split("/")
        if rel.startswith("/") or ".." in parts:
            raise StorageError(f"refusing path {rel!r} outside the store memory")
        return "/".join(p for p in parts if p)

    def exists(self, rel: str) -> bool:
        key = self._key(rel)
        with self._lock:
            return not key or key in self._files or any(self._under(key))

    def size(self, rel: str) -> int:
        return len(self.read_bytes(rel))

    def read_bytes(self, rel: str) -> bytes:
        key = self._key(rel)
        with self._lock:
            data = self._files.get(key)
        if data is None:
            raise NotFoundError(f"no file {rel!r} in {self.url}")
        return data

    def write_bytes(self, rel: str, data: bytes) -> None:
        key = self._key(rel)
        if not key:
            raise StorageError("refusing to write a file at the root of the store memory")
        data = bytes(data)  # a copy: a caller's bytearray changed later changes nothing here
        with self._lock:
            self._files[key] = data

    def delete(self, rel: str, *, recursive: bool = False) -> None:
        """Delete a file, or a folder with ``recursive``; a missing one is not an error."""
        key = self._key(rel)
        with self._lock:
            if self._files.pop(key, None) is not None:
                return
            inside = list(self._under(key))
            if inside and not recursive:
                raise StorageError(f"{rel!r} in {self.url} is a folder: delete it with recursive")
            for name in inside:
                del self._files[name]

    def list(self, rel: str = "") -> list[str]:
        """Names directly inside ``rel`` (empty when it does not exist)."""
        key = self._key(rel)
        with self._lock:
            if key in self._files:
                return [key.rsplit("/", 1)[-1]]
            start = len(key) + 1 if key else 0
            return sorted({name[start:].split("/", 1)[0] for name in self._under(key)})

    def _under(self, key: str) -> Iterator[str]:
        prefix = f"{key}/" if key else ""
        return (name for name in self._files if name.startswith(prefix))


def _raises(exc: type[BaseException], fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except exc as caught:
        return caught
    raise AssertionError(f"expected {exc.__name__}")


class FileStoreContract:
    """Behaviour every file store shows (the local folder, any fsspec filesystem, memory)."""

    def test_a_file_reads_back_whole(self, files: ByteStore) -> None:
        files.write_bytes("a/b.bin", bytes(range(256)) * 4)
        assert files.exists("a/b.bin") and files.size("a/b.bin") == 1024
        assert files.read_bytes("a/b.bin") == bytes(range(256)) * 4
        files.write_bytes("a/b.bin", b"short")  # a rewrite replaces the file, tail included
        assert files.read_bytes("a/b.bin") == b"short" and files.size("a/b.bin") == 5
        files.write_bytes("empty", b"")
        assert files.exists("empty") and files.read_bytes("empty") == b""

    def test_a_missing_file_is_not_found(self, files: ByteStore) -> None:
        assert not files.exists("nope/x.bin")
        error = _raises(NotFoundError, lambda: files.read_bytes("nope/x.bin"))
        assert "nope/x.bin" in str(error)

    def test_paths_outside_the_store_are_refused(self, files: ByteStore) -> None:
        for rel in ("../escape", "a/../../escape", "/etc/passwd"):
            _raises(StorageError, functools.partial(files.write_bytes, rel, b"x"))
            _raises(StorageError, functools.partial(files.read_bytes, rel))

    def test_list_names_what_is_directly_inside(self, files: ByteStore) -> None:
        for rel in ("a/x.bin", "a/y.bin", "a/sub/z.bin", "b.bin"):
            files.write_bytes(rel, rel.encode())
        assert files.list("a") == ["sub", "x.bin", "y.bin"]
        assert files.list("a/sub") == ["z.bin"]
        assert files.list("") == ["a", "b.bin"]
        assert files.list("missing") == []
        assert files.exists("a") and files.exists("a/sub")

    def test_delete(self, files: ByteStore) -> None:
        for rel in ("a/x.bin", "a/sub/z.bin", "keep.bin"):
            files.write_bytes(rel, b"x")
        files.delete("a/x.bin")
        assert not files.exists("a/x.bin") and files.list("a") == ["sub"]
        files.delete("a/x.bin")  # a missing file is not an error: deletes are retried
        files.delete("a", recursive=True)
        assert not files.exists("a") and not files.exists("a/sub/z.bin")
        assert files.list("") == ["keep.bin"] and files.read_bytes("keep.bin") == b"x"

    def test_a_reader_never_sees_half_a_write(self, files: ByteStore) -> None:
        payloads = [bytes([i]) * 200_000 for i in range(4)]
        files.write_bytes("f.bin", payloads[0])
        seen: list[bytes] = []
        errors: list[BaseException] = []

        def write(data: bytes) -> None:
            try:
                for _ in range(10):
                    files.write_bytes("f.bin", data)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        writers = [threading.Thread(target=write, args=(p,)) for p in payloads]
        for th in writers:
            th.start()
        while True:
            seen.append(files.read_bytes("f.bin"))
            if not any(th.is_alive() for th in writers):
                break
        for th in writers:
            th.join()
        assert not errors, errors
        assert seen and all(data in payloads for data in seen)

    def test_artifacts_are_content_addressed_and_checked(self, files: ByteStore) -> None:
        artifacts = ArtifactStore(files)
        digest = artifacts.put(b"model bytes")
        assert digest == hashlib.sha256(b"model bytes").hexdigest()
        assert artifacts.put(b"model bytes") == digest and artifacts.exists(digest)
        assert artifacts.get(digest) == b"model bytes"
        rel = ArtifactStore._rel(digest)
        files.write_bytes(rel, b"model bytez")
        error = _raises(IntegrityError, lambda: artifacts.get(digest))
        assert isinstance(error, IntegrityError) and error.details["expected"] == digest
        missing = hashlib.sha256(b"never stored").hexdigest()
        assert not artifacts.exists(missing)
        _raises(NotFoundError, lambda: artifacts.get(missing))
