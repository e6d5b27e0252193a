"""Batch prediction: a file of rows in, a Parquet file of predictions out, streamed in chunks.

The input (Parquet, or CSV, also gzipped) holds either every input of the model's vector (a
training set written by ``loopml features build``), and is predicted as it is, or only the request
features, and then each chunk's features are computed offline, point-in-time, from one pinned
snapshot of the lake (the same definitions as training and serving).

The output keeps the input's identifying columns (the request features present, and the columns
that are neither features, nor the label, nor audit columns starting with ``_``; an input column
named like an output column is left out) beside::

    binary      prediction (P(positive)), decision (prediction >= the model's threshold)
    regression  prediction (the value)
    ranking     prediction (the relevance score)
    multiclass  p_<class> for every class, decision (the likeliest class)
    all         model_version

Two engines run the same per-chunk code (so they give the same predictions, bit for bit):

- ``local`` reads with Arrow's streaming readers, predicts each chunk with the model's batch path
  and writes one Parquet file. Reading and encoding the next chunk, and writing the previous one,
  run in threads while the booster (which releases the GIL and uses every core) predicts.
- ``ray`` reads with Ray Data and predicts in a pool of actors, each rebuilding the model once from
  its registered files (sent through the object store) and, for request rows, opening the
  project's features with the composition root's opener (``ServingParts.open_features``). The driver gathers the scored blocks, in
  input order, into the same single Parquet file as the local engine; it is the one writer, which
  keeps the output identical and atomic, at the price of the driver's bandwidth.

Either way the output is written to a temporary file, synced and renamed: a crash leaves the
previous file or none, never half of one.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loopml import errors
from loopml.errors import BackendUnavailable, ReadError, UsageError
from loopml.serving._parts import HoldsServingParts, OpenFeatures, ServingParts, serving_parts
from loopml.training import Model

if TYPE_CHECKING:
    from loopml.features import Features
    from loopml.training import VerifiedVersion

__all__ = ["ENGINES", "predict_file"]

ENGINES = ("local", "ray")
RAY_ADDRESS_ENV = "LOOPML_RAY_ADDRESS"
_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".csv.gz")
_MODEL_FILES = ("model.json", "model.txt", "model.skops")
_CSV_BLOCK = 1 << 22
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError)

Progress = Callable[[int, int | None], None]
"""Called after each chunk with the rows done so far and the total (None when unknown: CSV)."""


@dataclass(frozen=True)
class _Plan:
    """What to read, how to get the model's inputs and what to write; the same on every engine
    and every worker."""

    inputs: Literal["features", "requests"]
    read: list[str]
    keep: list[str]
    version: int
    snapshot: str | None
    metadata: dict[bytes, bytes] = field(default_factory=dict)


@dataclass
class _Input:
    path: Path
    format: Literal["parquet", "csv"]
    schema: pa.Schema
    rows: int | None
    csv_types: dict[str, pa.DataType] = field(default_factory=dict)


def predict_file(
    project: ServingParts | HoldsServingParts,
    input: str | Path,
    output: str | Path,
    *,
    ref: str | int = "champion",
    engine: str = "local",
    chunk_rows: int = 65536,
    snapshot: str | None = None,
    progress: Progress | None = None,
    num_cpus: int | None = None,
) -> dict[str, Any]:
    """Predict every row of ``input`` (Parquet or CSV) with a registered version of the project's
    model and write the predictions to ``output`` (Parquet). Returns a summary.

    ``snapshot`` pins the lake used to compute features when the input has the request features
    only (default: one taken now). ``num_cpus`` sizes a local Ray started for the ``ray`` engine
    (default: every core); with ``LOOPML_RAY_ADDRESS`` set, that cluster is used instead.
    """
    started = time.perf_counter()
    project = serving_parts(project)
    if engine not in ENGINES:
        raise UsageError(
            f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}",
            details={"option": "engine", "value": engine},
        )
    if chunk_rows < 1:
        raise UsageError(f"chunk_rows must be at least 1, not {chunk_rows}")
    src_path, out_path = Path(input), Path(output)
    if not out_path.name.lower().endswith(_PARQUET):
        raise UsageError(
            f"output {out_path}: predictions are written as Parquet; name the file *.parquet",
            details={"file": str(out_path)},
        )
    if src_path.resolve() == out_path.resolve():
        raise UsageError(f"{src_path} is both the input and the output: write elsewhere")
    # Every file checked against the SHA-256 recorded at registration; the model's files are
    # kept for the Ray workers, which build the same model from them.
    verified = project.models.verified(ref)
    mv = verified.version
    model = verified.model()
    source = _open_input(src_path, _csv_types(project))
    plan = _plan(project, model, source, mv.version, snapshot)
    if plan.inputs == "requests" and plan.snapshot is None:
        pinned = project.data.snapshot(note=f"batch prediction of {src_path.name}").id
        plan = replace(plan, snapshot=pinned)
    schema = _output_schema(model, plan, source.schema)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            if engine == "local":
                build = (
                    _features_of(project.features, plan.snapshot)
                    if plan.inputs == "requests"
                    else None
                )
                rows, chunks = _run_local(model, plan, source, chunk_rows, build, writer, progress)
            else:
                rows, chunks = _run_ray(
                    project,
                    verified.only(_MODEL_FILES),
                    plan,
                    source,
                    chunk_rows,
                    writer,
                    progress,
                    num_cpus,
                )
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    return {
        "input": str(src_path),
        "output": str(out_path),
        "model": mv.model,
        "version": mv.version,
        "engine": engine,
        "inputs": plan.inputs,
        "snapshot": plan.snapshot,
        "rows": rows,
        "chunks": chunks,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds) if seconds > 0 else None,
        "columns": schema.names,
    }


# ----------------------------------------------------------------------------- the plan


def _csv_types(project: ServingParts) -> dict[str, pa.DataType]:
    """The declared types of the features, so that every CSV chunk (and every Ray block) reads
    them alike. Timestamps are left to Arrow: a CSV may write them without a zone, and the feature
    path casts them."""
    if project.spec.features is None:
        return {}
    from loopml.features import arrow_type

    types = {}
    for name, feature in project.features.feature_set.features.items():
        t = arrow_type(feature.type)
        if not pa.types.is_timestamp(t):
            types[name] = t
    return types


def _open_input(path: Path, csv_types: dict[str, pa.DataType]) -> _Input:
    name = path.name.lower()
    if not name.endswith(_PARQUET + _CSV):
        raise UsageError(
            f"input {path}: unknown file type; predict from .parquet or .csv (also .csv.gz)",
            details={"file": str(path)},
        )
    if not path.is_file():
        raise ReadError(
            f"input {path} does not exist or is not a file", details={"file": str(path)}
        )
    try:
        if name.endswith(_PARQUET):
            with pq.ParquetFile(path) as pf:
                return _Input(path, "parquet", pf.schema_arrow, pf.metadata.num_rows)
        # The header and the first block, for the names and types; the stream is opened again
        # with only the columns needed.
        reader = pacsv.open_csv(path, convert_options=pacsv.ConvertOptions(column_types=csv_types))
        schema = reader.schema
        reader.close()
        return _Input(path, "csv", schema, None, csv_types)
    except _ARROW_ERRORS as exc:
        kind = "Parquet" if name.endswith(_PARQUET) else "CSV"
        raise ReadError(
            f"cannot read {path} as {kind}: {exc}", details={"file": str(path)}
        ) from None


def _plan(
    project: ServingParts, model: Model, source: _Input, version: int, snapshot: str | None
) -> _Plan:
    names = source.schema.names
    declared = project.spec.features is not None
    fs = project.features.feature_set if declared else None
    request = list(fs.request) if fs is not None else []
    features = set(fs.features) if fs is not None else set()
    label = fs.label.name if fs is not None and fs.label is not None else model.label
    wanted = model.encoding.features
    missing_inputs = [f for f in wanted if f not in names]
    missing_request = [f for f in request if f not in names]
    if not missing_inputs:
        inputs: Literal["features", "requests"] = "features"
    elif request and not missing_request:
        inputs = "requests"
    else:
        need = f"every model input (missing: {', '.join(missing_inputs)})"
        if request:
            need += f" or every request feature (missing: {', '.join(missing_request)})"
        raise UsageError(
            f"{source.path} lacks columns: it needs {need}",
            details={
                "file": str(source.path),
                "missing_inputs": missing_inputs,
                "missing_request": missing_request,
            },
        )
    reserved = set(_output_names(model))
    keep = [c for c in request if c in names and c not in reserved]
    keep += [
        c
        for c in names
        if c not in features
        and c not in wanted
        and c not in keep
        and c != label
        and not c.startswith("_")
        and c not in reserved
    ]
    read = list(dict.fromkeys(keep + (wanted if inputs == "features" else request)))
    metadata = {
        b"loopml": orjson.dumps(
            {"model": project.models.name, "version": version, "inputs": inputs}
        )
    }
    return _Plan(inputs, read, keep, version, snapshot, metadata)


def _output_names(model: Model) -> list[str]:
    if model.task == "multiclass":
        return [*(f"p_{c}" for c in model.classes or []), "decision", "model_version"]
    if model.task == "binary":
        return ["prediction", "decision", "model_version"]
    return ["prediction", "model_version"]


def _output_schema(model: Model, plan: _Plan, input_schema: pa.Schema) -> pa.Schema:
    """The output's schema, known before any row is read (an empty input gives an empty file)."""
    ids = input_schema.empty_table().select(plan.keep)
    width = len(model.classes or []) if model.task == "multiclass" else 0
    scores = np.empty((0, width) if width else 0, dtype=np.float64)
    return _assemble(model, plan, _plain(ids), scores).schema


def _features_of(features: Features, snapshot: str | None) -> Callable[[pa.Table], pa.Table]:
    """The features of request chunks, point-in-time, from one pinned snapshot."""
    return lambda chunk: features.build_for(chunk, snapshot=snapshot)


# ------------------------------------------------------------------- the per-chunk path


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary columns (a pandas categorical saved as Parquet) as plain values, as the model's
    encoding compares them."""
    for i, col in enumerate(table.columns):
        if pa.types.is_dictionary(col.type):
            table = table.set_column(i, table.field(i).name, col.cast(col.type.value_type))
    return table


def _prepare(
    model: Model, plan: _Plan, chunk: pa.Table, build: Callable[[pa.Table], pa.Table] | None
) -> tuple[pa.Table, np.ndarray]:
    """The identifying columns of a chunk and the model's input matrix."""
    chunk = _plain(chunk)
    rows = build(chunk) if build is not None else chunk
    if rows.num_rows != chunk.num_rows:  # the feature path keeps every row, in order
        raise AssertionError(f"features of {chunk.num_rows} rows came back as {rows.num_rows}")
    try:
        x = model.encoding.matrix(rows)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise UsageError(f"the rows do not fit the model's inputs: {exc}") from None
    return chunk.select(plan.keep), x


def _scores(model: Model, x: np.ndarray) -> np.ndarray:
    if x.shape[0]:
        return model.predict_matrix(x)
    width = len(model.classes or []) if model.task == "multiclass" else 0
    return np.empty((0, width) if width else 0, dtype=np.float64)


def _assemble(model: Model, plan: _Plan, ids: pa.Table, scores: np.ndarray) -> pa.Table:
    n = ids.num_rows
    arrays = list(ids.columns)
    names = list(ids.column_names)
    if model.task == "multiclass":
        classes = list(model.classes or [])
        for k, c in enumerate(classes):
            arrays.append(pa.array(np.ascontiguousarray(scores[:, k]), type=pa.float64()))
            names.append(f"p_{c}")
        best = np.argmax(scores, axis=1) if n else np.empty(0, dtype=np.int64)
        arrays.append(pa.array(classes).take(pa.array(best, type=pa.int64())))
        names.append("decision")
    else:
        arrays.append(pa.array(scores, type=pa.float64()))
        names.append("prediction")
        if model.task == "binary":
            arrays.append(pa.array(scores >= model.threshold, type=pa.bool_()))
            names.append("decision")
    arrays.append(pa.array(np.full(n, plan.version, dtype=np.int64)))
    names.append("model_version")
    # The input's own metadata (a training set's snapshot) does not describe the predictions.
    return pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(plan.metadata)


def _score(
    model: Model, plan: _Plan, chunk: pa.Table, build: Callable[[pa.Table], pa.Table] | None
) -> pa.Table:
    ids, x = _prepare(model, plan, chunk, build)
    return _assemble(model, plan, ids, _scores(model, x))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A scored chunk in the writer's schema (types inferred per CSV block may differ)."""
    if table.schema.equals(schema, check_metadata=False):
        return table
    try:
        return table.select(schema.names).cast(schema)
    except _ARROW_ERRORS as exc:
        raise ReadError(
            f"a chunk of the input has other column types than the first one: {exc}"
        ) from None


# -------------------------------------------------------------------------- local engine


def _chunks(source: _Input, columns: list[str], chunk_rows: int) -> Generator[pa.Table]:
    """The input as tables of ``chunk_rows`` rows (the last one shorter)."""
    schema = source.schema
    opened = ExitStack()
    try:
        if source.format == "parquet":
            pf = opened.enter_context(pq.ParquetFile(source.path))
            batches: Iterator[pa.RecordBatch] = pf.iter_batches(
                batch_size=chunk_rows, columns=columns, use_threads=True
            )
            schema = pa.schema([schema.field(c) for c in columns])
        else:
            reader = pacsv.open_csv(
                source.path,
                read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK),
                convert_options=pacsv.ConvertOptions(
                    column_types=source.csv_types, include_columns=columns
                ),
            )
            opened.callback(reader.close)
            batches = iter(reader)
            schema = reader.schema
        buffered: list[pa.RecordBatch] = []
        size = 0
        for batch in batches:
            buffered.append(batch)
            size += batch.num_rows
            while size >= chunk_rows:
                table = pa.Table.from_batches(buffered, schema)
                yield table.slice(0, chunk_rows)
                rest = table.slice(chunk_rows)
                buffered, size = rest.to_batches(), rest.num_rows
        if size:
            yield pa.Table.from_batches(buffered, schema)
    except _ARROW_ERRORS as exc:
        raise ReadError(
            f"cannot read {source.path}: {exc}", details={"file": str(source.path)}
        ) from None
    finally:
        opened.close()


def _run_local(
    model: Model,
    plan: _Plan,
    source: _Input,
    chunk_rows: int,
    build: Callable[[pa.Table], pa.Table] | None,
    writer: pq.ParquetWriter,
    progress: Progress | None,
) -> tuple[int, int]:
    """Read and encode chunk i+1 and write chunk i-1 while chunk i is predicted."""
    chunks = _chunks(source, plan.read, chunk_rows)
    schema = writer.schema

    def next_prepared() -> tuple[pa.Table, np.ndarray] | None:
        chunk = next(chunks, None)
        return None if chunk is None else _prepare(model, plan, chunk, build)

    def write(table: pa.Table) -> None:
        writer.write_table(_conform(table, schema))

    rows = count = 0
    with (
        ThreadPoolExecutor(1, thread_name_prefix="loopml-read") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="loopml-write") as writing,
    ):
        pending: Future[None] | None = None
        ahead = reader.submit(next_prepared)
        try:
            while (item := ahead.result()) is not None:
                ahead = reader.submit(next_prepared)
                ids, x = item
                scored = _assemble(model, plan, ids, _scores(model, x))
                if pending is not None:
                    pending.result()
                pending = writing.submit(write, scored)
                rows += ids.num_rows
                count += 1
                if progress is not None:
                    progress(rows, source.rows)
            if pending is not None:
                pending.result()
        finally:
            # The generator may be running in the reader; close it only once it has stopped.
            wait([ahead])
            chunks.close()
    return rows, count


# ---------------------------------------------------------------------------- Ray engine


class _RayScorer:
    """Scores Ray Data batches. Ray makes one per actor, so the model is rebuilt once per actor
    from the files the driver read and checked (fetched from the object store)."""

    def __init__(
        self,
        shared: Mapping[str, Any],
        plan: _Plan,
        project_root: str,
        open_features: OpenFeatures,
    ) -> None:
        import ray

        verified = shared["model"]
        if isinstance(verified, ray.ObjectRef):
            verified = ray.get(verified)
        self.model = verified.model()
        self.plan = plan
        self.close: Callable[[], None] | None = None
        self.build: Callable[[pa.Table], pa.Table] | None = None
        if plan.inputs == "requests":
            # The composition root's opener (serving never opens the project itself).
            features, self.close = open_features(project_root)
            self.build = _features_of(features, plan.snapshot)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return _score(self.model, self.plan, batch, self.build)

    def __del__(self) -> None:
        close = getattr(self, "close", None)  # None when __init__ failed early
        if close is not None:
            close()


def _worker_error(exc: Exception) -> Exception:
    """The loopml error a worker raised, raised again on the driver (Ray Data wraps it in a
    UserCodeException that keeps only its traceback's text), or ``exc`` when there was none."""
    found = re.findall(r"^loopml\.errors\.(\w+): (.+)$", str(exc), flags=re.MULTILINE)
    if found:
        name, message = found[-1]
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, errors.LoopmlError):
            return cls(message, details={"engine": "ray"})
    return exc


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise BackendUnavailable(
            "the ray engine needs Ray Data: pip install 'loopml[ray]'",
            details={"engine": "ray", "extra": "ray"},
        ) from None
    return ray


def _run_ray(
    project: ServingParts,
    model: VerifiedVersion,
    plan: _Plan,
    source: _Input,
    chunk_rows: int,
    writer: pq.ParquetWriter,
    progress: Progress | None,
    num_cpus: int | None,
) -> tuple[int, int]:
    ray = _import_ray()
    from ray.data import DataContext

    started = False
    if not ray.is_initialized():
        address = os.environ.get(RAY_ADDRESS_ENV)
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=num_cpus or os.cpu_count() or 1,
                include_dashboard=False,
                log_to_driver=False,
            )
        started = True
    ctx = DataContext.get_current()
    saved = (
        ctx.execution_options.preserve_order,
        ctx.enable_progress_bars,
        ctx.print_on_execution_start,
    )
    # In input order, so that the gathered file lines up with the input row for row; the
    # caller's progress callback reports instead of Ray's bars.
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = ctx.print_on_execution_start = False
    try:
        path = str(source.path.resolve())
        if source.format == "parquet":
            ds = ray.data.read_parquet(path).select_columns(plan.read)
        else:
            ds = ray.data.read_csv(
                path,
                file_extensions=None,
                arrow_open_stream_args=(
                    {"compression": "gzip"} if path.lower().endswith(".gz") else None
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=source.csv_types, include_columns=plan.read
                ),
            )
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
        scored = ds.map_batches(
            _RayScorer,
            batch_size=chunk_rows,
            batch_format="pyarrow",
            zero_copy_batch=True,
            fn_constructor_kwargs={
                # Inside a dict, so that every actor gets the reference and fetches the bytes
                # from the object store (once per actor).
                "shared": {"model": ray.put(model)},
                "plan": plan,
                "project_root": str(project.root),
                "open_features": project.open_features,
            },
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
            num_cpus=1,
        )
        rows = count = 0
        schema = writer.schema
        for block in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            if not block.num_rows:
                continue
            writer.write_table(_conform(block, schema))
            rows += block.num_rows
            count += 1
            if progress is not None:
                progress(rows, source.rows)
        return rows, count
    except ray.exceptions.RayError as exc:
        raise _worker_error(exc) from exc
    finally:
        (
            ctx.execution_options.preserve_order,
            ctx.enable_progress_bars,
            ctx.print_on_execution_start,
        ) = saved
        if started:
            ray.shutdown()
