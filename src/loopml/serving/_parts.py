"""The parts of a project that serving is built from, each named by what serving calls on it.

Serving never imports the project: the composition root (``Project.serving``, or the app
factory for a worker it starts) hands it a :class:`ServingParts`. The parts that cost something
to open (the online store, the event transport, the rollout counters) or that serving needs only
now and then (monitoring, for feedback and a bandit's update) are opened on first use, as the
project opens them. ``Runtime``, ``advise``, ``top_keys``, ``read_log`` and ``predict_file``
also accept any object that holds the parts as attributes (a ``Project`` does, structurally),
so that ``Runtime(project)`` keeps working; they take the parts from it once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from loopml.data import Data
    from loopml.features import Features
    from loopml.monitoring import Monitoring
    from loopml.registry import Registry
    from loopml.rollout import Rollouts
    from loopml.spec import ProjectSpec
    from loopml.storage import ArtifactStore, ByteStore, EventLog, FileStore, OnlineStore
    from loopml.training import Models

OpenFeatures = Callable[[str | Path], tuple["Features", Callable[[], None]]]
"""Opens the features of the project at a root in the calling process, and gives what closes
them: a module-level function of the composition root, so that Ray pickles it by reference."""


@dataclass(frozen=True)
class ServingParts:
    """What serving uses of a project: its spec, model, features, registry, lake and artifact
    files, and openers for the rollouts, the online store, the event transport and
    monitoring (called on first use; the project caches what they open), and the opener of the
    project's features in a process of its own (a Ray batch worker, given ``root``)."""

    spec: ProjectSpec
    root: Path  # only for a Ray worker, which opens the features in its own process
    data: Data
    models: Models
    features: Features
    registry: Registry
    lake_files: FileStore
    artifact_files: ByteStore
    open_rollouts: Callable[[], Rollouts]
    open_online: Callable[[], OnlineStore]
    open_events: Callable[[], EventLog]
    open_monitoring: Callable[[], Monitoring]
    open_features: OpenFeatures

    @property
    def rollouts(self) -> Rollouts:
        return self.open_rollouts()

    @property
    def online(self) -> OnlineStore:
        return self.open_online()

    @property
    def events(self) -> EventLog:
        return self.open_events()

    @property
    def monitoring(self) -> Monitoring:
        return self.open_monitoring()


class HoldsServingParts(Protocol):
    """An object holding serving's parts as attributes (a ``Project``, for one)."""

    @property
    def spec(self) -> ProjectSpec: ...

    @property
    def root(self) -> Path: ...

    @property
    def data(self) -> Data: ...

    @property
    def models(self) -> Models: ...

    @property
    def features(self) -> Features: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def lake_files(self) -> FileStore: ...

    @property
    def artifacts(self) -> ArtifactStore: ...

    @property
    def rollouts(self) -> Rollouts: ...

    @property
    def online(self) -> OnlineStore: ...

    @property
    def events(self) -> EventLog: ...

    @property
    def monitoring(self) -> Monitoring: ...

    @property
    def open_features(self) -> OpenFeatures: ...


def serving_parts(holder: ServingParts | HoldsServingParts) -> ServingParts:
    """The parts, taken once from ``holder`` (the ones opened on first use stay so)."""
    if isinstance(holder, ServingParts):
        return holder
    return ServingParts(
        spec=holder.spec,
        root=holder.root,
        data=holder.data,
        models=holder.models,
        features=holder.features,
        registry=holder.registry,
        lake_files=holder.lake_files,
        artifact_files=holder.artifacts.files,
        open_rollouts=lambda: holder.rollouts,
        open_online=lambda: holder.online,
        open_events=lambda: holder.events,
        open_monitoring=lambda: holder.monitoring,
        open_features=holder.open_features,
    )
