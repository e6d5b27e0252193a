"""The contract the model registry passes on every metadata backend.

Subclass it in a test module and provide a ``registry`` fixture returning a
:class:`~loopml.registry.Registry` on a fresh, empty metadata store and artifact store::

    class TestMyBackend(RegistryContract):
        @pytest.fixture
        def registry(self): ...
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from loopml.errors import (
    ConflictError,
    GateError,
    IntegrityError,
    LoopmlError,
    NotFoundError,
    UsageError,
)
from loopml.registry import AliasMove, ModelVersion, Registry
from loopml.storage import ArtifactStore

MODEL = "delay"
FILES = {
    "model.skops": bytes(range(256)) * 8,
    "features.json": b'{"features": ["dep_hour", "distance"]}',
    "empty.bin": b"",
}


def _raises(exc: type[BaseException], fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except exc as caught:
        return caught
    raise AssertionError(f"expected {exc.__name__}")


def register(registry: Registry, n: int = 1, *, model: str = MODEL) -> list[ModelVersion]:
    """Register ``n`` versions whose files differ (so their artifacts do too)."""
    return [
        registry.register(
            model,
            task="classification",
            files={**FILES, "model.skops": FILES["model.skops"] + str(i).encode()},
            format="sklearn",
            trusted_types=["sklearn.ensemble.HistGradientBoostingClassifier"],
            lineage={"snapshot": f"s_{i}", "features_hash": "f" * 64, "parent": None},
            metrics={"auc": 0.7 + i / 100, "rows": 1000},
            by="trainer",
            note=f"run {i}",
        )
        for i in range(n)
    ]


def crown(registry: Registry, version: int, *, model: str = MODEL, by: str = "ci") -> AliasMove:
    """Evaluate ``version`` against the current champion (passing) and promote it."""
    against = registry.aliases(model).get("champion")
    registry.record_evaluation(
        model, version, against_version=against, passed=True, report={"auc": 0.8}, by=by
    )
    return registry.promote(model, version, by=by, reason=f"v{version} beats {against}")


def tamper(registry: Registry, mv: ModelVersion, name: str = "model.skops") -> Callable[[], None]:
    """Flip one bit of a version's stored file; returns the function that restores it."""
    rel = ArtifactStore._rel(mv.files[name])
    original = registry.artifacts.files.read_bytes(rel)
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    registry.artifacts.files.write_bytes(rel, bytes(data))
    return lambda: registry.artifacts.files.write_bytes(rel, original)


def assert_chain(moves: Sequence[AliasMove]) -> None:
    """Each move starts where the one before it ended."""
    previous: int | None = None
    for move in moves:
        assert move.from_version == previous, moves
        previous = move.to_version


class RegistryContract:
    """Behaviour the registry shows on every metadata backend."""

    # ---------------------------------------------------------------------------- versions

    def test_register_and_read_back_files(self, registry: Registry) -> None:
        (mv,) = register(registry)
        assert (mv.model, mv.version, mv.ref) == (MODEL, 1, f"{MODEL}:1")
        assert mv.format == "sklearn" and mv.created_by == "trainer" and mv.note == "run 0"
        assert mv.trusted_types == ["sklearn.ensemble.HistGradientBoostingClassifier"]
        assert mv.lineage == {"snapshot": "s_0", "features_hash": "f" * 64, "parent": None}
        assert mv.metrics == {"auc": 0.7, "rows": 1000} and mv.report is None
        assert set(mv.files) == set(FILES) and all(len(d) == 64 for d in mv.files.values())
        assert registry.get(MODEL, 1) == mv
        loaded = registry.load_files(registry.get(MODEL, 1))
        assert loaded == {**FILES, "model.skops": FILES["model.skops"] + b"0"}

    def test_versions_increase(self, registry: Registry) -> None:
        assert [mv.version for mv in register(registry, 3)] == [1, 2, 3]
        assert [mv.version for mv in registry.versions(MODEL)] == [1, 2, 3]
        register(registry, model="other")
        registry.set_alias(MODEL, "challenger", 2, by="me")
        info = {m.name: m for m in registry.models()}
        assert list(info) == [MODEL, "other"]
        assert (info[MODEL].versions, info[MODEL].latest) == (3, 3)
        assert info[MODEL].aliases == {"challenger": 2} and info["other"].aliases == {}
        assert info[MODEL].task == "classification"

    def test_task_mismatch_is_refused(self, registry: Registry) -> None:
        register(registry)
        err = _raises(
            ConflictError,
            lambda: registry.register(
                MODEL,
                task="regression",
                files={"m": b"x"},
                format="sklearn",
                lineage={},
                metrics={},
                by="me",
            ),
        )
        assert MODEL in str(err) and "classification" in str(err) and "regression" in str(err)
        assert len(registry.versions(MODEL)) == 1

    def test_bad_json_is_refused_before_anything_is_recorded(self, registry: Registry) -> None:
        err = _raises(
            UsageError,
            lambda: registry.register(
                MODEL,
                task="classification",
                files={"m": b"x"},
                format="sklearn",
                lineage={},
                metrics={"auc": float("nan")},
                by="me",
            ),
        )
        assert "auc" in str(err)
        assert registry.models() == []

    def test_get_by_number_latest_and_alias(self, registry: Registry) -> None:
        register(registry, 3)
        crown(registry, 2)
        registry.set_alias(MODEL, "challenger", 3, by="me")
        assert registry.get(MODEL, 1).version == 1
        assert registry.get(MODEL, "1").version == 1
        assert registry.get(MODEL, "latest").version == 3
        assert registry.get(MODEL).version == 2
        assert registry.get(MODEL, "challenger").version == 3
        assert registry.aliases(MODEL) == {"challenger": 3, "champion": 2}

    def test_unknown_refs_list_what_exists(self, registry: Registry) -> None:
        register(registry, 2)
        registry.set_alias(MODEL, "shadow", 2, by="me")
        err = _raises(NotFoundError, lambda: registry.get(MODEL, 7))
        assert MODEL in str(err) and "7" in str(err) and "1, 2" in str(err)
        err = _raises(NotFoundError, lambda: registry.get(MODEL, "champion"))
        assert "champion" in str(err) and "shadow -> 2" in str(err)
        err = _raises(NotFoundError, lambda: registry.get("nope"))
        assert "nope" in str(err) and MODEL in str(err)
        _raises(NotFoundError, lambda: registry.versions("nope"))
        _raises(NotFoundError, lambda: registry.history("nope"))

    def test_report_can_be_attached_later(self, registry: Registry) -> None:
        register(registry)
        registry.set_report(MODEL, 1, {"slices": {"JFK": {"auc": 0.71}}})
        assert registry.get(MODEL, 1).report == {"slices": {"JFK": {"auc": 0.71}}}
        _raises(NotFoundError, lambda: registry.set_report(MODEL, 2, {}))

    # --------------------------------------------------------------------------- integrity

    def test_a_tampered_artifact_is_refused(self, registry: Registry) -> None:
        (mv,) = register(registry)
        digest = mv.files["model.skops"]
        rel = ArtifactStore._rel(digest)
        data = bytearray(registry.artifacts.files.read_bytes(rel))
        data[100] ^= 0x01
        registry.artifacts.files.write_bytes(rel, bytes(data))
        err = _raises(IntegrityError, lambda: registry.load_files(mv))
        message = str(err)
        assert f"{MODEL}:1" in message and "'model.skops'" in message
        assert "changed after registration" in message
        assert isinstance(err, LoopmlError) and err.details["file"] == "model.skops"

    def test_force_skips_the_gate_never_the_integrity_check(self, registry: Registry) -> None:
        _, v2 = register(registry, 2)
        crown(registry, 1)
        restore = tamper(registry, v2)
        err = _raises(
            IntegrityError,
            lambda: registry.promote(MODEL, 2, by="bob", reason="hotfix", force=True),
        )
        message = str(err)
        assert f"{MODEL}:2" in message and "'model.skops'" in message and "champion" in message
        assert "SHA-256" in message and f"{MODEL}:1" in message  # what still holds the alias
        assert isinstance(err, LoopmlError) and err.details["file"] == "model.skops"
        assert registry.get(MODEL).version == 1
        assert [m.to_version for m in registry.history(MODEL)] == [1]  # nothing recorded
        # Through the gate too: a passing evaluation does not vouch for bytes changed since.
        registry.record_evaluation(MODEL, 2, against_version=1, passed=True, report={}, by="ci")
        _raises(IntegrityError, lambda: registry.promote(MODEL, 2, by="bob", reason="r"))
        restore()
        move = registry.promote(MODEL, 2, by="bob", reason="restored", force=True)
        assert (move.action, move.to_version) == ("force", 2)

    def test_a_missing_artifact_is_never_given_an_alias(self, registry: Registry) -> None:
        _, v2 = register(registry, 2)
        crown(registry, 1)
        registry.artifacts.files.delete(ArtifactStore._rel(v2.files["features.json"]))
        err = _raises(
            NotFoundError, lambda: registry.promote(MODEL, 2, by="b", reason="r", force=True)
        )
        assert "'features.json'" in str(err) and "missing" in str(err)
        _raises(NotFoundError, lambda: registry.set_alias(MODEL, "challenger", 2, by="b"))
        assert registry.aliases(MODEL) == {"champion": 1}

    def test_set_alias_and_rollback_refuse_a_tampered_version(self, registry: Registry) -> None:
        v1, _ = register(registry, 2)
        crown(registry, 1)
        crown(registry, 2)
        registry.set_alias(MODEL, "challenger", 2, by="me")
        restore = tamper(registry, v1)
        err = _raises(IntegrityError, lambda: registry.set_alias(MODEL, "challenger", 1, by="me"))
        assert f"{MODEL}:1" in str(err) and "challenger" in str(err)
        err = _raises(
            IntegrityError, lambda: registry.rollback(MODEL, by="oncall", reason="p99 doubled")
        )
        assert f"{MODEL}:1" in str(err) and f"{MODEL}:2" in str(err)
        assert registry.aliases(MODEL) == {"champion": 2, "challenger": 2}
        assert len(registry.history(MODEL)) == 3
        restore()
        assert registry.rollback(MODEL, by="oncall", reason="p99 doubled").to_version == 1

    def test_only_recorded_files_are_read(self, registry: Registry) -> None:
        (mv,) = register(registry)
        other = registry.artifacts.put(b"not registered")
        forged = dataclasses.replace(mv, files={**mv.files, "extra.pkl": other})
        err = _raises(IntegrityError, lambda: registry.load_files(forged))
        assert f"{MODEL}:1" in str(err)
        untrusted = dataclasses.replace(mv, trusted_types=["os.system"])
        _raises(IntegrityError, lambda: registry.load_files(untrusted))

    # ------------------------------------------------------------------------------- gate

    def test_promote_without_evaluation_is_refused(self, registry: Registry) -> None:
        register(registry)
        err = _raises(GateError, lambda: registry.promote(MODEL, 1, by="me", reason="r"))
        assert isinstance(err, ConflictError)
        message = str(err)
        assert f"{MODEL}:1" in message and "champion" in message and "--force" in message
        assert f"loopml evaluate {MODEL}:1 --against champion" in message
        assert registry.aliases(MODEL) == {} and registry.history(MODEL) == []

    def test_failed_evaluation_is_refused(self, registry: Registry) -> None:
        register(registry, 2)
        crown(registry, 1)
        registry.record_evaluation(
            MODEL, 2, against_version=1, passed=False, report={"auc": 0.5}, by="ci"
        )
        err = _raises(GateError, lambda: registry.promote(MODEL, 2, by="me", reason="r"))
        assert "failed" in str(err) and f"{MODEL}:1" in str(err)
        assert registry.get(MODEL).version == 1

    def test_evaluation_against_a_previous_champion_does_not_count(
        self, registry: Registry
    ) -> None:
        register(registry, 3)
        crown(registry, 1)
        registry.record_evaluation(MODEL, 3, against_version=1, passed=True, report={}, by="ci")
        crown(registry, 2)
        err = _raises(GateError, lambda: registry.promote(MODEL, 3, by="me", reason="r"))
        message = str(err)
        assert f"evaluated against {MODEL}:1" in message and f"held by {MODEL}:2" in message
        assert registry.get(MODEL).version == 2

    def test_passing_evaluation_then_promote(self, registry: Registry) -> None:
        register(registry, 2)
        first = crown(registry, 1)
        evaluation = registry.record_evaluation(
            MODEL, 2, against_version=1, passed=True, report={"delta_auc": 0.02}, by="ci"
        )
        move = registry.promote(MODEL, 2, by="alice", reason="better auc")
        assert (first.action, first.from_version, first.to_version) == ("promote", None, 1)
        assert (move.action, move.from_version, move.to_version) == ("promote", 1, 2)
        assert move.evaluation_id == evaluation.id and move.by == "alice"
        assert registry.get(MODEL).version == 2
        assert [e.id for e in registry.evaluations(MODEL, 2)] == [evaluation.id]
        assert registry.evaluations(MODEL, 2)[0].report == {"delta_auc": 0.02}
        err = _raises(ConflictError, lambda: registry.promote(MODEL, 2, by="me", reason="again"))
        assert "already holds" in str(err)

    def test_force_is_recorded(self, registry: Registry) -> None:
        register(registry, 2)
        crown(registry, 1)
        _raises(UsageError, lambda: registry.promote(MODEL, 2, by="bob", reason="", force=True))
        move = registry.promote(MODEL, 2, by="bob", reason="hotfix", force=True)
        assert (move.action, move.from_version, move.to_version) == ("force", 1, 2)
        assert registry.history(MODEL)[-1] == move

    def test_evaluations_of_unknown_versions_are_refused(self, registry: Registry) -> None:
        register(registry)

        def evaluate(version: int, against: int | None) -> None:
            registry.record_evaluation(
                MODEL, version, against_version=against, passed=True, report={}, by="ci"
            )

        err = _raises(NotFoundError, lambda: evaluate(5, None))
        assert f"{MODEL!r} has no version 5" in str(err) and "versions are 1" in str(err)
        _raises(NotFoundError, lambda: evaluate(1, 5))
        _raises(UsageError, lambda: evaluate(1, 1))

    # --------------------------------------------------------------------------- rollback

    def test_rollback_goes_back_one_holder_at_a_time(self, registry: Registry) -> None:
        register(registry, 3)
        for version in (1, 2, 3):
            crown(registry, version)
        back = registry.rollback(MODEL, by="oncall", reason="p99 doubled")
        assert (back.action, back.from_version, back.to_version) == ("rollback", 3, 2)
        assert registry.get(MODEL).version == 2
        back = registry.rollback(MODEL, by="oncall", reason="still bad")
        assert (back.from_version, back.to_version) == (2, 1)
        err = _raises(ConflictError, lambda: registry.rollback(MODEL, by="oncall", reason="r"))
        assert MODEL in str(err) and "champion" in str(err) and f"{MODEL}:1" in str(err)
        assert registry.get(MODEL).version == 1

    def test_rollback_with_nothing_before_is_refused(self, registry: Registry) -> None:
        register(registry)
        err = _raises(ConflictError, lambda: registry.rollback(MODEL, by="me", reason="r"))
        assert "champion" in str(err)
        crown(registry, 1)
        _raises(ConflictError, lambda: registry.rollback(MODEL, by="me", reason="r"))

    def test_history_lists_every_move_in_order(self, registry: Registry) -> None:
        register(registry, 3)
        crown(registry, 1, by="a")
        crown(registry, 2, by="b")
        registry.promote(MODEL, 3, by="c", reason="forced", force=True)
        registry.rollback(MODEL, by="d", reason="bad")
        registry.set_alias(MODEL, "challenger", 3, by="e", reason="try again")
        champion = registry.history(MODEL, "champion")
        rows = [(m.action, m.from_version, m.to_version, m.by, m.reason) for m in champion]
        assert rows == [
            ("promote", None, 1, "a", "v1 beats None"),
            ("promote", 1, 2, "b", "v2 beats 1"),
            ("force", 2, 3, "c", "forced"),
            ("rollback", 3, 2, "d", "bad"),
        ]
        assert_chain(champion)
        everything = registry.history(MODEL)
        assert [m.id for m in everything] == sorted(m.id for m in everything)
        assert everything[-1].alias == "challenger" and len(everything) == 5
        assert all(m.at.tzinfo is not None for m in everything)
        assert champion[0].at <= champion[-1].at

    def test_other_aliases_need_no_gate(self, registry: Registry) -> None:
        register(registry, 2)
        move = registry.set_alias(MODEL, "challenger", 2, by="me", reason="canary")
        assert (move.action, move.from_version, move.to_version) == ("set", None, 2)
        moved = registry.set_alias(MODEL, "challenger", 1, by="me")
        assert (moved.from_version, moved.to_version) == (2, 1)
        assert registry.rollback(MODEL, "challenger", by="me", reason="r").to_version == 2
        removed = registry.remove_alias(MODEL, "challenger", by="me", reason="done")
        assert (removed.action, removed.from_version, removed.to_version) == ("remove", 2, None)
        assert registry.aliases(MODEL) == {}
        _raises(NotFoundError, lambda: registry.remove_alias(MODEL, "challenger", by="me"))
        _raises(UsageError, lambda: registry.set_alias(MODEL, "champion", 1, by="me"))
        _raises(UsageError, lambda: registry.set_alias(MODEL, "latest", 1, by="me"))

    # ------------------------------------------------------------------------ concurrency

    def test_concurrent_promotions_one_wins(self, registry: Registry) -> None:
        """Two promotions evaluated against the same champion: the second finds it moved."""
        register(registry, 3)
        crown(registry, 1)
        for version in (2, 3):
            registry.record_evaluation(
                MODEL, version, against_version=1, passed=True, report={}, by="ci"
            )
        barrier = threading.Barrier(3, timeout=60)
        results: dict[int, BaseException | AliasMove] = {}

        def promote(version: int) -> None:
            barrier.wait()
            try:
                results[version] = registry.promote(MODEL, version, by=f"t{version}", reason="r")
            except BaseException as exc:  # noqa: BLE001
                results[version] = exc

        threads = [threading.Thread(target=promote, args=(v,)) for v in (2, 3)]
        for th in threads:
            th.start()
        # Hold the writers' lock while both threads reach it, so they really contend.
        with registry.store.write():
            barrier.wait()
            time.sleep(0.3)
        for th in threads:
            th.join(timeout=60)
        won = [v for v, r in results.items() if isinstance(r, AliasMove)]
        lost = [r for r in results.values() if not isinstance(r, AliasMove)]
        assert len(won) == 1 and len(lost) == 1, results
        assert isinstance(lost[0], GateError), lost
        assert registry.get(MODEL).version == won[0]
        history = registry.history(MODEL, "champion")
        assert [m.to_version for m in history] == [1, won[0]]
        assert_chain(history)
