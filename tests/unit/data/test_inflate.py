"""Gzip input is inflated within bounds: a decompression bomb is held, never held in memory."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from loopml import Project
from loopml.data._inflate import InflateLimit, inflate
from loopml.errors import ReadError
from loopml.spec import GzipSpec


def bomb(path: Path, size: int) -> Path:
    """A CSV of ``size`` bytes of ``1`` lines, gzipped (about 1000:1), written a chunk at a time."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"1\n" * (1 << 19)
    with path.open("wb") as f:
        f.write(z.compress(b"v\n"))
        for _ in range(size // len(chunk)):
            f.write(z.compress(chunk))
        f.write(z.flush())
    return path


def test_a_gzip_bomb_is_held_whole_without_being_inflated(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    """Issue 17.7: a small gzip that inflates to 1 GiB was decompressed whole in memory."""
    p = make_project("project: t\n")
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(b"v\n" + b"1\n2\n" * 100))
    (first,) = p.data.ingest("s", [tmp_path / "a.csv.gz"])
    assert first.status == "landed"
    path = bomb(tmp_path / "b.csv.gz", 256 << 20)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        (r,) = p.data.ingest("s", [path])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status == "held" and [b["code"] for b in r.batch_reasons] == ["unreadable"]
    assert "gzip.max_ratio (200)" in r.batch_reasons[0]["message"]
    assert peak < 100 << 20, f"{peak / (1 << 20):.0f} MiB"  # 64 MiB, not 256
    # Released, it is bounded the same way: it stays held, with the reason.
    with pytest.raises(ReadError, match=r"gzip\.max_ratio"):
        p.data.quarantine.release(r.quarantine_id, by="t")  # type: ignore[arg-type]


def test_the_bounds_are_a_setting_and_a_new_source_is_not_made_by_a_bomb(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    spec = "project: t\nsources:\n  s:\n    format: csv\n    gzip: {max_bytes: 1048576}\n"
    p = make_project(spec)
    text = b"v\n" + b"".join(b"%d\n" % i for i in range(300_000))  # 2 MB, 4:1
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(text))
    (r,) = p.data.ingest("s", [tmp_path / "a.csv.gz"])
    assert r.status == "held" and "gzip.max_bytes (1.0 MiB)" in r.batch_reasons[0]["message"]
    with pytest.raises(ReadError, match=r"gzip\.max_ratio.*'new' was not created"):
        p.data.ingest("new", [bomb(tmp_path / "b.csv.gz", 128 << 20)])
    assert "new" not in [s["source"] for s in p.data.sources()]


def test_inflate_reads_every_member_and_refuses_what_is_not_gzip() -> None:
    limits = GzipSpec()
    two = gzip.compress(b"a\n1\n") + gzip.compress(b"2\n") + b"\x00" * 8
    assert inflate(two, limits).to_pybytes() == b"a\n1\n2\n"
    with pytest.raises(OSError, match="cut short"):
        inflate(gzip.compress(b"a\n" * 1000)[:-20], limits)
    with pytest.raises(OSError, match="not a valid gzip"):
        inflate(b"plain text", limits)
    with pytest.raises(OSError, match="data after its end"):
        inflate(gzip.compress(b"a\n") + b"junk", limits)
    with pytest.raises(InflateLimit, match="max_bytes"):
        inflate(gzip.compress(b"x" * (2 << 20)), GzipSpec(max_bytes=1 << 20))


@pytest.mark.parametrize(("field", "value"), [("max_bytes", 10), ("max_ratio", 1e999)])
def test_the_bounds_are_bounded(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        GzipSpec(**{field: value})
