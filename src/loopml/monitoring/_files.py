"""Feedback files: CSV (also gzip), JSON Lines or Parquet, read into rows with line numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from loopml.errors import ReadError, UsageError


def read_rows(path: Path) -> tuple[list[Any], int]:
    """The file's rows and the line number of the first one (for messages)."""
    if not path.exists():
        raise UsageError(f"{path}: no such file", details={"file": str(path)})
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist(), 1
        if name.endswith((".jsonl", ".ndjson", ".json")):
            return _json_lines(path), 1
        if name.endswith((".csv", ".csv.gz")):
            import pyarrow.csv as pcsv

            return pcsv.read_csv(path).to_pylist(), 2
    except (pa.ArrowInvalid, OSError) as exc:
        raise ReadError(f"{path}: cannot read it: {exc}", details={"file": str(path)}) from exc
    raise UsageError(
        f"{path}: unknown format; feedback files are .csv, .csv.gz, .jsonl or .parquet",
        details={"file": str(path)},
    )


def _json_lines(path: Path) -> list[Any]:
    rows: list[Any] = []
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                rows.append(None)  # kept so that row numbers stay line numbers
                continue
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                rows.append({"__unreadable__": f"line {n} is not JSON: {exc}"})
    return rows
