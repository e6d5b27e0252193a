"""The public surface: names exported on purpose, and `import loopml` staying light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import loopml
from loopml import (
    data,
    draft,
    features,
    monitoring,
    rollout,
    sampling,
    serving,
    spec,
    storage,
    testing,
)


def test_all_names_exist() -> None:
    for module in (
        loopml,
        data,
        draft,
        features,
        monitoring,
        rollout,
        sampling,
        serving,
        spec,
        storage,
        testing,
    ):
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"
    assert loopml.Project.open


def test_import_is_light() -> None:
    code = (
        "import sys, loopml; heavy = [m for m in ('pandas', 'pyarrow', 'duckdb', 'fastapi', 'ray', "
        "'torch', 'sqlalchemy') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


STORAGE_LIBRARIES = ("sqlalchemy", "duckdb", "fastapi", "redis", "fsspec", "uvicorn")


@pytest.mark.parametrize(
    "statement",
    [
        "from loopml.monitoring import detect_drift, fit_profile, classify",
        "from loopml.features import compile_expression, parse, encode_key",
        "from loopml.rollout import make_policy, compare_arms, Counter, wilson",
        "from loopml.storage import Counter, CounterStore, OnlineStore, EventLog",
        "import loopml.serving",
    ],
)
def test_pure_parts_import_without_storage(statement: str) -> None:
    """The drift statistics, the expression language and the bandit policies are usable alone:
    importing them loads no storage library, database driver or web framework."""
    code = (
        f"import sys; {statement}; "
        f"print(','.join(m for m in {STORAGE_LIBRARIES!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{statement} loaded {out.stdout.strip()}"


def test_testing_exports_its_fakes_and_contracts() -> None:
    """Exactly these: every role's contract suite and every in-memory fake, nothing private."""
    assert sorted(testing.__all__, key=str.lower) == sorted(
        [
            "DEFAULT_LOOP",
            "STREAM_START",
            "CounterStoreContract",
            "EventLogContract",
            "FileStoreContract",
            "MemoryCounters",
            "MemoryEventLog",
            "MemoryFileStore",
            "MemoryMetadataStore",
            "MemoryOnlineStore",
            "MetadataStoreContract",
            "OnlineStoreContract",
            "RegistryContract",
            "stream_spec",
            "write_stream",
        ],
        key=str.lower,
    )
