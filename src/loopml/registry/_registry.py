"""The model registry: versions with lineage, integrity-checked files, gated aliases.

Files go to the content-addressed :class:`~loopml.storage.ArtifactStore` first, then one write
transaction records the version, so a crash leaves at most unreferenced blobs. Every alias move is
one write transaction that reads the current holder, checks the gate, checks the target version's
files against their SHA-256 (no move skips that, ``force`` and rollbacks included), moves the alias
and appends its history row; write transactions are serialized, so two promotions never both pass a gate
checked against the same holder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from loopml.errors import (
    ConflictError,
    GateError,
    IntegrityError,
    NotFoundError,
    UsageError,
)
from loopml.registry import _sql as q
from loopml.registry._checks import (
    as_json,
    check_alias,
    check_model_name,
    check_text,
    describe_aliases,
    where,
)
from loopml.registry._records import AliasMove, Evaluation, ModelInfo, ModelVersion
from loopml.storage import ArtifactStore, SqlMetadataStore

CHAMPION = "champion"
_DIGITS = re.compile(r"[0-9]+")


class Registry:
    """Model versions, their files and lineage, aliases with their history, and the gate.

    Aliases in ``gated_aliases`` (by default only ``champion``) move only through
    :meth:`promote`, which requires a passing evaluation of the version against the alias's
    current holder, or ``force=True`` (recorded as such). Other aliases move with
    :meth:`set_alias`. Every move is appended to the history; :meth:`rollback` undoes the latest.

    >>> import tempfile; from pathlib import Path
    >>> from loopml.spec import FilesConfig, SQLiteConfig
    >>> from loopml.storage import ArtifactStore, FileStore, open_metadata
    >>> root = Path(tempfile.mkdtemp())
    >>> reg = Registry(
    ...     open_metadata(SQLiteConfig(path="m.db"), root=root),
    ...     ArtifactStore(FileStore(FilesConfig(url="artifacts"), root=root)),
    ... )
    >>> mv = reg.register("delay", task="classification", files={"model.txt": b"trees"},
    ...                   format="lightgbm", lineage={"snapshot": "s_1"}, metrics={"auc": 0.7},
    ...                   by="me")
    >>> _ = reg.record_evaluation("delay", 1, against_version=None, passed=True, report={},
    ...                           by="me")
    >>> reg.promote("delay", 1, by="me", reason="first model").action
    'promote'
    >>> reg.get("delay").ref, reg.load_files(mv)
    ('delay:1', {'model.txt': b'trees'})
    """

    def __init__(
        self,
        store: SqlMetadataStore,
        artifacts: ArtifactStore,
        *,
        gated_aliases: Sequence[str] = (CHAMPION,),
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.gated_aliases = tuple(gated_aliases)

    # ------------------------------------------------------------------------------ versions

    def register(
        self,
        model: str,
        *,
        task: str,
        files: Mapping[str, bytes],
        format: str,
        lineage: Mapping[str, Any],
        metrics: Mapping[str, Any],
        by: str,
        trusted_types: Sequence[str] = (),
        report: Mapping[str, Any] | None = None,
        note: str = "",
    ) -> ModelVersion:
        """Store ``files`` and record them as the model's next version (1, 2, ...).

        The model is created on its first version; later versions must have the same ``task``.
        ``lineage``, ``metrics`` and ``report`` must be JSON (no NaN: use ``None``).
        """
        check_model_name(model)
        check_text(task, "task")
        check_text(format, "format")
        check_text(by, "by")
        if not files:
            raise UsageError(
                f"model {model!r}: a version needs at least one file", details={"model": model}
            )
        for name, data in files.items():
            if not isinstance(name, str) or not name:
                raise UsageError(f"model {model!r}: file names must be non-empty strings")
            if not isinstance(data, bytes | bytearray | memoryview):
                raise UsageError(
                    f"model {model!r}: file {name!r} is {type(data).__name__}, not bytes",
                    details={"model": model, "file": name},
                )
        values: dict[str, Any] = {
            "model": model,
            "format": format,
            "trusted_types": [str(x) for x in trusted_types],
            "lineage": as_json(lineage, f"model {model!r}: lineage"),
            "metrics": as_json(metrics, f"model {model!r}: metrics"),
            "report": None if report is None else as_json(report, f"model {model!r}: report"),
            "created_by": by,
            "note": note,
        }
        # Content-addressed blobs first: a crash before the commit leaves only unreferenced files.
        values["files"] = {name: self.artifacts.put(bytes(data)) for name, data in files.items()}
        with self.store.write() as conn:
            existing = q.model_task(conn, model)
            if existing is None:
                q.insert_model(conn, model, task=task, note=note)
            elif existing != task:
                raise ConflictError(
                    f"model {model!r} is a {existing} model; refusing to register a {task} "
                    f"version under it: use another model name",
                    details={"model": model, "task": existing, "requested": task},
                )
            values["created_at"] = q.utcnow()
            version = q.insert_version(conn, values)
            mv = q.get_version(conn, model, version)
        assert mv is not None
        return mv

    def get(self, model: str, ref: int | str = CHAMPION) -> ModelVersion:
        """A version by number (``3`` or ``"3"``), ``"latest"``, or the alias holding it."""
        with self.store.read() as conn:
            self._require_model(conn, model)
            mv = q.get_version(conn, model, self._resolve(conn, model, ref))
        assert mv is not None
        return mv

    def versions(self, model: str) -> list[ModelVersion]:
        """Every version of ``model``, oldest first."""
        with self.store.read() as conn:
            self._require_model(conn, model)
            return q.list_versions(conn, model)

    def models(self) -> list[ModelInfo]:
        """Every model with its version count, latest version and aliases, by name."""
        with self.store.read() as conn:
            return q.list_models(conn)

    def aliases(self, model: str) -> dict[str, int]:
        """``{alias: version}`` for ``model``."""
        with self.store.read() as conn:
            self._require_model(conn, model)
            return q.alias_map(conn, model)

    def load_files(self, mv: ModelVersion) -> dict[str, bytes]:
        """The version's files, each checked against the SHA-256 recorded at registration.

        The file list is read again from the registry: a record altered in memory is refused, so
        nothing the registry did not record is ever read.
        """
        with self.store.read() as conn:
            stored = q.get_version(conn, mv.model, mv.version)
        if stored is None:
            raise NotFoundError(
                f"model {mv.ref} is not in the registry", details=where(mv.model, mv.version)
            )
        if (stored.files, stored.format, stored.trusted_types) != (
            mv.files,
            mv.format,
            mv.trusted_types,
        ):
            raise IntegrityError(
                f"model {mv.ref}: the version record given does not match the registry's "
                f"(files, format or trusted types differ); refusing to read it: get it again "
                f"with Registry.get",
                details=where(mv.model, mv.version),
            )
        return self._read_checked(stored)

    def set_report(self, model: str, version: int, report: Mapping[str, Any]) -> None:
        """Attach (or replace) the evaluation report of a version."""
        value = as_json(report, f"model {model}:{version}: report")
        with self.store.write() as conn:
            self._require_version(conn, model, version)
            q.set_report(conn, model, version, value)

    # --------------------------------------------------------------------------- evaluations

    def record_evaluation(
        self,
        model: str,
        version: int,
        *,
        against_version: int | None,
        passed: bool,
        report: Mapping[str, Any],
        by: str,
    ) -> Evaluation:
        """Record the verdict of comparing ``model:version`` with ``against_version`` (``None``
        when there is no champion to compare with)."""
        check_text(by, "by")
        if against_version == version:
            raise UsageError(
                f"model {model}:{version} cannot be evaluated against itself",
                details=where(model, version),
            )
        value = as_json(report, f"model {model}:{version}: evaluation report")
        with self.store.write() as conn:
            self._require_version(conn, model, version)
            if against_version is not None:
                self._require_version(conn, model, against_version)
            return q.insert_evaluation(
                conn,
                model=model,
                version=version,
                against_version=against_version,
                passed=bool(passed),
                report=value,
                by=by,
            )

    def evaluations(self, model: str, version: int) -> list[Evaluation]:
        """Every evaluation of ``model:version``, oldest first."""
        with self.store.read() as conn:
            self._require_version(conn, model, version)
            return q.list_evaluations(conn, model, version)

    # ------------------------------------------------------------------------------- aliases

    def promote(
        self,
        model: str,
        version: int,
        alias: str = CHAMPION,
        *,
        by: str,
        reason: str,
        force: bool = False,
    ) -> AliasMove:
        """Move ``alias`` to ``model:version`` through the gate, atomically.

        For a gated alias, the latest evaluation of the version against the alias's current
        holder must have passed, else :class:`GateError`. ``force=True`` skips the gate; the move
        is recorded as ``force`` and needs a reason. No move skips the integrity check: a version
        whose files are changed or missing is refused (:class:`IntegrityError`,
        :class:`NotFoundError`) and the alias stays where it was.
        """
        check_alias(alias)
        check_text(by, "by")
        if force and not reason.strip():
            raise UsageError(
                f"forcing model {model}:{version} into {alias!r} needs a reason (it is recorded)",
                details={**where(model, version), "alias": alias},
            )
        with self.store.write() as conn:
            self._require_version(conn, model, version)
            current = q.holder(conn, model, alias)
            self._refuse_same(model, version, alias, current)
            evaluation = _latest_against(q.list_evaluations(conn, model, version), current)
            if alias in self.gated_aliases and not force:
                self._check_gate(conn, model, version, alias, current, evaluation)
            self._verify_target(conn, model, version, alias, current)
            return q.move_alias(
                conn,
                model=model,
                alias=alias,
                action="force" if force else "promote",
                from_version=current,
                to_version=version,
                by=by,
                reason=reason,
                evaluation_id=evaluation.id if evaluation is not None else None,
            )

    def set_alias(
        self, model: str, alias: str, version: int, *, by: str, reason: str = ""
    ) -> AliasMove:
        """Point an ungated alias (``challenger``, ``shadow``, ...) at ``model:version``."""
        check_alias(alias)
        check_text(by, "by")
        self._refuse_gated(model, alias, "set")
        with self.store.write() as conn:
            self._require_version(conn, model, version)
            current = q.holder(conn, model, alias)
            self._refuse_same(model, version, alias, current)
            self._verify_target(conn, model, version, alias, current)
            return q.move_alias(
                conn,
                model=model,
                alias=alias,
                action="set",
                from_version=current,
                to_version=version,
                by=by,
                reason=reason,
                evaluation_id=None,
            )

    def remove_alias(self, model: str, alias: str, *, by: str, reason: str = "") -> AliasMove:
        """Free ``alias`` (the move is recorded as ``remove``)."""
        check_text(by, "by")
        with self.store.write() as conn:
            self._require_model(conn, model)
            current = q.holder(conn, model, alias)
            if current is None:
                raise NotFoundError(
                    f"model {model!r} has no alias {alias!r} to remove; "
                    f"{describe_aliases(q.alias_map(conn, model))}",
                    details={"model": model, "alias": alias},
                )
            return q.move_alias(
                conn,
                model=model,
                alias=alias,
                action="remove",
                from_version=current,
                to_version=None,
                by=by,
                reason=reason,
                evaluation_id=None,
            )

    def rollback(self, model: str, alias: str = CHAMPION, *, by: str, reason: str) -> AliasMove:
        """Move ``alias`` back to the version that held it before the current holder arrived.

        Rollbacks are recorded and are not arrivals, so a second rollback goes one further back.
        """
        check_text(by, "by")
        with self.store.write() as conn:
            self._require_model(conn, model)
            current = q.holder(conn, model, alias)
            if current is None:
                raise ConflictError(
                    f"model {model!r}: no version holds alias {alias!r}, so there is nothing to "
                    f"roll back; {describe_aliases(q.alias_map(conn, model))}",
                    details={"model": model, "alias": alias},
                )
            arrival = q.latest_arrival(conn, model, alias, current)
            if arrival is None or arrival.from_version is None:
                raise ConflictError(
                    f"cannot roll back {alias!r} of model {model!r}: no version held it before "
                    f"{model}:{current}. Promote another version instead",
                    details={**where(model, current), "alias": alias},
                )
            self._verify_target(conn, model, arrival.from_version, alias, current)
            return q.move_alias(
                conn,
                model=model,
                alias=alias,
                action="rollback",
                from_version=current,
                to_version=arrival.from_version,
                by=by,
                reason=reason,
                evaluation_id=None,
            )

    def history(self, model: str, alias: str | None = None) -> list[AliasMove]:
        """Every alias move of ``model`` (or only of ``alias``), oldest first."""
        with self.store.read() as conn:
            self._require_model(conn, model)
            return q.list_history(conn, model, alias)

    # ------------------------------------------------------------------------------- helpers

    def _read_checked(self, mv: ModelVersion, refusing: str = "") -> dict[str, bytes]:
        """Every file of ``mv`` (as recorded), each checked against its SHA-256; ``refusing``
        names the alias move the check stops, so the message says what did not happen."""
        out: dict[str, bytes] = {}
        for name, digest in mv.files.items():
            details = {**where(mv.model, mv.version), "file": name, "sha256": digest}
            try:
                out[name] = self.artifacts.get(digest)
            except IntegrityError as exc:
                raise IntegrityError(
                    f"{refusing}model {mv.ref}: file {name!r} does not match the SHA-256 recorded "
                    f"at registration ({digest}): the artifact was changed after registration. "
                    f"Do not load it; restore the artifact store from a backup or register the "
                    f"model again",
                    details={**details, "check": "sha256", "actual": exc.details.get("actual")},
                ) from exc
            except NotFoundError as exc:
                raise NotFoundError(
                    f"{refusing}model {mv.ref}: file {name!r} (sha256 {digest}) is missing from "
                    f"the artifact store {self.artifacts.files.url}: restore it from a backup or "
                    f"register the model again",
                    details={**details, "check": "exists"},
                ) from exc
        return out

    def _verify_target(
        self, conn: Connection, model: str, version: int, alias: str, current: int | None
    ) -> None:
        """Refuse an alias move to a version whose files fail their check. No move skips it,
        ``force`` and rollbacks included: an alias on unloadable bytes would stop every server
        that reads it. Checked inside the move's transaction, on the version actually moved to."""
        mv = q.get_version(conn, model, version)
        assert mv is not None
        held = f"{model}:{current}" if current is not None else "nothing"
        self._read_checked(mv, f"refusing to move alias {alias!r} to {mv.ref} ({held} keeps it): ")

    def _require_model(self, conn: Connection, model: str) -> str:
        task = q.model_task(conn, model)
        if task is None:
            names = q.model_names(conn)
            known = (
                f"models are {', '.join(names)}"
                if names
                else "the registry has no models yet (`loopml train` registers one)"
            )
            raise NotFoundError(
                f"no model {model!r} in the registry: {known}",
                details={"model": model, "models": names},
            )
        return task

    def _require_version(self, conn: Connection, model: str, version: int) -> None:
        self._require_model(conn, model)
        if isinstance(version, bool) or not isinstance(version, int):
            raise UsageError(
                f"model {model!r}: a version is an int, not {version!r}",
                details={"model": model, "version": version},
            )
        if q.get_version(conn, model, version) is None:
            versions = q.version_numbers(conn, model)
            raise NotFoundError(
                f"model {model!r} has no version {version}: "
                f"versions are {', '.join(map(str, versions))}",
                details={**where(model, version), "versions": versions},
            )

    def _resolve(self, conn: Connection, model: str, ref: int | str) -> int:
        if isinstance(ref, bool) or not isinstance(ref, int | str):
            raise UsageError(
                f"model {model!r}: {ref!r} is not a version number, 'latest' or an alias",
                details={"model": model, "ref": repr(ref)},
            )
        if isinstance(ref, str) and _DIGITS.fullmatch(ref.strip()):
            ref = int(ref.strip())
        if isinstance(ref, int):
            self._require_version(conn, model, ref)
            return ref
        if ref == "latest":
            return q.version_numbers(conn, model)[-1]
        version = q.holder(conn, model, ref)
        if version is None:
            held = q.alias_map(conn, model)
            raise NotFoundError(
                f"model {model!r} has no alias {ref!r}; {describe_aliases(held)}. "
                f"Ask for a version number or 'latest' instead",
                details={"model": model, "alias": ref, "aliases": held},
            )
        return version

    def _refuse_same(self, model: str, version: int, alias: str, current: int | None) -> None:
        if current == version:
            raise ConflictError(
                f"model {model}:{version} already holds alias {alias!r}; nothing to move",
                details={**where(model, version), "alias": alias},
            )

    def _refuse_gated(self, model: str, alias: str, what: str) -> None:
        if alias in self.gated_aliases:
            raise UsageError(
                f"alias {alias!r} of model {model!r} is gated: it cannot be {what} directly; "
                f"use promote (through the evaluation gate, or with force and a reason)",
                details={"model": model, "alias": alias},
            )

    def _check_gate(
        self,
        conn: Connection,
        model: str,
        version: int,
        alias: str,
        current: int | None,
        evaluation: Evaluation | None,
    ) -> None:
        if evaluation is not None and evaluation.passed:
            return
        ref = f"{model}:{version}"
        holder = f"{model}:{current}" if current is not None else "nothing (the alias is free)"
        fix = f"Run `loopml evaluate {ref} --against {alias}`, or promote with --force and a reason"
        details: dict[str, Any] = {**where(model, version), "alias": alias, "holder": current}
        if evaluation is not None:
            details["evaluation_id"] = evaluation.id
            raise GateError(
                f"refusing to promote {ref} to {alias!r}: its latest evaluation against {holder} "
                f"(evaluation {evaluation.id}) failed. Train a better version, or promote with "
                f"--force and a reason",
                details=details,
            )
        others = sorted(
            {e.against_version for e in q.list_evaluations(conn, model, version)}, key=str
        )
        if others:
            against = ", ".join(f"{model}:{v}" if v is not None else "no holder" for v in others)
            details["evaluated_against"] = others
            raise GateError(
                f"refusing to promote {ref} to {alias!r}: it was evaluated against {against}, but "
                f"{alias!r} is now held by {holder}. {fix}",
                details=details,
            )
        raise GateError(
            f"refusing to promote {ref} to {alias!r}: no evaluation of it against {holder} "
            f"exists. {fix}",
            details=details,
        )


def _latest_against(evaluations: list[Evaluation], against: int | None) -> Evaluation | None:
    matching = [e for e in evaluations if e.against_version == against]
    return matching[-1] if matching else None
