"""A loopml project: its spec and its storage, opened once and passed around."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from loopml.data import Data, IngestResult, OnlineRefresh
from loopml.spec import ProjectSpec, load_spec
from loopml.storage import (
    ArtifactStore,
    EventLog,
    FileStore,
    OnlineStore,
    SqlMetadataStore,
    open_events,
    open_metadata,
    open_online,
)

if TYPE_CHECKING:
    from loopml.controller import Controller
    from loopml.features import Features
    from loopml.monitoring import Monitoring
    from loopml.registry import Registry
    from loopml.rollout import Experiments, Rollouts
    from loopml.serving import Serving
    from loopml.training import Models


class Project:
    """A project folder with a ``loopml.yaml``.

    >>> import tempfile
    >>> project = Project.init(tempfile.mkdtemp(), name="demo")
    >>> project.spec.project
    'demo'
    >>> project.close()
    """

    def __init__(self, root: Path, spec: ProjectSpec) -> None:
        self.root = root
        self.spec = spec
        self.store: SqlMetadataStore = open_metadata(spec.storage.metadata, root=root)
        self.lake_files = FileStore(spec.storage.lake, root=root)
        self.artifacts = ArtifactStore(FileStore(spec.storage.artifacts, root=root))
        self.data = Data(
            spec, root, self.store, self.lake_files, after_landing=self._keep_online_current
        )
        self._online: OnlineStore | None = None
        self._events: EventLog | None = None
        self._features: Features | None = None
        self._registry: Registry | None = None
        self._models: Models | None = None
        self._serving: Serving | None = None
        self._monitoring: Monitoring | None = None
        self._rollouts: Rollouts | None = None
        self._loop: Controller | None = None
        self._experiments: Experiments | None = None

    @property
    def monitoring(self) -> Monitoring:
        """Feedback, the monitored log, drift, performance over time, alerts and reports."""
        if self._monitoring is None:
            from loopml.monitoring import Monitoring

            self._monitoring = Monitoring(
                self.spec,
                root=self.root,
                store=self.store,
                files=self.lake_files,
                registry=self.registry,
                models=self.models,
                features=self.features,
                events=lambda: self.events,
            )
        return self._monitoring

    @property
    def serving(self) -> Serving:
        """Precomputation, in-process prediction and the HTTP app."""
        if self._serving is None:
            from loopml.serving import Serving, serving_parts

            # The project holds every part serving takes (structurally a HoldsServingParts).
            self._serving = Serving(serving_parts(self))
        return self._serving

    @property
    def open_features(self) -> Callable[[str | Path], tuple[Features, Callable[[], None]]]:
        """The opener of a project's features in a process of its own (a Ray batch worker):
        the module function :func:`open_features`, which pickles by reference."""
        return open_features

    @property
    def registry(self) -> Registry:
        """Model versions, aliases and their history, and integrity-checked artifacts."""
        if self._registry is None:
            from loopml.registry import Registry

            self._registry = Registry(self.store, self.artifacts)
        return self._registry

    @property
    def models(self) -> Models:
        """Training, the gate, promotion and rollback of the project's model."""
        if self._models is None:
            from loopml.training import Models

            self._models = Models(self.spec, self.features, self.registry)
        return self._models

    @property
    def rollouts(self) -> Rollouts:
        """Rollouts and experiments, with their counters (the metadata store, or Redis)."""
        if self._rollouts is None:
            from loopml.rollout import Rollouts
            from loopml.storage import open_counters

            self._rollouts = Rollouts(
                self.store, open_counters(self.spec.storage.counters, self.store)
            )
        return self._rollouts

    @property
    def experiments(self) -> Experiments:
        """A/B tests, bandits and interleaving over model versions (``Experiments(project)``)."""
        if self._experiments is None:
            from loopml.rollout import Experiments

            self._experiments = Experiments(
                rollouts=self.rollouts,
                models=self.models,
                registry=self.registry,
                monitoring=self.monitoring,
            )
        return self._experiments

    @property
    def loop(self) -> Controller:
        """The continual-learning loop of the project's model (``Controller(project)``)."""
        if self._loop is None:
            from loopml.controller import Controller

            self._loop = Controller(self)
        return self._loop

    @property
    def online(self) -> OnlineStore:
        """The online store (opened on first use: SQLite by default, or Redis)."""
        if self._online is None:
            self._online = open_online(self.spec.storage.online, root=self.root)
        return self._online

    @property
    def events(self) -> EventLog:
        """The event transport (opened on first use: an SQLite log by default, or Redis)."""
        if self._events is None:
            self._events = open_events(self.spec.storage.events, root=self.root)
        return self._events

    @property
    def features(self) -> Features:
        """Feature definitions used offline (training sets) and online (requests)."""
        if self._features is None:
            from loopml.features import Features

            self._features = Features(
                self.spec, self.data, lambda: self.online, lambda: self.events
            )
        return self._features

    def _keep_online_current(self, landed: IngestResult) -> OnlineRefresh | None:
        # Every landed file or release reaches the online store once it has been materialized:
        # a model promoted after an ingest is not served stale windows and lookups.
        if self.spec.features is None:
            return None
        return self.features.refresh_online(landed)

    @classmethod
    def open(cls, path: str | Path = ".") -> Project:
        """Open the project whose ``loopml.yaml`` is at ``path`` (a folder or the file)."""
        # The spec is read before any link is resolved: a link loop or a directory named
        # loopml.yaml is then the spec's one-line error, not resolve()'s RuntimeError.
        spec = load_spec(os.path.abspath(path))
        p = Path(path).resolve()
        root = p if p.is_dir() else p.parent
        return cls(root, spec)

    @classmethod
    def init(
        cls, path: str | Path = ".", *, name: str | None = None, force: bool = False
    ) -> Project:
        """Create a project folder with a commented template ``loopml.yaml`` (and the JSON
        Schema it points editors at), and open it."""
        from loopml._scaffold import write_project

        root = Path(path).resolve()
        write_project(root, name=name, force=force)
        return cls.open(root)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.release()  # a loop stepped through the facade frees its lease with the project
        for backend in (self._online, self._events):
            if backend is not None:
                backend.close()
        close = getattr(self._rollouts.counters if self._rollouts else None, "close", None)
        if close is not None:
            close()
        self.store.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_features(root: str | Path) -> tuple[Features, Callable[[], None]]:
    """The features of the project at ``root``, opened in this process, and what closes them.

    A Ray batch worker runs in a process of its own, where no composition root has built the
    parts: the composition root hands serving this function (a module-level one, so that Ray
    pickles it by reference) and serving never imports the project itself."""
    project = Project.open(root)
    try:
        return project.features, project.close
    except BaseException:
        project.close()  # features that failed to build leave no store open behind them
        raise
