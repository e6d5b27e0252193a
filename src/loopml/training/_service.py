"""The models side of a project (``project.models``): train, evaluate through the gate, promote,
roll back, and load verified artifacts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson

from loopml.data import default_user
from loopml.errors import GateError, LoopmlError, UsageError
from loopml.features import Features, TrainingSet
from loopml.registry import AliasMove, ModelVersion, Registry
from loopml.spec import ModelSpec, ProjectSpec
from loopml.training._gate import Judged, Verdict, run_gate
from loopml.training._model import Model
from loopml.training._train import Trained, fit
from loopml.training._verified import VerifiedVersion, smoke, verified_version


@dataclass
class TrainResult:
    version: ModelVersion | None
    trained: Trained

    def to_dict(self) -> dict[str, Any]:
        t = self.trained
        return {
            "model": self.version.model if self.version else None,
            "version": self.version.version if self.version else None,
            "metrics": t.metrics,
            "baselines": {k: v["metrics"] for k, v in t.report["baselines"].items()},
            "rows": t.sizes,
            "refit": t.refit,
            "learned": t.lineage["learned"],
            "holdout": t.lineage["holdout"],
            "metrics_from": t.lineage["metrics_from"],
            "threshold": t.model.threshold,
            "seconds": round(t.seconds, 3),
            "parent": t.lineage["parent"],
            "snapshot": t.lineage["snapshot"],
        }


class Models:
    """Training, the gate and the registry of one project's model."""

    def __init__(self, spec: ProjectSpec, features: Features, registry: Registry) -> None:
        self.project_spec = spec
        self.features = features
        self.registry = registry

    @property
    def spec(self) -> ModelSpec:
        if self.project_spec.model is None:
            raise UsageError("loopml.yaml has no model section: declare the model to train")
        return self.project_spec.model

    @property
    def name(self) -> str:
        return self.spec.name

    # ------------------------------------------------------------------------------ train

    def train(
        self,
        *,
        snapshot: str | None = None,
        as_of: datetime | None = None,
        warm_start: str | None = None,
        register: bool = True,
        by: str | None = None,
        note: str = "",
        window: timedelta | None = None,
        min_rows: int = 10,
        training_set: TrainingSet | None = None,
        refit: bool | None = None,
    ) -> TrainResult:
        """Train the project's model on a point-in-time training set and register it.

        With ``warm_start`` (a version or alias), continue that version on the rows newer than
        the data it was trained on (stateful training); the parent is recorded. ``window``
        overrides the model's training window (the latest labelled data only);
        ``training_set`` is one already built as of ``as_of`` (not built again). ``refit``
        (default: ``model.refit``) registers the model fitted again on every row once
        evaluated on the held-out ones.
        """
        spec = self.spec
        if window is not None:
            spec = spec.model_copy(update={"window": window})
        parent = parent_ref = since = None
        if warm_start is not None:
            mv = self.registry.get(self.name, warm_start)
            parent, parent_ref = self.load_verified(mv), mv.ref
            # After the last row it learned from (its held-out rows are new data to it).
            end = mv.lineage.get("trained_until") or mv.lineage.get("data_end")
            since = datetime.fromisoformat(end) if end else None
        ts = training_set or self.features.build(snapshot=snapshot, as_of=as_of)
        trained = fit(
            spec,
            ts,
            parent=parent,
            parent_ref=parent_ref,
            since=since,
            drift=self.project_spec.monitoring.drift,
            min_rows=min_rows,
            refit=spec.refit if refit is None else refit,
        )
        version = None
        if register:
            version = self.registry.register(
                self.name,
                task=spec.task,
                files=trained.files,
                format=trained.model.kind,
                trusted_types=trained.trusted_types,
                lineage=trained.lineage,
                metrics=trained.metrics,
                report=trained.report,
                by=by or default_user(),
                note=note,
            )
        return TrainResult(version, trained)

    def compare_imbalance(
        self, *, snapshot: str | None = None, as_of: datetime | None = None
    ) -> dict[str, Any]:
        """Plain against class weights and resampling (thresholds chosen on validation)."""
        from loopml.training._imbalance import compare_imbalance

        return compare_imbalance(self.spec, self.features.build(snapshot=snapshot, as_of=as_of))

    # ---------------------------------------------------------------------------- registry

    def verified(self, ref: str | int | ModelVersion = "champion") -> VerifiedVersion:
        """A registered version's files, every one checked against its SHA-256 (and the record
        against the registry's): the one way loopml reads a version."""
        mv = ref if isinstance(ref, ModelVersion) else self.registry.get(self.name, ref)
        return verified_version(self.registry, mv)

    def load_verified(self, ref: str | int | ModelVersion = "champion") -> Model:
        """A registered version as a usable model; every file's SHA-256 is checked first, and a
        scikit-learn model loads only the types recorded when it was saved."""
        return self.verified(ref).model()

    load = load_verified  # the shorter name the docs and scripts use: the same method

    def smoke_test(self, version: VerifiedVersion, model: Model | None = None) -> int:
        """The smoke test (:func:`loopml.training._verified.smoke`) on the version's own test
        rows, ``gate.smoke_rows`` of them; raises what failed, returns the rows predicted.
        ``model``: the version's artifact when already loaded."""
        served = model if model is not None else version.model()
        return smoke(served, version.test(), self.project_spec.gate.smoke_rows)

    def smoke(self, ref: str | int | ModelVersion) -> str | None:
        """None when the version loads (every file checked against its SHA-256) and passes the
        smoke test on its own test rows; otherwise what went wrong."""
        try:
            self.smoke_test(self.verified(ref))
        except Exception as exc:  # noqa: BLE001 - any failure means it must not serve
            return f"{type(exc).__name__}: {exc}"
        return None

    def get(self, ref: str | int = "champion") -> ModelVersion:
        return self.registry.get(self.name, ref)

    def versions(self) -> list[ModelVersion]:
        return self.registry.versions(self.name)

    # --------------------------------------------------------------------------------- gate

    def evaluate(
        self,
        ref: str | int,
        *,
        against: str | None = "champion",
        as_of: datetime | None = None,
        by: str | None = None,
        training_set: TrainingSet | None = None,
        backtest: timedelta | Literal["auto", "off"] | None = None,
    ) -> Verdict:
        """Run the gate for a version against the alias ``against`` (or against nothing), and
        record the verdict on the version. ``training_set``: one already built as of
        ``as_of``, for the backtest's recent rows; ``backtest`` overrides ``gate.backtest``
        (``"off"``: none)."""
        spec, gate = self.spec, self.project_spec.gate
        if backtest is not None:
            gate = gate.model_copy(update={"backtest": None if backtest == "off" else backtest})
        mv = self.registry.get(self.name, ref)
        holder: ModelVersion | None = None
        if against is not None:
            aliases = self.registry.aliases(self.name)
            if against in aliases or against.isdigit():
                holder = self.registry.get(self.name, against)
        if holder is not None and holder.version == mv.version:
            raise UsageError(f"{mv.ref} is the {against} already; nothing to compare")

        def load_challenger() -> tuple[Model, Judged, Any]:
            challenger = self.verified(mv)
            served = challenger.model()
            return served, self._judged(challenger, served), challenger.test()

        def recent() -> Any:
            ts = training_set or self.features.build(as_of=as_of)
            return ts.table

        def load_champion() -> Judged:
            assert holder is not None
            return self._judged(self.verified(holder))

        champion = (holder.version, load_champion) if holder is not None else None
        verdict = run_gate(
            spec,
            gate,
            name=self.name,
            version=mv.version,
            load_challenger=load_challenger,
            champion=champion,
            recent=recent,
            as_of=as_of,
        )
        record = self.registry.record_evaluation(
            self.name,
            mv.version,
            against_version=verdict.against,
            passed=verdict.passed,
            report=orjson.loads(orjson.dumps(verdict.to_dict())),
            by=by or default_user(),
        )
        verdict.evaluation_id = record.id
        return verdict

    @staticmethod
    def _judged(version: VerifiedVersion, artifact: Model | None = None) -> Judged:
        """The model of a version the gate judges: the held-out one of a refitted version (its
        metrics are that model's), else the artifact (``artifact`` when already loaded); and
        the newest row it learned from."""
        held = version.holdout()
        model = held or artifact or version.model()
        lineage = version.version.lineage
        end = (lineage.get("holdout") or {}).get("end") if held else None
        end = end or lineage.get("trained_until")
        return Judged(model, datetime.fromisoformat(end) if end else None)

    def promote(
        self,
        ref: str | int,
        alias: str = "champion",
        *,
        force: bool = False,
        by: str | None = None,
        reason: str = "",
    ) -> AliasMove:
        mv = self.registry.get(self.name, ref)
        if force and alias in self.registry.gated_aliases:
            self._refuse_unloadable(mv, alias)
        if alias != "champion" and not force:
            return self.registry.set_alias(
                self.name, alias, mv.version, by=by or default_user(), reason=reason
            )
        return self.registry.promote(
            self.name, mv.version, alias, by=by or default_user(), reason=reason, force=force
        )

    def _refuse_unloadable(self, mv: ModelVersion, alias: str) -> None:
        """``--force`` skips the gate's comparison, never its smoke check: a version that does not
        load or predict from its registered files would stop every worker that reads the alias."""
        try:
            version = self.verified(mv)
        except LoopmlError:
            return  # changed or missing files: the registry refuses the move, naming the file
        try:
            self.smoke_test(version)
        except Exception as exc:  # whatever it is, the version must not serve
            raise GateError(
                f"refusing to force {mv.ref} into {alias!r}: it does not load or predict from its "
                f"registered files ({type(exc).__name__}: {exc}); --force skips the gate's "
                f"comparison, never this check. Register a working version",
                details={
                    "model": mv.model,
                    "version": mv.version,
                    "alias": alias,
                    "check": "smoke",
                },
            ) from exc

    def rollback(
        self, alias: str = "champion", *, by: str | None = None, reason: str = ""
    ) -> AliasMove:
        return self.registry.rollback(self.name, alias, by=by or default_user(), reason=reason)

    def history(self, alias: str | None = None) -> list[AliasMove]:
        return self.registry.history(self.name, alias)
