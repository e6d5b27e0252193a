"""Identifiers that sort by creation time and never collide across processes."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def new_id(prefix: str) -> str:
    """A new id such as ``b_01jdx3k9q4s7mzv2r8ta0e6n5c``: 48 bits of milliseconds, then 80 random
    bits, so that ids sort by creation time (like ULIDs).

    >>> a, b = new_id("b"), new_id("b")
    >>> a[:2], len(a), a != b
    ('b_', 28, True)
    """
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return f"{prefix}_{''.join(reversed(chars))}"
