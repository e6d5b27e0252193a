"""The model registry: versions with lineage, integrity-checked artifacts, aliases with an
append-only history, evaluation verdicts, gated promotion and one-command rollback.

It stores bytes; it does not know how to train or load a model. The training package hands it
named files and reads them back with :meth:`Registry.load_files`.
"""

from __future__ import annotations

from loopml.registry._records import AliasMove, Evaluation, ModelInfo, ModelVersion
from loopml.registry._registry import Registry

__all__ = ["AliasMove", "Evaluation", "ModelInfo", "ModelVersion", "Registry"]
