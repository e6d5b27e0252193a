"""The registry contract on SQLite, and two processes racing to promote."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopml.errors import GateError
from loopml.registry import Registry
from loopml.spec import FilesConfig, MetadataConfig, SQLiteConfig
from loopml.storage import ArtifactStore, FileStore, open_metadata
from loopml.testing import RegistryContract
from loopml.testing._registry import MODEL, assert_chain, crown, register

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from pydantic import TypeAdapter
    from loopml.errors import LoopmlError
    from loopml.registry import Registry
    from loopml.spec import FilesConfig, MetadataConfig
    from loopml.storage import ArtifactStore, FileStore, open_metadata

    args = json.loads(sys.argv[1])
    config = TypeAdapter(MetadataConfig).validate_python(args["config"])
    root = Path(args["root"])
    registry = Registry(
        open_metadata(config, root=root),
        ArtifactStore(FileStore(FilesConfig(url=args["artifacts"]), root=root)),
    )
    Path(args["ready"]).touch()
    go = Path(args["go"])
    deadline = time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    try:
        move = registry.promote(args["model"], args["version"], by=args["by"], reason="race")
        print(json.dumps({"ok": True, "id": move.id}))
    except LoopmlError as exc:
        print(json.dumps({"ok": False, "code": exc.code, "message": exc.message}))
    """
)


def promote_in_processes(
    registry: Registry,
    config: MetadataConfig,
    root: Path,
    versions: list[int],
    *,
    model: str = MODEL,
) -> dict[int, dict[str, Any]]:
    """Promote each version from its own process, all released at the same moment.

    The children start, open the stores and say they are ready; this process then takes the
    writers' lock, releases them all, and holds the lock a moment so every child is queued on it
    before any can move the alias.
    """
    go = root / "go"
    procs = {}
    for version in versions:
        args = {
            "config": config.model_dump(mode="json", by_alias=True),
            "root": str(root),
            "artifacts": registry.artifacts.files.base,
            "ready": str(root / f"ready-{version}"),
            "go": str(go),
            "model": model,
            "version": version,
            "by": f"process-{version}",
        }
        procs[version] = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not all((root / f"ready-{v}").exists() for v in versions):
            failed = {v: p.returncode for v, p in procs.items() if p.poll() is not None}
            assert not failed, {v: procs[v].communicate() for v in failed}
            assert time.monotonic() < deadline, "the child processes did not start in 60 s"
            time.sleep(0.01)
        with registry.store.write():
            go.touch()
            time.sleep(0.5)
        results = {}
        for version, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            results[version] = json.loads(out.strip().splitlines()[-1])
        return results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def check_race(registry: Registry, results: dict[int, dict[str, Any]]) -> None:
    """Exactly one process won; the other was refused by the gate; the history is one chain."""
    won = [v for v, r in results.items() if r["ok"]]
    lost = [r for r in results.values() if not r["ok"]]
    assert len(won) == 1 and len(lost) == 1, results
    assert lost[0]["code"] == GateError.code, lost
    assert registry.get(MODEL).version == won[0]
    history = registry.history(MODEL, "champion")
    assert [m.to_version for m in history] == [1, won[0]]
    assert history[-1].by == f"process-{won[0]}"
    assert_chain(history)


def prepare_race(registry: Registry) -> None:
    register(registry, 3)
    crown(registry, 1)
    for version in (2, 3):
        registry.record_evaluation(
            MODEL, version, against_version=1, passed=True, report={}, by="ci"
        )


def local_registry(config: MetadataConfig, root: Path) -> Registry:
    return Registry(
        open_metadata(config, root=root),
        ArtifactStore(FileStore(FilesConfig(url="artifacts"), root=root)),
    )


class TestSQLiteRegistry(RegistryContract):
    @pytest.fixture
    def registry(self, tmp_path: Path) -> Iterator[Registry]:
        registry = local_registry(SQLiteConfig(path="meta.db"), tmp_path)
        yield registry
        registry.store.close()


def test_two_processes_promote_at_once(tmp_path: Path) -> None:
    config = SQLiteConfig(path="meta.db")
    registry = local_registry(config, tmp_path)
    try:
        prepare_race(registry)
        check_race(registry, promote_in_processes(registry, config, tmp_path, [2, 3]))
    finally:
        registry.store.close()


def test_registry_survives_reopening(tmp_path: Path) -> None:
    config = SQLiteConfig(path="meta.db")
    first = local_registry(config, tmp_path)
    (mv,) = register(first)
    crown(first, 1)
    first.store.close()
    again = local_registry(config, tmp_path)
    try:
        assert again.get(MODEL) == mv
        assert again.load_files(mv)["features.json"].startswith(b'{"features"')
    finally:
        again.store.close()
