"""A project with a history, for the dashboard's tests and benchmark: 20 days of generated
events whose concept drifts on day 12, with damaged rows quarantined and a file whose producer
renamed a column held; version 1 trained and promoted by the loop on day 8; a challenger trained
on shuffled labels rolled back by its canary before the drift; a retrain on new data whose
canary stays undecided and is rolled back at its step's timeout (version 3); then the decay
alert after the drift (alert 1), the retrain it triggers, the gate, the canary and the promotion
of version 4; and version 5 in a canary when the history ends.

Built once in about ten seconds; tests copy the folder.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from loopml import Project
from loopml.controller import Controller, replay
from loopml.testing import STREAM_START, stream_spec, write_stream

DAYS, DRIFT_DAY, FIRST_DAY = 20, 12, 8
GATE = "log_loss: {max_change_rel: 0.05}"
RELAXED_GATE = "log_loss: {max_change_rel: 10.0}"
# Canary steps assigned by the event's id (the same in every run), retraining on recent days.
LOOP = """\
  triggers: {alerts: [decay], min_interval: 2d}
  retrain: {mode: stateless, window: 4d, min_rows: 200}
  rollout:
    strategy: canary
    unit: id
    canary: {steps: [0.2, 0.5, 1.0], min_labels: 150, step_timeout: 4d}
  monitor_every: 1d
"""


def day(n: float) -> datetime:
    return STREAM_START + timedelta(days=n)


def _shuffled(table: pa.Table, label: str) -> pa.Table:
    i = table.schema.get_field_index(label)
    order = np.random.default_rng(0).permutation(table.num_rows)
    return table.set_column(i, label, table[label].take(pa.array(order)))


def build_ui_project(root: Path) -> dict[str, Any]:
    """Build the project at ``root`` (an empty or new folder); return what it holds."""
    root.mkdir(parents=True, exist_ok=True)
    spec = stream_spec(loop=LOOP)
    (root / "loopml.yaml").write_text(spec.replace(GATE, RELAXED_GATE))
    files = write_stream(root / "incoming", days=DAYS, drift_day=DRIFT_DAY, per_hour=30)
    # Day 3 arrives with damaged rows: a category never declared, a number that is not one.
    lines = files[3].read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 2)[0] + ",zz," + lines[5].rsplit(",", 1)[1]
    parts = lines[9].split(",")
    parts[2] = "not-a-number"
    lines[9] = ",".join(parts)
    files[3].write_text("\n".join(lines) + "\n")
    renamed = root / "incoming" / "late-renamed.csv"
    head, *rows = files[4].read_text().splitlines()
    renamed.write_text("\n".join([head.replace("x2", "x_2"), *rows[:50]]) + "\n")
    with Project.open(root) as p:
        for f in files:
            p.data.ingest("events", [f], by="producer")
        held = p.data.ingest("events", [renamed], by="producer")
        ctl = Controller(p, holder="ui-fixture")
        ctl.step(day(FIRST_DAY))  # version 1, promoted by the loop
        label = p.monitoring.label_name()
        real_train = p.models.train

        def noisy_train(**kwargs: Any) -> Any:
            ts = kwargs.pop("training_set", None) or p.features.build(as_of=kwargs["as_of"])
            return real_train(training_set=replace(ts, table=_shuffled(ts.table, label)), **kwargs)

        p.models.train = noisy_train  # type: ignore[method-assign]
        ctl.trigger("a challenger trained on noise", by="ui-fixture")
        ctl.step(day(FIRST_DAY))  # version 2 on shuffled labels, in a canary
        p.models.train = real_train  # type: ignore[method-assign]
        table = p.features.build(labelled_only=False).table
        replay(p, table, start=day(FIRST_DAY), until=day(DRIFT_DAY - 1), controller=ctl)
        (root / "loopml.yaml").write_text(spec)  # the real gate for what follows
    with Project.open(root) as p:
        ctl = Controller(p, holder="ui-fixture")
        table = p.features.build(labelled_only=False).table
        replay(p, table, start=day(DRIFT_DAY - 1), until=day(20), controller=ctl)
        ctl.lease.release()
        return {
            "model": p.models.name,
            "aliases": p.registry.aliases(p.models.name),
            "timeline": ctl.timeline(),
            "held": [r.status for r in held],
        }
