"""Inflating gzip input within bounds: a small file must not become gigabytes in memory.

A 1 MB gzip file can hold 1 GiB of zeros (deflate compresses up to about 1000:1). The input is
inflated a megabyte at a time and stopped as soon as its content passes ``gzip.max_bytes``, or
passes :data:`RATIO_FROM` bytes while inflating more than ``gzip.max_ratio`` times the
compressed bytes read so far (real text compresses 3 to 20 times, repetitive data rarely more
than 100). Memory stays at the content's size, never the bomb's.
"""

from __future__ import annotations

import zlib

import pyarrow as pa

from loopml.spec import GzipSpec

RATIO_FROM = 64 << 20  # below this, any ratio is harmless
_IN = 1 << 20  # compressed bytes fed at a time
_OUT = 4 << 20  # inflated bytes produced at a time


class InflateLimit(Exception):
    """The content would exceed a limit of ``gzip``; the message says which and by how much."""


def inflate(data: pa.Buffer | bytes, limits: GzipSpec, *, head: int | None = None) -> pa.Buffer:
    """The content of gzip ``data`` (every member of a multi-member file), or only its first
    ``head`` bytes (a sample: the rest is never inflated).

    Raises :class:`InflateLimit` when a limit is passed, ``OSError`` when ``data`` is not gzip
    or is cut short.
    """
    src = memoryview(data)
    out = bytearray()
    pos = 0
    while True:  # one gzip member per pass
        member = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        pending = b""
        while not member.eof:
            if not pending:
                if pos >= len(src):
                    raise OSError("the gzip file is cut short (its end is missing)")
                pending, pos = bytes(src[pos : pos + _IN]), pos + _IN
            try:
                out += member.decompress(pending, _OUT)
            except zlib.error as exc:
                raise OSError(f"not a valid gzip file ({exc})") from None
            pending = member.unconsumed_tail
            if head is not None and len(out) >= head:
                return pa.py_buffer(out).slice(0, head)  # no copy
            read = min(pos, len(src)) - len(pending) - len(member.unused_data)
            _check(len(out), read, limits)
        rest = member.unused_data + bytes(src[pos:])
        if not rest.strip(b"\x00"):  # the end, or the zero padding some writers add
            return pa.py_buffer(out)
        if not rest.startswith(b"\x1f\x8b"):
            raise OSError("not a valid gzip file (data after its end)")
        src, pos = memoryview(rest), 0


def _check(size: int, read: int, limits: GzipSpec) -> None:
    if size > limits.max_bytes:
        raise InflateLimit(
            f"the gzip content is larger than gzip.max_bytes ({_mib(limits.max_bytes)}); "
            "raise sources.NAME.gzip.max_bytes if the file is genuine"
        )
    if size > RATIO_FROM and size > limits.max_ratio * max(read, 1):
        raise InflateLimit(
            f"the gzip content grows more than gzip.max_ratio ({limits.max_ratio:g}) times "
            f"its compressed size ({_mib(size)} from {_mib(read)} read so far): a decompression "
            "bomb, or data that is almost all repetition; raise sources.NAME.gzip.max_ratio "
            "if the file is genuine"
        )


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB" if n < 1 << 30 else f"{n / (1 << 30):,.1f} GiB"
