"""``loopml init --from FILE``: a whole ``loopml.yaml`` drafted from a sample of the user's data.

The file is read exactly as ingestion will read it and its schema inferred by the same rules
(``loopml.data``). From what the sample shows, the draft chooses the event-time column, the
identifiers, the entities, a primary key (checked unique on the sample), the features (request
columns, date parts, windows per entity sized from each entity's event rate), the model, serving,
monitoring windows sized from the event rate, and the loop's triggers. Every choice is returned
with its reason, to be printed. What only the user knows (what the model predicts) is left as a
commented placeholder that says so; the draft is valid as written.
"""

from __future__ import annotations

import re
from pathlib import Path

from loopml.draft._facts import Choice, Draft
from loopml.draft._render import Drafter
from loopml.draft._sample import read_sample, source_name
from loopml.errors import ReadError, UsageError


def draft_spec(file: str | Path, *, root: Path, name: str, source: str | None = None) -> Draft:
    """Draft a whole project spec for ``root`` from one data file."""
    path = Path(file)
    if not path.is_file():
        raise ReadError(f"no such file: {path}", details={"file": str(path)})
    source = source or source_name(path)
    if not re.match(r"^[A-Za-z][A-Za-z0-9_]{0,62}$", source):
        raise UsageError(f"cannot use {source!r} as a source name: pass --source NAME")
    sample = read_sample(path)
    return Drafter(sample, path, root, name, source).draft()


__all__ = ["Choice", "Draft", "draft_spec"]
