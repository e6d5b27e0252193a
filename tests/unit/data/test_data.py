"""Data: what is given to ingest is checked for what it is before anything is registered."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from loopml import Project
from loopml.cli import main
from loopml.errors import ReadError

# The start of a PNG image: binary, with NUL bytes, and not UTF-8.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)) * 16


def test_a_binary_file_into_a_new_source_is_refused_and_creates_nothing(
    make_project: Callable[..., Project], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17.8: a binary file named .csv gave a traceback and left the new source
    registered, empty, with no schema."""
    p = make_project("project: t\n")
    (tmp_path / "img.csv").write_bytes(PNG)
    with pytest.raises(ReadError, match=r"img\.csv.*binary.*not CSV.*'img' was not created"):
        p.data.ingest("img", [tmp_path / "img.csv"])
    assert [s["source"] for s in p.data.sources()] == []
    assert p.data.batches(status=None) == []

    code = main(["ingest", "img", str(tmp_path / "img.csv"), "--project", str(p.root)])
    err = capsys.readouterr().err
    assert code == 2 and "binary" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert [s["source"] for s in p.data.sources()] == []


def test_a_binary_file_into_a_known_source_is_held_whole_as_unreadable(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project("project: t\n")
    (tmp_path / "a.csv").write_text("k,v\n" + "".join(f"k{i},{i}\n" for i in range(50)))
    p.data.ingest("s", [tmp_path / "a.csv"])
    (tmp_path / "img.csv").write_bytes(PNG)
    (r,) = p.data.ingest("s", [tmp_path / "img.csv"])
    assert r.status == "held" and [b["code"] for b in r.batch_reasons] == ["unreadable"]
    assert "binary" in r.batch_reasons[0]["message"]


@pytest.mark.parametrize(
    ("kind", "make", "says"),
    [
        ("fifo", lambda p: os.mkfifo(p), "is a FIFO (named pipe), not a regular file"),
        ("directory", lambda p: p.mkdir(), "is a directory, not a file"),
        ("device", None, "is a character device, not a regular file"),
        ("symlink loop", lambda p: p.symlink_to(p), "symbolic link"),
        ("missing", lambda p: None, "no such file"),
    ],
)
def test_what_is_not_a_regular_file_is_named_for_what_it_is(
    make_project: Callable[..., Project],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    make: Callable[[Path], object] | None,
    says: str,
) -> None:
    """Issue 17.8: a FIFO, a folder or a device was reported as "no such file"."""
    p = make_project("project: t\n")
    path = Path("/dev/null") if make is None else tmp_path / "in.csv"
    if make is not None:
        make(path)
    with pytest.raises(ReadError, match=re.escape(says)):
        p.data.ingest("s", [path])
    code = main(["ingest", "s", str(path), "--project", str(p.root)])
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert [s["source"] for s in p.data.sources()] == []


def test_a_stray_nul_byte_does_not_make_a_text_file_binary(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project("project: t\n")
    rows = "".join(f"k{i},{i}\n" for i in range(50)).replace("k7,", "k\x007,")
    (tmp_path / "a.csv").write_text("k,v\n" + rows)
    (r,) = p.data.ingest("s", [tmp_path / "a.csv"])
    assert r.status == "landed" and r.rows_read == 50
