"""The lake and artifact roles: a folder on any fsspec filesystem, written atomically.

A file appears whole or not at all: it is written under a temporary name in the same folder,
flushed to disk (``fsync`` on local disks), then renamed; on object stores a single ``put`` is
already atomic.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import fsspec
from fsspec.implementations.local import LocalFileSystem

from loopml.errors import IntegrityError, NotFoundError, StorageError
from loopml.spec import FilesConfig

TMP_PREFIX = ".tmp-"


@runtime_checkable
class ByteStore(Protocol):
    """The part of a file store that whole files of bytes need: what :class:`ArtifactStore`
    and serving's small files use. :class:`FileStore` is one; ``loopml.testing.MemoryFileStore``
    is another, for tests without a disk.

    Paths are relative and ``/``-separated; one outside the store raises :class:`StorageError`.
    A write replaces the whole file at once, a read of a missing file raises
    :class:`NotFoundError`.
    """

    url: str

    def exists(self, rel: str) -> bool: ...

    def size(self, rel: str) -> int: ...

    def read_bytes(self, rel: str) -> bytes: ...

    def write_bytes(self, rel: str, data: bytes) -> None: ...

    def delete(self, rel: str, *, recursive: bool = False) -> None:
        """Delete a file, or a folder with ``recursive``; a missing one is not an error."""
        ...

    def list(self, rel: str = "") -> list[str]:
        """Names directly inside ``rel`` (empty when it does not exist)."""
        ...


class FileStore:
    """A folder of files addressed by relative, ``/``-separated paths."""

    def __init__(self, config: FilesConfig, *, root: Path) -> None:
        url = config.url
        protocol = fsspec.utils.get_protocol(url)
        self.fs: fsspec.AbstractFileSystem = fsspec.filesystem(protocol, **config.options)
        self.is_local = isinstance(self.fs, LocalFileSystem)
        if self.is_local:
            path = Path(fsspec.utils.strip_protocol(url) if "://" in url else url)
            self.base = str(path if path.is_absolute() else (root / path).resolve())
            Path(self.base).mkdir(parents=True, exist_ok=True)
        else:
            self.base = self.fs._strip_protocol(url).rstrip("/")
        self.url = url if not self.is_local else self.base

    def path(self, rel: str) -> str:
        """The full path of ``rel`` on this store's filesystem."""
        if rel.startswith("/") or ".." in rel.split("/"):
            raise StorageError(f"refusing path {rel!r} outside the store {self.url}")
        return posixpath.join(self.base, rel) if rel else self.base

    def uri(self, rel: str) -> str:
        """A URL for ``rel`` that DuckDB or Arrow can open."""
        full = self.path(rel)
        if self.is_local:
            return full
        return f"{self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]}://{full}"

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.path(rel)))

    def size(self, rel: str) -> int:
        return int(self.fs.size(self.path(rel)))

    def read_bytes(self, rel: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self.path(rel)))
        except FileNotFoundError:
            raise NotFoundError(f"no file {rel!r} in {self.url}") from None

    @contextmanager
    def open_read(self, rel: str) -> Iterator[IO[bytes]]:
        try:
            f = self.fs.open(self.path(rel), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"no file {rel!r} in {self.url}") from None
        with f:
            yield f

    def write_atomic(self, rel: str, write: Callable[[str], None]) -> None:
        """Have ``write(path)`` write a temporary file, then move it to ``rel`` atomically.

        ``write`` receives a path on this store's filesystem (for local stores, an OS path that
        Arrow or any library can write to).
        """
        final = self.path(rel)
        folder, name = posixpath.split(final)
        tmp = posixpath.join(folder, f"{TMP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}-{name}")
        self.fs.makedirs(folder, exist_ok=True)
        try:
            write(tmp)
            if self.is_local:
                _fsync(tmp)
                os.replace(tmp, final)
                _fsync(folder)
            else:
                self.fs.mv(tmp, final)
        except BaseException:
            self._remove_quietly(tmp)
            raise

    def write_bytes(self, rel: str, data: bytes) -> None:
        def write(path: str) -> None:
            with self.fs.open(path, "wb") as f:
                f.write(data)

        self.write_atomic(rel, write)

    def delete(self, rel: str, *, recursive: bool = False) -> None:
        """Delete a file or folder; a missing one is not an error (deletes are retried)."""
        full = self.path(rel)
        if self.fs.exists(full):
            self.fs.rm(full, recursive=recursive)

    def list(self, rel: str = "") -> list[str]:
        """Names directly inside ``rel`` (empty when it does not exist)."""
        full = self.path(rel)
        if not self.fs.exists(full):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(full, detail=False))

    def _remove_quietly(self, full: str) -> None:
        try:
            if self.fs.exists(full):
                self.fs.rm(full)
        except OSError:
            pass


class ArtifactStore:
    """Content-addressed files: stored under their SHA-256, checked on every read."""

    def __init__(self, files: ByteStore) -> None:
        self.files = files

    @staticmethod
    def _rel(digest: str) -> str:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise StorageError(f"{digest!r} is not a SHA-256 hex digest")
        return f"sha256/{digest[:2]}/{digest}"

    def put(self, data: bytes) -> str:
        """Store ``data`` (a no-op if it is already there) and return its SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        rel = self._rel(digest)
        if not self.files.exists(rel):
            self.files.write_bytes(rel, data)
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes stored under ``digest``; :class:`IntegrityError` if they do not match it."""
        data = self.files.read_bytes(self._rel(digest))
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise IntegrityError(
                f"artifact {digest} is corrupt: its bytes hash to {actual}",
                details={"expected": digest, "actual": actual},
            )
        return data

    def exists(self, digest: str) -> bool:
        return self.files.exists(self._rel(digest))

    def size(self, digest: str) -> int:
        """The size in bytes of the file stored under ``digest`` (not read, not checked)."""
        return self.files.size(self._rel(digest))


def _fsync(path: str) -> None:
    """Flush a file, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str | Path, *, chunk: int = 1 << 22) -> str:
    """SHA-256 of a local file, read in chunks (the GIL is released while hashing)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_identity(path: str | Path) -> dict[str, Any]:
    """Size and modification time, to tell whether a file changed since it was hashed."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
