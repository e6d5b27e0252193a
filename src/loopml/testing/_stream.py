"""A small generated project whose concept drifts: for tests of the loop and the rollouts.

Events arrive hourly (``per_hour`` of them), each with two numeric inputs, a category and a
binary label known ``label_delay`` later. Until ``drift_day`` the label follows one rule; after
it the weights of the inputs change (concept drift) and the category's effect flips, so a model
trained before the drift decays and a retrained one recovers. Everything is generated from a
seed; nothing is downloaded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

STREAM_START = datetime(2024, 1, 1, tzinfo=UTC)

STREAM_SPEC = """\
project: stream
sources:
  events:
    format: csv
    path: incoming/*.csv
    timestamp: ts
    primary_key: [id]
    schema:
      columns:
        c: {{categories: [a, b, c, d]}}
features:
  event: {{source: events}}
  request: [id, ts, x1, x2, c]
  label:
    name: y
    expr: "outcome == 1"
    delay: {label_delay}
  vector: [x1, x2, c]
model:
  name: stream_model
  task: binary
  params: {{n_estimators: 40, num_leaves: 15, learning_rate: 0.1, min_child_samples: 10}}
  split: {{method: time, test: 0.2, valid: 0.1}}
gate:
  metrics:
    log_loss: {{max_change_rel: 0.05}}
  backtest: 3d
monitoring:
  window: 1d
  sliding: 3d
  alerts:
    decay:
      metric: performance.decayed
      op: ">="
      threshold: 1
      sinks: [log]
loop:
{loop}
"""

DEFAULT_LOOP = """\
  triggers: {alerts: [decay], new_rows: null, monitoring: [], min_interval: 2d}
  retrain: {mode: stateless, window: 10d, min_rows: 200}
  rollout:
    strategy: canary
    canary: {steps: [0.2, 0.5, 1.0], min_labels: 150, step_timeout: 4d}
  monitor_every: 1d
"""


def probability(x1: np.ndarray, x2: np.ndarray, c: np.ndarray, drifted: np.ndarray) -> np.ndarray:
    """The true probability of the label, before and after the drift."""
    cat = np.select([c == "a", c == "b", c == "c"], [1.0, -1.0, 0.5], -0.5)
    before = 1.8 * x1 - 1.2 * x2 + cat
    after = -1.5 * x1 + 1.6 * x2 - cat
    return 1 / (1 + np.exp(-np.where(drifted, after, before)))


def write_stream(
    folder: Path,
    *,
    days: int = 40,
    per_hour: int = 12,
    drift_day: int | None = 20,
    seed: int = 7,
) -> list[Path]:
    """One CSV file of events per day under ``folder``; returns the files in time order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    n = 24 * per_hour
    for day in range(days):
        start = STREAM_START + timedelta(days=day)
        minutes = np.sort(rng.integers(0, 24 * 60, n))
        x1 = rng.normal(0, 1, n)
        x2 = rng.normal(0, 1, n)
        c = rng.choice(np.array(["a", "b", "c", "d"]), n)
        drifted = np.full(n, drift_day is not None and day >= drift_day)
        y = (rng.random(n) < probability(x1, x2, c, drifted)).astype(int)
        lines = ["id,ts,x1,x2,c,outcome"]
        for i in range(n):
            ts = start + timedelta(minutes=int(minutes[i]))
            lines.append(
                f"e{day:04d}{i:05d},{ts:%Y-%m-%dT%H:%M:%SZ},{x1[i]:.5f},{x2[i]:.5f},{c[i]},{y[i]}"
            )
        path = folder / f"day-{day:03d}.csv"
        path.write_text("\n".join(lines) + "\n")
        files.append(path)
    return files


def stream_spec(*, loop: str = DEFAULT_LOOP, label_delay: str = "1h") -> str:
    """The project's loopml.yaml, with the given ``loop:`` section (indented two spaces)."""
    return STREAM_SPEC.format(loop=loop.rstrip("\n"), label_delay=label_delay)
