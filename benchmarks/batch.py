"""Batch prediction benchmark: every one of the 336,776 flights predicted Parquet to Parquet.

The reference model (LightGBM, 200 trees of 63 leaves, trained on every labelled flight) predicts
the whole training set, written by ``features.build(labelled_only=False)`` as Parquet, with the
local engine: read in chunks, encoded, predicted, written, end to end with the I/O and the model's
loading. It is printed beside the bare booster predicting the same rows from an in-memory numpy
matrix (the limit), in the same run, runs interleaved: the ratio is the median of each run's
ratio to the limit's run just before it. Also shown, not held to the target: the same rows given
as request features only (their features computed per chunk), and, with --ray, the Ray engine on
a local Ray.

    python benchmarks/batch.py [--repeat 7] [--chunk-rows 65536] [--ray] [--json]

Target (DESIGN.md): >= 0.8 x the booster on a numpy matrix.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from loopml import Project
from loopml.demo import table_csv
from loopml.demo._ingest import DEMO_SPEC
from loopml.serving import predict_file

TARGET = 0.8


def setup(root: Path) -> Project:
    root.mkdir(parents=True)
    (root / "loopml.yaml").write_text(DEMO_SPEC)
    project = Project.open(root)
    for name in ("planes", "weather", "flights"):
        project.data.ingest(name, [table_csv(name, root / f"{name}.csv")])
    return project


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--chunk-rows", type=int, default=65536)
    parser.add_argument("--ray", action="store_true", help="also time the Ray engine")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="loopml-bench-batch-"))
    try:
        project = setup(tmp / "project")
        snapshot = project.data.snapshot(note="benchmark").id
        version = project.models.train(snapshot=snapshot).version
        assert version is not None
        table = project.features.build(snapshot=snapshot, labelled_only=False).table
        rows = table.num_rows
        source = tmp / "flights.parquet"
        pq.write_table(table, source)
        requests = tmp / "requests.parquet"
        pq.write_table(table.select(project.features.feature_set.request), requests)
        model = project.models.load(version.version)
        booster = model.estimator
        x = model.encoding.matrix(table)
        out = tmp / "predictions.parquet"

        def ours() -> float:
            start = time.perf_counter()
            predict_file(project, source, out, ref=version.version, chunk_rows=args.chunk_rows)
            return time.perf_counter() - start

        def limit() -> float:
            start = time.perf_counter()
            booster.predict(x)
            return time.perf_counter() - start

        ours(), limit()  # warm-up: imports, page cache
        ours_s, limit_s = [], []
        for _ in range(args.repeat):
            limit_s.append(limit())
            ours_s.append(ours())
        assert pq.read_metadata(out).num_rows == rows
        start = time.perf_counter()
        predict_file(
            project,
            requests,
            tmp / "from-requests.parquet",
            ref=version.version,
            snapshot=snapshot,
            chunk_rows=args.chunk_rows,
        )
        requests_s = time.perf_counter() - start
        ray_s = None
        if args.ray:
            start = time.perf_counter()
            predict_file(
                project,
                source,
                tmp / "ray.parquet",
                ref=version.version,
                engine="ray",
                chunk_rows=args.chunk_rows,
            )
            ray_s = time.perf_counter() - start
        ours_med, limit_med = statistics.median(ours_s), statistics.median(limit_s)
        report = {
            "rows": rows,
            "trees": int(booster.num_trees()),
            "chunk_rows": args.chunk_rows,
            "limit_booster_numpy_s": round(limit_med, 3),
            "limit_rows_per_s": round(rows / limit_med),
            "parquet_to_parquet_s": round(ours_med, 3),
            "parquet_to_parquet_rows_per_s": round(rows / ours_med),
            # Each run is paired with the limit's run just before it, so that both saw the same
            # load on a shared machine; the median of those ratios.
            "ratio_to_limit": round(
                statistics.median(lim / our for lim, our in zip(limit_s, ours_s, strict=True)), 3
            ),
            "ratio_best_of": round(min(limit_s) / min(ours_s), 3),
            "target_ratio": TARGET,
            "requests_with_features_s": round(requests_s, 3),
            "requests_with_features_rows_per_s": round(rows / requests_s),
            "ray_s": round(ray_s, 3) if ray_s is not None else None,
            "ray_rows_per_s": round(rows / ray_s) if ray_s is not None else None,
        }
        report["meets_target"] = report["ratio_to_limit"] >= TARGET
        if args.json:
            print(json.dumps(report))
        else:
            print(
                f"batch prediction of {rows:,} flights, {report['trees']} trees, chunks of "
                f"{args.chunk_rows:,} rows (median of {args.repeat})"
            )
            print(f"{'what':<62}{'time':>9}{'rows/s':>12}")
            print(
                f"{'limit: bare booster on an in-memory numpy matrix':<62}"
                f"{limit_med:>8.3f}s{report['limit_rows_per_s']:>12,}"
            )
            print(
                f"{'loopml predict: Parquet in, Parquet out (local engine)':<62}"
                f"{ours_med:>8.3f}s{report['parquet_to_parquet_rows_per_s']:>12,}"
            )
            print(
                f"{'  ratio to the limit (best of runs: ' + str(report['ratio_best_of']) + ')':<62}"
                f"{report['ratio_to_limit']:>9.2f}  target >= {TARGET}"
            )
            print(
                f"{'request features only, features computed (not a target)':<62}"
                f"{requests_s:>8.3f}s{report['requests_with_features_rows_per_s']:>12,}"
            )
            if ray_s is not None:
                print(
                    f"{'Ray engine, local Ray (not a target)':<62}"
                    f"{ray_s:>8.3f}s{report['ray_rows_per_s']:>12,}"
                )
            print("target " + ("met" if report["meets_target"] else "NOT met"))
        project.close()
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
