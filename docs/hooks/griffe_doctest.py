"""Griffe extension: doctest examples in loopml's docstrings shown as Python sessions.

loopml's docstrings are prose with doctest examples (`>>> ...` and the output below them), run
by the test suite. Markdown would read `>>>` as nested quotes and `x["key"]` as a link, so each
run of doctest lines (up to the next blank line) is fenced as a `pycon` block before rendering.
"""

from __future__ import annotations

from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    """``text`` with every doctest block (a `>>>` line to the next blank line) fenced."""
    out: list[str] = []
    in_block = False
    for line in text.splitlines():
        stripped = line.strip()
        if not in_block and stripped.startswith(">>>"):
            if out and out[-1].strip():
                out.append("")
            out.append("```pycon")
            in_block = True
        elif in_block and not stripped:
            out += ["```", ""]
            in_block = False
            continue
        out.append(line)
    if in_block:
        out.append("```")
    return "\n".join(out)


class FenceDoctests(griffe.Extension):
    """Fence the doctest examples of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
