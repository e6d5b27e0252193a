"""What a sample shows: its event-time column, identifiers, entities, a key unique on it, the
columns that look like outcomes, and event rates; each choice recorded with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from loopml.data import ColumnSchema, infer_schema, name_words
from loopml.draft._sample import Sample, same_columns
from loopml.errors import ReadError
from loopml.spec import SchemaPolicy

_LABEL_WORDS = {"label", "target", "class", "y", "outcome", "result", "churn", "fraud", "default"}
_TIME_WORDS = {"time", "timestamp", "date", "datetime", "ts", "at", "when", "created", "day"}


@dataclass(frozen=True)
class Choice:
    """One decision the draft made, and why (printed by ``loopml init --from``)."""

    key: str
    value: str
    why: str


@dataclass
class Draft:
    """A drafted ``loopml.yaml`` and what it rests on."""

    text: str
    source: str
    file: str
    rows: int
    sampled: bool
    choices: list[Choice] = field(default_factory=list)
    to_decide: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "file": self.file,
            "rows": self.rows,
            "sampled": self.sampled,
            "choices": [c.__dict__ for c in self.choices],
            "to_decide": self.to_decide,
        }


class Facts:
    """The sample's facts, found once; :class:`loopml.draft._render.Drafter` writes them out."""

    def __init__(self, sample: Sample, path: Path, root: Path, name: str, source: str) -> None:
        self.s = sample
        self.table = sample.table
        self.path = path
        self.root = root
        self.name = name
        self.source = source
        self.choices: list[Choice] = []
        self.to_decide: list[str] = []
        rows = self.table.num_rows
        if rows == 0:
            raise ReadError(f"{path} holds no rows to draft from", details={"file": str(path)})
        self.timestamp = self._timestamp()
        self.schema = infer_schema(self.table, policy=SchemaPolicy(), timestamp=self.timestamp)
        self.span = self._span()
        self.entities = self._entities()
        if self.entities:  # entity keys are identifiers: inferred again, as ingest will
            self.schema = infer_schema(
                self.table,
                policy=SchemaPolicy(),
                timestamp=self.timestamp,
                entity_keys=self.entities,
            )
        self.primary_key = self._primary_key()
        self.label = self._label_candidates()

    def choose(self, key: str, value: Any, why: str) -> None:
        self.choices.append(Choice(key, value if isinstance(value, str) else str(value), why))

    # -- the facts

    def col(self, name: str) -> ColumnSchema:
        c = self.schema.column(name)
        assert c is not None
        return c

    def _timestamp(self) -> str | None:
        times = [
            f.name
            for f in self.table.schema
            if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)
        ]
        if not times:
            hint = [n for n in self.table.column_names if set(name_words(n)) & _TIME_WORDS]
            self.choose(
                f"sources.{self.source}.timestamp",
                "none",
                "no column holds dates or times"
                + (f" ({', '.join(hint)} named like one holds {self._kinds(hint)})" if hint else "")
                + ": rows have no event time, so training splits at random, no window "
                "features, monitoring by arrival time",
            )
            return None

        def score(n: str) -> tuple[int, int, int]:
            arr = self.table.column(n)
            named = bool(set(name_words(n)) & _TIME_WORDS)
            return (-arr.null_count, int(named), len(pc.unique(arr)))

        best = max(times, key=score)
        others = [t for t in times if t != best]
        self.choose(
            f"sources.{self.source}.timestamp",
            best,
            "the column of dates/times"
            + (
                f" with the fewest nulls and most distinct values (also: {', '.join(others)})"
                if others
                else ""
            ),
        )
        return best

    def _kinds(self, names: list[str]) -> str:
        kinds = sorted({str(self.table.column(n).type) for n in names})
        return "values of type " + ", ".join(kinds)

    def _span(self) -> timedelta | None:
        if self.timestamp is None:
            return None
        arr = self.table.column(self.timestamp)
        mm = pc.min_max(pc.cast(arr, pa.timestamp("s")) if pa.types.is_date(arr.type) else arr)
        lo, hi = mm["min"], mm["max"]
        if not lo.is_valid or not hi.is_valid:
            return None
        seconds = (hi.cast(pa.int64()).as_py() - lo.cast(pa.int64()).as_py()) / _per_second(
            arr.type
        )
        return timedelta(seconds=max(seconds, 1.0))

    def _entities(self) -> list[str]:
        """Columns naming the things rows are about: repeated identifiers (customer_id), or text
        with many distinct values each seen several times (a team, a shop)."""
        rows = self.table.num_rows
        found = []
        for c in self.schema.columns:
            if c.type not in ("string", "int64") or c.name == self.timestamp:
                continue
            arr = self.table.column(c.name)
            distinct = len(pc.unique(arr.drop_null()))
            if distinct < 2 or distinct > rows / 2:
                continue  # a constant, or one value per row or nearly (not an entity)
            if c.role == "id" and _is_row_number(arr):
                continue
            # Ten or more names, each on several rows, are things rows are about (teams, shops,
            # airports); fewer are more likely a property (a weather kind, a weekday).
            if c.role == "id" or (c.type == "string" and distinct >= 10):
                found.append((c.name, distinct))
        chosen = [n for n, _ in found[:3]]
        if chosen:
            described = ", ".join(f"{n} ({d:,} values)" for n, d in found[:3])
            self.choose(
                f"sources.{self.source}.entity_keys",
                f"[{', '.join(chosen)}]",
                f"columns naming what rows are about, each value seen on several rows: {described}",
            )
        else:
            self.choose(
                f"sources.{self.source}.entity_keys",
                "none",
                "no column names a repeated thing (an id or a name with many values): no "
                "entities, lookups or window features",
            )
        return chosen

    def _primary_key(self) -> list[str]:
        rows = self.table.num_rows
        cands: list[list[str]] = []
        for c in self.schema.columns:
            if c.role == "id" and not _is_row_number(self.table.column(c.name)):
                cands.append([c.name])
        if self.timestamp:
            cands += [[self.timestamp, e] for e in self.entities]
            if len(self.entities) >= 2:
                cands.append([self.timestamp, *self.entities[:2]])
        for key in cands:
            nulls = self._unique(key)
            if nulls is not None:
                self.choose(
                    f"sources.{self.source}.primary_key",
                    f"[{', '.join(key)}]",
                    f"unique on the sample's {rows:,} rows (duplicates of it are quarantined)"
                    + (
                        f"; {nulls} rows have a null in it and will be quarantined" if nulls else ""
                    ),
                )
                return key
        numbers = [c.name for c in self.schema.columns if _is_row_number(self.table.column(c.name))]
        for n in numbers:
            self.choose(
                f"sources.{self.source}.primary_key",
                f"[{n}]",
                f"{n} numbers the rows 1 to {rows:,} and nothing else is unique; if each file "
                "numbers its rows from 1 again, remove it (every later file would be duplicates)",
            )
            return [n]
        self.choose(
            f"sources.{self.source}.primary_key",
            "none",
            "no column (nor the event time with an entity) is unique on the sample: duplicate "
            "rows will not be detected",
        )
        return []

    def _unique(self, key: list[str]) -> int | None:
        """The rows with a null in ``key`` when it is unique on the others (at most 1% may be
        null: those rows are quarantined anyway), else None."""
        t = self.table.select(key).drop_null()
        nulls = self.table.num_rows - t.num_rows
        if nulls > 0.01 * self.table.num_rows:
            return None
        return nulls if t.group_by(key).aggregate([]).num_rows == t.num_rows else None

    def _label_candidates(self) -> list[tuple[str, list[Any]]]:
        """Columns that look like an outcome to predict: named so, or with two values."""
        out = []
        for c in self.schema.columns:
            if c.role == "id" or c.name == self.timestamp or c.type == "null":
                continue
            values = pc.unique(self.table.column(c.name).drop_null())
            named = bool(set(name_words(c.name)) & _LABEL_WORDS)
            if (named and len(values) <= 20) or len(values) == 2:
                out.append((c.name, sorted(values.to_pylist(), key=str)))
        out.sort(key=lambda kv: (not (set(name_words(kv[0])) & _LABEL_WORDS), kv[0]))
        return out[:3]

    # -- the text

    def _entity_rate(self, entity: str) -> float | None:
        """The median over entities of events per second, each over its own active span."""
        assert self.timestamp is not None
        arr = self.table.column(self.timestamp)
        seconds = pc.cast(
            pc.cast(arr, pa.timestamp("s", tz=getattr(arr.type, "tz", None))), pa.int64()
        )
        t = pa.table({"k": self.table.column(entity), "t": seconds}).drop_null()
        g = t.group_by("k").aggregate([("t", "min"), ("t", "max"), ("t", "count")])
        spans = pc.subtract(g.column("t_max"), g.column("t_min")).to_pylist()
        counts = g.column("t_count").to_pylist()
        rates = sorted((n - 1) / s for n, s in zip(counts, spans, strict=True) if n > 2 and s > 0)
        return rates[len(rates) // 2] if rates else None

    def _rate_per_second(self) -> float | None:
        if self.span is None:
            return None
        return self.table.num_rows / self.span.total_seconds()

    def _path_glob(self) -> str:
        """The sample's folder as a glob when every file of its kind there has the sample's
        columns (later deliveries, say); else the sample itself."""
        p = self.path.resolve()
        suffix = "".join(p.suffixes[-2:]) if p.name.endswith(".gz") else p.suffix
        siblings = sorted(f for f in p.parent.glob(f"*{suffix}") if f.is_file())
        same = [f for f in siblings if same_columns(f, p, self.s.fmt)]
        alike = len(siblings) > 1 and len(same) == len(siblings)
        target = p.parent / f"*{suffix}" if alike else p
        try:
            shown = str(target.relative_to(self.root.resolve()))
        except ValueError:
            shown = str(target)
        if alike:
            why = f"the {len(siblings)} {suffix} files beside the sample, all with its columns"
        elif len(siblings) > 1:
            why = (
                f"the sample itself: {len(siblings) - len(same)} other {suffix} files beside it "
                "have other columns (make it a glob when more files of this kind arrive)"
            )
        else:
            why = "the sample itself (make it a glob when more files arrive)"
        self.choose(f"sources.{self.source}.path", shown, why)
        return shown


def _per_second(t: pa.DataType) -> float:
    if pa.types.is_date(t):
        return 1.0
    return {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[t.unit]


def _is_row_number(arr: pa.ChunkedArray) -> bool:
    if not pa.types.is_integer(arr.type) or arr.null_count or len(arr) < 2:
        return False
    mm = pc.min_max(arr)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    return hi - lo + 1 == len(arr) and len(pc.unique(arr)) == len(arr)
