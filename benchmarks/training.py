"""Training benchmark: stateless against stateful retraining on the full flights set.

A first model is trained on January–November. Then, at December 24th, the model is refreshed
two ways: stateless (from scratch on every flight so far) and stateful (LightGBM warm start from
the first model on the December flights only). Both are measured on the same held-out rows, the
last week of December, which neither saw.

    python benchmarks/training.py [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml import Project
from loopml.demo import table_csv
from loopml.demo._ingest import DEMO_SPEC
from loopml.evaluation import metrics
from loopml.training._train import labels

DEC_1 = datetime(2013, 12, 1, tzinfo=UTC)
DEC_24 = datetime(2013, 12, 24, tzinfo=UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="loopml-bench-training-"))
    try:
        root = tmp / "project"
        root.mkdir()
        (root / "loopml.yaml").write_text(DEMO_SPEC)
        project = Project.open(root)
        for name in ("planes", "weather", "flights"):
            project.data.ingest(name, [table_csv(name, root / f"{name}.csv")])
        snapshot = project.data.snapshot(note="benchmark").id
        models = project.models
        first = models.train(snapshot=snapshot, as_of=DEC_1).version
        assert first is not None

        start = time.perf_counter()
        stateless = models.train(snapshot=snapshot, as_of=DEC_24)
        stateless_s = time.perf_counter() - start
        start = time.perf_counter()
        stateful = models.train(snapshot=snapshot, as_of=DEC_24, warm_start=str(first.version))
        stateful_s = time.perf_counter() - start

        held = models.features.build(snapshot=snapshot).table
        held = held.filter(
            pc.greater_equal(held["_event_time"], pa.scalar(DEC_24, held["_event_time"].type))
        )
        y, _ = labels("binary", held["delayed"])
        report = {"held_out_rows": held.num_rows}
        for name, result, seconds in (
            ("stateless", stateless, stateless_s),
            ("stateful", stateful, stateful_s),
        ):
            model = result.trained.model
            m = metrics("binary", y, model.predict(held), threshold=model.threshold)
            report[name] = {
                "train_rows": result.trained.sizes["train"],
                "fit_seconds": round(result.trained.seconds, 2),
                "total_seconds": round(seconds, 2),
                "pr_auc": round(float(m["pr_auc"]), 4),
                "log_loss": round(float(m["log_loss"]), 4),
                "trees": int(model.estimator.num_trees()),
            }
        first_model = models.load(first.version)
        m0 = metrics("binary", y, first_model.predict(held), threshold=first_model.threshold)
        report["no_retraining"] = {
            "pr_auc": round(float(m0["pr_auc"]), 4),
            "log_loss": round(float(m0["log_loss"]), 4),
        }
        report["speedup"] = round(
            report["stateless"]["fit_seconds"] / max(report["stateful"]["fit_seconds"], 1e-9), 1
        )
        if args.json:
            print(json.dumps(report))
        else:
            print(
                f"refresh at 2013-12-24, measured on the last week of December ({held.num_rows:,} flights)"
            )
            print(
                f"{'':<36}{'train rows':>12}{'fit s':>8}{'total s':>9}{'PR AUC':>9}{'log loss':>10}"
            )
            for name in ("stateless", "stateful"):
                r = report[name]
                label = (
                    "stateless (from scratch, Jan-Dec 24)"
                    if name == "stateless"
                    else "stateful (warm start, new rows)"
                )
                print(
                    f"{label:<36}{r['train_rows']:>12,}{r['fit_seconds']:>8.2f}{r['total_seconds']:>9.2f}{r['pr_auc']:>9.4f}{r['log_loss']:>10.4f}"
                )
            r = report["no_retraining"]
            print(
                f"{'no refresh (the Jan-Nov model)':<36}{'':>12}{'':>8}{'':>9}{r['pr_auc']:>9.4f}{r['log_loss']:>10.4f}"
            )
            print(f"stateful fits {report['speedup']}x faster")
        project.close()
        np.seterr(all="ignore")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
