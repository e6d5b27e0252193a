"""Where each row of a text file is: line numbers and original text, found only when needed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa


@dataclass
class LineIndex:
    """The lines of a text buffer (LF or CRLF), computed lazily with numpy.

    ``data_lines`` are the 0-based indices of lines that hold records: not the header, not
    blank. Records the reader rejected (wrong field count, bad JSON) are removed with
    :meth:`exclude`, leaving ``row_lines``: the line of each row of the parsed table, in order.
    """

    buf: pa.Buffer
    header_lines: int
    encoding: str = "utf-8"
    _starts: np.ndarray = field(init=False)
    _ends: np.ndarray = field(init=False)
    _excluded: np.ndarray | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        data = np.frombuffer(self.buf, dtype=np.uint8)
        newlines = np.flatnonzero(data == 10)
        starts = np.concatenate(([0], newlines + 1))
        ends = np.concatenate((newlines, [len(data)]))
        if len(starts) and starts[-1] == len(data):  # the file ends with a newline
            starts, ends = starts[:-1], ends[:-1]
        # Drop a trailing carriage return from each line (CRLF files).
        if len(ends):
            cr = np.zeros(len(ends), dtype=bool)
            nonempty = ends > starts
            cr[nonempty] = data[ends[nonempty] - 1] == 13
            ends = ends - cr
        self._starts, self._ends = starts, ends

    @property
    def n_lines(self) -> int:
        return len(self._starts)

    def data_lines(self) -> np.ndarray:
        idx = np.flatnonzero(self._ends > self._starts)
        return idx[idx >= self.header_lines]

    def raw(self, line: int) -> bytes:
        return self.buf[int(self._starts[line]) : int(self._ends[line])].to_pybytes()

    def undecodable(self) -> np.ndarray:
        """The data lines whose bytes are not valid UTF-8 (the lines viewed as one Arrow string
        array, no copy, and checked by Arrow)."""
        from loopml.data._coerce import invalid_utf8

        data = self.data_lines()
        if not len(data):
            return data
        # Each value runs from a line's start to the next one's (its newline included).
        bounds = np.append(self._starts, len(self.buf)).astype(np.int64)
        text = pa.Array.from_buffers(
            pa.large_string(), self.n_lines, [None, pa.py_buffer(bounds), self.buf]
        )
        bad = invalid_utf8(text)
        return bad[np.isin(bad, data)]

    def drop(self, lines: np.ndarray) -> pa.Buffer:
        """The buffer without ``lines`` (each with its newline): what a reader parses again."""
        data = np.frombuffer(self.buf, dtype=np.uint8)
        keep = np.ones(len(data), dtype=bool)
        bounds = np.append(self._starts, len(data))
        for line in lines:
            keep[bounds[int(line)] : bounds[int(line) + 1]] = False
        return pa.py_buffer(data[keep].tobytes())

    def text(self, line: int) -> str:
        raw = self.buf[int(self._starts[line]) : int(self._ends[line])].to_pybytes()
        return raw.decode(self.encoding, "backslashreplace")

    def find(self, texts: list[str]) -> np.ndarray:
        """Indices of the data lines whose text is one of ``texts``."""
        wanted = {t.rstrip("\r") for t in texts}
        lengths = {len(t.encode("utf-8", "surrogateescape")) for t in wanted}
        data = self.data_lines()
        lens = self._ends[data] - self._starts[data]
        candidates = data[np.isin(lens, list(lengths))]
        return np.array([i for i in candidates if self.text(int(i)) in wanted], dtype=np.int64)

    def exclude(self, lines: np.ndarray) -> None:
        self._excluded = np.asarray(lines, dtype=np.int64)

    def row_lines(self) -> np.ndarray:
        """The 0-based line index of each parsed row."""
        data = self.data_lines()
        if self._excluded is not None and len(self._excluded):
            data = data[~np.isin(data, self._excluded)]
        return data

    def header(self) -> str:
        return self.text(0) if self.header_lines and self.n_lines else ""

    def record_ordinal(self, lines: np.ndarray) -> np.ndarray:
        """The 1-based record number (data lines counted, blank lines not) of each line."""
        data = self.data_lines()
        return np.searchsorted(data, lines) + 1
