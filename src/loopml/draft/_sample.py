"""Reading a sample file as ingestion will, and naming its columns so features can use them."""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from loopml.data import (
    InflateLimit,
    Unreadable,
    check_regular_file,
    format_of,
    inflate,
    open_buffer,
    read_buffer,
)
from loopml.errors import ReadError, UsageError
from loopml.spec import NAME_PATTERN, CsvOptions, GzipSpec

SAMPLE_BYTES = 64 << 20  # a larger text file is sampled from its start


@dataclass
class Sample:
    table: pa.Table
    fmt: str
    csv: CsvOptions
    renamed: dict[str, str]  # original name -> name used (CSV columns only)
    sampled: bool


def source_name(path: Path) -> str:
    stem = path.name.lower()
    for suffix in (".gz", ".csv", ".tsv", ".txt", ".parquet", ".pq", ".jsonl", ".ndjson", ".json"):
        stem = stem.removesuffix(suffix)
    name = re.sub(r"[^a-z0-9_]+", "_", stem).strip("_") or "data"
    return name if name[0].isalpha() else f"data_{name}"


def read_sample(path: Path) -> Sample:
    fmt = format_of(str(path))
    if fmt is None:
        raise UsageError(
            f"cannot tell the format of {path}: name it .csv, .tsv, .parquet or .jsonl"
        )
    check_regular_file(str(path))
    raw = open_buffer(str(path))
    buf = raw
    if path.name.endswith(".gz"):
        # Only the sample is inflated: a small file may hold gigabytes.
        try:
            buf = inflate(raw, GzipSpec(), head=None if fmt == "parquet" else SAMPLE_BYTES + 1)
        except (InflateLimit, OSError) as exc:
            raise ReadError(f"{path}: {exc}", details={"file": str(path)}) from None
    sampled = False
    if fmt != "parquet" and buf.size > SAMPLE_BYTES:
        # Cut after the last whole line (looked for near the end: no copy of the sample).
        tail = max(SAMPLE_BYTES - (1 << 20), 0)
        cut = buf.slice(tail, SAMPLE_BYTES - tail).to_pybytes().rfind(b"\n")
        if cut < 0:
            cut = buf.slice(0, SAMPLE_BYTES).to_pybytes().rfind(b"\n") - tail
        buf, sampled = buf.slice(0, tail + cut + 1), True
    tsv = path.name.lower().removesuffix(".gz").endswith(".tsv")
    csv = CsvOptions(delimiter="\t" if tsv else ",")
    try:
        table = read_buffer(buf, fmt, None, csv).table
    except Unreadable as exc:
        raise ReadError(f"{path}: {exc}", details={"file": str(path)}) from None
    renamed: dict[str, str] = {}
    if fmt == "csv":
        names = _feature_names(table.column_names)
        renamed = {
            old: new for old, new in zip(table.column_names, names, strict=True) if old != new
        }
        if renamed:
            csv = csv.model_copy(update={"column_names": names})
            table = table.rename_columns(names)
    return Sample(table, fmt, csv, renamed, sampled)


def _feature_names(names: list[str]) -> list[str]:
    """Names usable as feature names: an unnamed first column is a row number (``row_id``);
    others lose the characters a name cannot hold."""
    out: list[str] = []
    for i, n in enumerate(names):
        if re.match(NAME_PATTERN, n):
            new = n
        elif not n.strip():
            new = "row_id" if i == 0 else f"column_{i + 1}"
        else:
            new = re.sub(r"[^A-Za-z0-9_]+", "_", n.strip()).strip("_") or f"column_{i + 1}"
            if not re.match(r"[A-Za-z_]", new):
                new = f"c_{new}"
        while new in out or (new != n and new in names):
            new += "_"
        out.append(new[:63])
    return out


def same_columns(a: Path, b: Path, fmt: str) -> bool:
    """Whether two files of a format hold the same columns (a CSV's header line, a JSON Lines
    file's first keys, a Parquet file's schema)."""
    if a == b:
        return True
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return bool(pq.read_schema(a).names == pq.read_schema(b).names)
        opener = gzip.open if a.name.endswith(".gz") else open
        with opener(a, "rb") as fa, opener(b, "rb") as fb:
            first_a, first_b = fa.readline(), fb.readline()
        if fmt == "jsonl":
            return list(json.loads(first_a)) == list(json.loads(first_b))
        return first_a.rstrip(b"\r\n") == first_b.rstrip(b"\r\n")
    except (OSError, ValueError, pa.ArrowInvalid):
        return False
