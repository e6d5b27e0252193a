"""The metadata contract on the real PostgreSQL server (127.0.0.1:5432, database test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loopml import Project
from loopml.errors import BackendUnavailable, ReadError
from loopml.spec import PostgresConfig
from loopml.storage import SqlMetadataStore, open_metadata
from loopml.testing import MetadataStoreContract

pytestmark = pytest.mark.postgres


class TestPostgresMetadata(MetadataStoreContract):
    @pytest.fixture
    def store(self, postgres_schema: tuple[str, str]) -> Iterator[SqlMetadataStore]:
        url, schema = postgres_schema
        s = open_metadata(PostgresConfig(url=url, schema=schema), root=None)  # type: ignore[arg-type]
        yield s
        s.close()

    @pytest.fixture
    def reopen(self, postgres_schema: tuple[str, str]) -> Callable[[], SqlMetadataStore]:
        url, schema = postgres_schema
        return lambda: open_metadata(PostgresConfig(url=url, schema=schema), root=None)  # type: ignore[arg-type]


def test_tables_live_in_the_configured_schema(postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    s = open_metadata(PostgresConfig(url=url, schema=schema), root=None)  # type: ignore[arg-type]
    with s.read() as conn:
        tables = (
            conn.exec_driver_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %(s)s",
                {"s": schema},
            )
            .scalars()
            .all()
        )
    s.close()
    assert {"batches", "quarantine", "schemas", "sources", "snapshots"} <= set(tables)


def test_unreachable_server_is_a_clear_error() -> None:
    config = PostgresConfig(url="postgresql://127.0.0.1:1/none", schema="x")
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1"):
        open_metadata(config, root=None)  # type: ignore[arg-type]


def test_concurrent_ingests_of_the_same_keys_land_them_once(
    postgres_schema: tuple[str, str], tmp_path: Path
) -> None:
    """The ingest race of tests/unit/data/test_ingest.py with the metadata in PostgreSQL."""
    from tests.conftest import FLIGHTS_SPEC
    from tests.helpers import check_race, ingest_race

    url, schema = postgres_schema
    try:
        for trial in range(3):  # unserialized, most trials land both files
            metadata = f"{url}?schema={schema}_{trial}"
            spec = FLIGHTS_SPEC.replace("{extra}", f"storage:\n  metadata: {metadata}\n")
            root = tmp_path / f"p{trial}"
            check_race(root, ingest_race(root, spec))
    finally:
        for trial in range(3):
            s = open_metadata(PostgresConfig(url=url, schema=f"{schema}_{trial}"), root=None)  # type: ignore[arg-type]
            s.drop()  # type: ignore[attr-defined]
            s.close()


def test_a_refused_new_source_leaves_nothing_on_postgres(
    postgres_schema: tuple[str, str], tmp_path: Path
) -> None:
    """Issue 17.8 on the server backend: the source a refused first file would have made is
    unregistered with its aborted batch (foreign keys and all)."""
    url, schema = postgres_schema
    (tmp_path / "loopml.yaml").write_text(
        f"project: t\nstorage:\n  metadata: {{type: postgres, url: '{url}', schema: {schema}}}\n"
    )
    (tmp_path / "img.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
    (tmp_path / "ok.csv").write_text("k,v\n" + "".join(f"k{i},{i}\n" for i in range(30)))
    with Project.open(tmp_path) as p:
        with pytest.raises(ReadError, match="binary"):
            p.data.ingest("img", [tmp_path / "img.csv"])
        assert p.data.sources() == [] and p.data.batches(status=None) == []
        (r,) = p.data.ingest("img", [tmp_path / "ok.csv"])  # the name is free again
        assert r.status == "landed"
