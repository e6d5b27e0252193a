"""Sampling a file for `loopml init --from`: only the sample of a gzip file is inflated."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from loopml.draft._sample import SAMPLE_BYTES, read_sample
from loopml.errors import ReadError
from tests.unit.data.test_inflate import bomb


def test_a_gzip_bomb_is_sampled_not_inflated(tmp_path: Path) -> None:
    """Issue 17.7: the whole content was inflated (twice: bytes, then a copy) before sampling."""
    path = bomb(tmp_path / "b.csv.gz", 256 << 20)
    tracemalloc.start()
    try:
        sample = read_sample(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sample.sampled and sample.table.column_names == ["v"]
    assert peak < SAMPLE_BYTES + (32 << 20), f"{peak / (1 << 20):.0f} MiB"


def test_a_fifo_is_named(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "f.csv")
    with pytest.raises(ReadError, match="is a FIFO"):
        read_sample(tmp_path / "f.csv")
