"""The model registry: versions with lineage, integrity-checked artifacts, aliases with an
append-only history, evaluation verdicts, gated promotion and one-command rollback.

It stores bytes; it does not know how to train or load a model. The training package hands it
named files and reads them back with :meth:`Registry.load_files`.
"""

from __future__ import annotations

from loopml.registry._records import AliasMove, Evaluation, ModelInfo, ModelVersion
from loopml.registry._registry import Registry

# Queries inside a caller's transaction on the metadata store (a read model such as the
# dashboard's pages reads aliases and arrivals beside its own queries).
from loopml.registry._sql import alias_map, latest_arrival

__all__ = [
    "AliasMove",
    "Evaluation",
    "ModelInfo",
    "ModelVersion",
    "Registry",
    "alias_map",
    "latest_arrival",
]
