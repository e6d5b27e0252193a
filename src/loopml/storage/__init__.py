"""Storage roles (DESIGN.md): each a small protocol with an embedded default and a production
backend, chosen by the URL in ``loopml.yaml``.

>>> from pathlib import Path; import tempfile
>>> from loopml.spec import SQLiteConfig
>>> store = open_metadata(SQLiteConfig(path="m.db"), root=Path(tempfile.mkdtemp()))
>>> store.dialect
'sqlite'
"""

from __future__ import annotations

from pathlib import Path

from loopml.spec import MetadataConfig, PostgresConfig, SQLiteConfig
from loopml.storage import _tables as tables
from loopml.storage._files import ArtifactStore, FileStore, sha256_file
from loopml.storage._ids import new_id
from loopml.storage._metadata import MetadataStore, SqlMetadataStore


def open_metadata(config: MetadataConfig, *, root: Path) -> SqlMetadataStore:
    """Open (and create if needed) the metadata store a config names."""
    if isinstance(config, SQLiteConfig):
        from loopml.storage._sqlite import SQLiteMetadataStore

        return SQLiteMetadataStore(config, root=root)
    if isinstance(config, PostgresConfig):
        from loopml.storage._postgres import PostgresMetadataStore

        return PostgresMetadataStore(config)
    raise TypeError(f"unknown metadata config {config!r}")


__all__ = [
    "ArtifactStore",
    "FileStore",
    "MetadataStore",
    "SqlMetadataStore",
    "new_id",
    "open_metadata",
    "sha256_file",
    "tables",
]
