"""A registered version as loopml uses it: its files read through the registry (each checked
against the SHA-256 recorded at registration, the record compared with the registry's), its
models built from them (a scikit-learn model loads only the types recorded when it was saved),
and the one smoke test that decides whether a loaded version may serve.

Every part of loopml that loads a version goes through :class:`VerifiedVersion`
(``Models.verified`` and ``Models.load_verified``; rollout's experiment set-up, which reads its
control's files itself, is the one left to move), and the gate, a forced promotion,
``Models.smoke`` and a serving worker's holder all run :func:`smoke`: a version the gate
passes is one every worker serves, and a version a worker refuses never passes the gate.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from loopml.errors import UsageError
from loopml.registry import ModelVersion, Registry
from loopml.training._model import Model
from loopml.training._train import holdout_files

TEST_FILE = "test.parquet"
_SMOKE = {"check": "smoke", "file": TEST_FILE}


@dataclass(frozen=True)
class VerifiedVersion:
    """A version's files, each checked against its recorded SHA-256; made by
    :func:`verified_version` (or :meth:`only`), never from bytes read another way."""

    version: ModelVersion
    files: Mapping[str, bytes]

    def model(self) -> Model:
        """The registered artifact (the model a worker serves)."""
        return Model.from_files(self.files, self.version.trusted_types)

    def holdout(self) -> Model | None:
        """The held-out model of a refitted version (the one its metrics come from), else
        None."""
        held = holdout_files(self.files)
        return Model.from_files(held, self.version.trusted_types) if held else None

    def test(self) -> pa.Table:
        """The rows the version was tested on, kept with it at registration."""
        if TEST_FILE not in self.files:
            raise UsageError(
                f"{self.version.ref} was registered without its test set ({TEST_FILE}): it can be "
                "neither smoke-tested nor judged by the gate; register it with its test rows",
                details={**_SMOKE, "model": self.version.model, "version": self.version.version},
            )
        return test_table(self.files)

    def only(self, names: Iterable[str]) -> VerifiedVersion:
        """The same version with only the files named (what a remote worker needs)."""
        wanted = set(names)
        return VerifiedVersion(self.version, {k: v for k, v in self.files.items() if k in wanted})


def verified_version(registry: Registry, mv: ModelVersion) -> VerifiedVersion:
    """Read ``mv``'s files from ``registry``; :class:`~loopml.errors.IntegrityError` (naming the
    file) when one differs from what was registered, NotFoundError when one is missing."""
    return VerifiedVersion(mv, registry.load_files(mv))


def test_table(files: Mapping[str, bytes]) -> pa.Table:
    """The test rows among a version's files (read them with :class:`VerifiedVersion`)."""
    if TEST_FILE not in files:
        raise UsageError(
            "this version was registered without its test set; it cannot go through the gate",
            details=_SMOKE,
        )
    return pq.read_table(io.BytesIO(files[TEST_FILE]))


def smoke(model: Model, test: pa.Table, rows: int) -> int:
    """The smoke test, the one rule for every part of loopml that lets a version serve.

    The first ``rows`` rows of the version's own test set (``gate.smoke_rows``; all of them when
    there are fewer) are predicted in one batch by the loaded model. It fails, with a
    :class:`UsageError` whose ``details["check"]`` is ``smoke``, when there is no row to predict,
    when predicting raises, when the output is not one prediction a row (``(n,)``, or ``(n,
    classes)`` for multiclass), or when any value is NaN or infinite. Returns the rows predicted.
    """
    sample = test.slice(0, min(rows, test.num_rows))
    n = sample.num_rows
    if n == 0:
        # Nothing predicted shows nothing: a version is not let through on no evidence.
        raise UsageError(
            "its test set holds no rows: there is nothing to smoke-test it on", details=_SMOKE
        )
    try:
        out = np.asarray(model.predict(sample), dtype=float)
    except Exception as exc:  # whatever it raises, the version must not serve
        raise UsageError(
            f"predicting its first {n:,} test rows raised {type(exc).__name__}: {exc}",
            details=_SMOKE,
        ) from exc
    # A manifest that disagrees with its booster (classes, task) predicts the wrong shape; the
    # single-row path would then read or write past its buffers.
    wanted = (n, len(model.classes or ())) if model.task == "multiclass" else (n,)
    if out.shape != wanted:
        raise UsageError(
            f"it predicted shape {out.shape} for {n:,} test rows; a {model.task} model "
            f"predicts {wanted}",
            details=_SMOKE,
        )
    bad = int(np.count_nonzero(~np.isfinite(out).reshape(n, -1).all(axis=1)))
    if bad:
        raise UsageError(
            f"it predicted NaN or infinity on {bad:,} of its first {n:,} test rows",
            details=_SMOKE,
        )
    return n
