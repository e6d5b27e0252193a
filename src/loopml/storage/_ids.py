"""Identifiers that sort by creation time and never collide across processes."""

from __future__ import annotations

import base64
import os
import time

# RFC 4648 base32 maps 0..31 to A-Z2-7, which does not sort; translate it to Crockford's
# alphabet (0-9a-z without i, l, o, u), which does.
_FROM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_TO = b"0123456789abcdefghjkmnpqrstvwxyz"
_TABLE = bytes.maketrans(_FROM, _TO)


def new_id(prefix: str) -> str:
    """A new id such as ``b_01jdx3k9q4s7mzv2r8ta0e6n5c``: 48 bits of milliseconds, then 80 random
    bits, so that ids sort by creation time (like ULIDs).

    >>> a, b = new_id("b"), new_id("b")
    >>> a[:2], len(a), a != b
    ('b_', 28, True)
    """
    raw = (int(time.time() * 1000) & 0xFFFF_FFFF_FFFF).to_bytes(6, "big") + os.urandom(10)
    # The 128 bits as 26 base32 digits (130 bits, the top two zero), most significant first:
    # base32 reads bytes from the left, so pad the 130-bit field with 6 zero bits on the right.
    value = int.from_bytes(raw, "big")
    text = base64.b32encode((value << 6).to_bytes(17, "big"))[:26].translate(_TABLE).decode()
    return f"{prefix}_{text}"
