"""The drafted ``loopml.yaml``, section by section, from a sample's facts."""

from __future__ import annotations

import json
import math
import re
import textwrap
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from loopml.data import ColumnSchema, name_words
from loopml.draft._facts import Draft, Facts
from loopml.spec import (
    NAME_PATTERN,
    SCHEMA_COMMENT,
    STORAGE,
    CheckSpec,
    format_duration,
    parse_duration,
    parse_spec,
)

_YAML_WORDS = {"yes", "no", "true", "false", "null", "on", "off", "y", "n", "~"}
_MONITOR_ROWS = 200  # a monitoring window should hold this many events (labels judged from 200)
_WINDOW_EVENTS = (5, 20)  # window features over about this many of an entity's events


class Drafter(Facts):
    """Writes the sample's facts out as a whole project spec."""

    def draft(self) -> Draft:
        text = self._render()
        parse_spec(text, file="loopml.yaml (draft)")  # the draft is valid as written
        return Draft(
            text=text,
            source=self.source,
            file=str(self.path),
            rows=self.table.num_rows,
            sampled=self.s.sampled,
            choices=self.choices,
            to_decide=self.to_decide,
        )

    def _render(self) -> str:
        parts = [
            self._header(),
            f"project: {self.name}\n",
            STORAGE.format(name=self.name),
            self._sources(),
            self._entities_text(),
            self._features(),
            self._model(),
            self._serving(),
            self._monitoring(),
            self._loop(),
        ]
        return "\n".join(p for p in parts if p)

    def _header(self) -> str:
        rows = self.table.num_rows
        what = f"the first {rows:,} rows of" if self.s.sampled else f"{rows:,} rows of"
        self.to_decide.append(
            "what the model predicts: fill in features.label (a commented placeholder near the "
            "end of features), then remove from features.request the columns it is computed "
            "from (they are the answer)"
        )
        self.to_decide.append(
            "whether each column in features.request is known when a prediction is made "
            "(remove outcomes recorded after the event)"
        )
        lines = [
            f"# loopml project spec, drafted by `loopml init --from` from {what} {self.path.name}.",
            SCHEMA_COMMENT.rstrip("\n"),
            "#",
            "# TO DECIDE before training (everything else has a default that suits the sample):",
        ]
        for t in self.to_decide:
            lines += textwrap.wrap(t, 96, initial_indent="#  - ", subsequent_indent="#    ")
        lines.append(
            "# `loopml spec check` validates this file; `loopml features show` lists the features."
        )
        return "\n".join(lines) + "\n"

    def _sources(self) -> str:
        s = self.source
        fmt = self.s.fmt
        lines = [
            "# The sample's source: one kind of row.",
            "sources:",
            f"  {s}:",
            f"    format: {fmt}",
        ]
        lines.append(f"    path: {_yaml(self._path_glob())}       # what `loopml ingest {s}` reads")
        if self.timestamp:
            lines.append(f"    timestamp: {_yaml(self.timestamp)}")
        if self.entities:
            lines.append(f"    entity_keys: [{', '.join(_yaml(e) for e in self.entities)}]")
        if self.primary_key:
            lines.append(f"    primary_key: [{', '.join(_yaml(k) for k in self.primary_key)}]")
        lines += self._checks()
        if self.s.fmt == "csv" and (self.s.renamed or self.s.csv.delimiter != ","):
            lines.append("    csv:")
            if self.s.csv.delimiter != ",":
                lines.append(f"      delimiter: {json.dumps(self.s.csv.delimiter)}")
            if self.s.renamed:
                renames = ", ".join(f"{old!r} -> {new}" for old, new in self.s.renamed.items())
                lines.append(f"      # the file's header names {renames}: these names replace it")
                assert self.s.csv.column_names is not None
                lines.append(
                    f"      column_names: [{', '.join(_yaml(n) for n in self.s.csv.column_names)}]"
                )
                self.choose(
                    f"sources.{s}.csv.column_names",
                    ", ".join(f"{old!r} -> {new}" for old, new in self.s.renamed.items()),
                    "feature names must be identifiers (an unnamed first column is a row number)",
                )
        lines += [
            "    schema:",
            "      columns:                    # the sample's types; edit them if later files differ",
        ]
        width = max(len(_yaml(c.name)) for c in self.schema.columns) + 1
        for c in self.schema.columns:
            decl, comment = self._column(c)
            if decl is None:
                lines.append(f"        # {_yaml(c.name)}: {comment}")
                continue
            lines.append(
                f"        {(_yaml(c.name) + ':').ljust(width)} {decl}"
                + (f"   # {comment}" if comment else "")
            )
        return "\n".join(lines) + "\n"

    def _checks(self) -> list[str]:
        """History older than the default floor of event times is real data: no floor."""
        floor = CheckSpec().not_before
        if self.timestamp is None or floor is None:
            return []
        earliest = self.col(self.timestamp).observed.get("min")
        if earliest is None or str(earliest) >= floor.strftime("%Y-%m-%d"):
            return []
        self.choose(
            f"sources.{self.source}.checks.not_before",
            "null (no floor)",
            f"the sample goes back to {str(earliest)[:10]}, before the default floor "
            f"{floor:%Y-%m-%d}",
        )
        return [
            "    checks:",
            f"      not_before: null            # the sample starts {str(earliest)[:10]}: no floor",
        ]

    def _column(self, c: ColumnSchema) -> tuple[str | None, str]:
        obs = c.observed
        if c.type == "null":
            return None, "no value in the sample: typed by its first values (or declare its type)"
        if c.name == self.timestamp:
            return None, f"the event time ({obs.get('min', '?')} .. {obs.get('max', '?')})"
        fields = [f"type: {c.type}"]
        comment = ""
        if c.role == "id":
            fields.append("role: id")
            comment = "an identifier: no categories, no range"
        elif (
            c.type == "string"
            and c.categories is None
            and "later half" in str(obs.get("categories", ""))
        ):
            fields.append("categories: open")
            comment = f"{obs.get('distinct', 0):,} values, new ones keep arriving"
        elif c.categories is not None:
            comment = (
                f"{len(c.categories)} values: checked at ingest (unseen ones are warned about)"
            )
        elif "min" in obs and c.type in ("int64", "float64"):
            comment = f"{_num(obs['min'])} .. {_num(obs['max'])}"
        elif "distinct" in obs:
            comment = f"{obs['distinct']:,} values"
        return "{" + ", ".join(fields) + "}", comment

    def _entities_text(self) -> str:
        if not self.entities:
            return ""
        lines = [
            "# Named join keys (entity -> its key columns), for lookups and windows.",
            "entities:",
        ]
        for e in self.entities:
            lines.append(f"  {_entity(e)}: [{_yaml(e)}]")
        return "\n".join(lines) + "\n"

    def _request(self) -> list[str]:
        out = []
        for c in self.schema.columns:
            if c.type == "null" or not re.match(NAME_PATTERN, c.name):
                continue
            if c.role == "id" and c.name not in self.entities:
                continue
            out.append(c.name)
        return out

    def _features(self) -> str:
        s = self.source
        request = self._request()
        skipped = [c.name for c in self.schema.columns if c.name not in request]
        self.choose(
            "features.request",
            f"[{', '.join(request)}]",
            "the sample's columns"
            + (f", less identifiers and empty columns ({', '.join(skipped)})" if skipped else ""),
        )
        lines = [
            "# One definition of every feature, for training sets and requests alike.",
            "features:",
            f"  event: {{source: {s}}}            # the rows predictions are about",
            "  # The columns that arrive with a request. Remove those only known after the event",
            "  # (outcomes): a model must not see the answer.",
            f"  request: [{', '.join(request)}]",
        ]
        windows = self._windows()
        if windows:
            lines += ["  windows:", *windows]
        derived = self._derived()
        if derived:
            lines += ["  derived:", *derived]
        lines += self._label_text()
        return "\n".join(lines) + "\n"

    def _derived(self) -> list[str]:
        if self.timestamp is None or not re.match(NAME_PATTERN, self.timestamp):
            return []
        ts = self.timestamp
        arr = self.table.column(ts)
        out, made = [], []
        if pa.types.is_timestamp(arr.type):
            hours = pc.unique(pc.hour(arr.drop_null()))
            if len(hours) > 1:
                out.append(f'    hour: "hour({ts})"')
                made.append("hour")
        out.append(f'    day_of_week: "day_of_week({ts})"')
        made.append("day_of_week")
        if self.span is not None and self.span > timedelta(days=60):
            out.append(f'    month: "month({ts})"')
            made.append("month")
        names = set(self.table.column_names)
        out = [line for line, m in zip(out, made, strict=True) if m not in names]
        made = [m for m in made if m not in names]
        if made:
            self.choose(
                "features.derived",
                ", ".join(made),
                f"date parts of {ts} (in UTC; give a time zone as a second argument)",
            )
        return out

    def _windows(self) -> list[str]:
        if self.timestamp is None or not self.entities:
            return []
        numeric = [
            c.name
            for c in self.schema.columns
            if c.type in ("int64", "float64") and c.role is None and re.match(NAME_PATTERN, c.name)
        ][:2]
        lines: list[str] = []
        for e in self.entities[:2]:
            rate = self._entity_rate(e)
            if rate is None:
                continue
            sizes = _window_sizes(rate, self.span)
            if not sizes:
                continue
            tile = _tile(sizes)
            name = f"{_entity(e)}_recent"
            aggs = ["events: count"] + [f"{_entity(n)}: mean({n})" for n in numeric]
            lines += [
                f"    {name}:",
                f"      source: {self.source}",
                f"      entity: {_entity(e)}",
                f"      windows: [{', '.join(sizes)}]",
                f"      tile: {tile}",
                f"      aggregates: {{{', '.join(aggs)}}}",
            ]
            per_day = rate * 86400
            self.choose(
                f"features.windows.{name}.windows",
                f"[{', '.join(sizes)}] (tile {tile})",
                f"about {_WINDOW_EVENTS[0]} and {_WINDOW_EVENTS[1]} of one {e}'s events at its "
                f"median rate in the sample ({_rate_text(per_day)})",
            )
        if lines:
            lines[:0] = [
                "    # Aggregates over each entity's earlier rows; a row counts once its tile is",
                "    # over. A column known only later than the event time needs the window's time.",
            ]
        return lines

    def _label_text(self) -> list[str]:
        lines = [
            "  # TO DECIDE: what the model predicts, as an expression over the columns, under a",
            "  # name that is not a column's; `delay` says how long after the event it is known.",
            "  # Uncomment it, then remove the columns it reads from `request` above.",
        ]
        if self.label:
            shown = "; ".join(
                f"{n} ({len(v)} values: {', '.join(map(str, v[:5]))}{', ...' if len(v) > 5 else ''})"
                for n, v in self.label
            )
            lines += textwrap.wrap(
                f"Columns that look like an outcome in the sample: {shown}.",
                96,
                initial_indent="  # ",
                subsequent_indent="  # ",
            )
            col, values = self.label[0]
            positive = values[-1]
            expr = f"{col} == {_literal(positive)}"
            name = f"{_entity(col)}_is_{re.sub(r'[^a-z0-9_]+', '_', str(positive).lower())}"[:60]
            self.choose(
                "features.label",
                "to decide",
                f"a placeholder: for example {expr} ({col} has {len(values)} values)",
            )
        else:
            numeric = [
                c.name
                for c in self.schema.columns
                if c.type in ("int64", "float64") and c.role is None
            ][:2]
            expr = f"{numeric[0]} > {numeric[1]}" if len(numeric) == 2 else "a_column > 0"
            name = "outcome"
            self.choose(
                "features.label",
                "to decide",
                "no column looks like an outcome: the placeholder is an example",
            )
        lines += [
            "  # label:",
            f"  #   name: {name}",
            f"  #   expr: {json.dumps(expr)}",
            "  #   delay: 1d",
        ]
        return lines

    def _model(self) -> str:
        split = "time" if self.timestamp else "random"
        self.choose(
            "model.split",
            f"{split}, test 0.2, valid 0.1",
            "the latest 20% of events are the test set (data that drifts is judged on its future)"
            if self.timestamp
            else "rows have no event time: a random split",
        )
        task = "binary"
        if self.label:
            n = len(self.label[0][1])
            task = "binary" if n == 2 else "multiclass"
        outcomes = {n for n, _ in self.label}
        slices = [
            c.name
            for c in self.schema.columns
            if c.categories is not None and 2 <= len(c.categories) <= 20 and c.name not in outcomes
        ][:3]
        lines = [
            "# The model: LightGBM by default (or any scikit-learn estimator as module:Class).",
            "model:",
            f"  name: {self.source}_model",
            f"  task: {task}                 # binary, multiclass or regression: match the label",
            f"  split: {{method: {split}, test: 0.2, valid: 0.1}}",
        ]
        if slices:
            lines.append(f"  slices: [{', '.join(slices)}]     # evaluated one value at a time")
        return "\n".join(lines) + "\n"

    def _serving(self) -> str:
        lines = [
            "# Serving (`loopml serve`): each request computed on demand. `loopml advise-serving`",
            "# measures whether precomputed (static) answers would do.",
            "serving:",
            "  mode: dynamic",
        ]
        if self.entities:
            lines.append(f"  static: {{key: [{', '.join(self.entities)}]}}   # if static is chosen")
        return "\n".join(lines) + "\n"

    def _monitoring(self) -> str:
        lines = [
            "# Monitoring (`loopml monitor`): drift, performance as labels arrive, alerts.",
            "monitoring:",
        ]
        if self._rate_per_second() is None:
            self.choose(
                "monitoring.window",
                "chosen from the prediction log",
                "rows have no event time: windows follow the time predictions are made, and "
                "`loopml monitor` chooses one that holds enough of them (and prints it)",
            )
            lines.append(
                "  # window: chosen by `loopml monitor` from the prediction log's rate; set it to fix it"
            )
        else:
            from loopml.monitoring import choose_window
            from loopml.spec import MonitoringSpec

            times = self.table.column(self.timestamp).drop_null()
            micros = pc.cast(pc.cast(times, pa.timestamp("us")), pa.int64()).to_numpy()
            preview = choose_window(MonitoringSpec(), micros)
            window = format_duration(preview.window)
            self.choose(
                "monitoring.window",
                f"chosen from the prediction log (about {window} at the sample's rate)",
                f"`loopml monitor` chooses the shortest window holding enough predictions at "
                f"the log's rate; on this sample: {preview.reason.split(';')[0]}",
            )
            lines.append(
                f"  # window: chosen by `loopml monitor` from the prediction log's rate (about "
                f"{window} at the sample's); set it to fix it"
            )
        lines += [
            "  alerts:",
            "    inputs_moved:                 # a quarter of the features beyond their natural variation",
            "      metric: drift.share",
            "      threshold: 0.25",
            "      for: 2",
            "    decay:                        # performance down by more than its natural variation",
            "      metric: performance.decayed",
            '      op: ">="',
            "      threshold: 1",
        ]
        return "\n".join(lines) + "\n"

    def _loop(self) -> str:
        rows = self.table.num_rows
        new_rows = max(200, _round_count(rows // 10))
        rate = self._rate_per_second()
        min_interval = "1d" if rate is None else _nice(max(_MONITOR_ROWS / rate, 86400), up=True)
        self.choose(
            "loop.triggers",
            f"new_rows {new_rows:,}; alerts inputs_moved, decay; at most every {min_interval}",
            f"a tenth of the sample's {rows:,} rows of new data, or an alert, retrains "
            "(no more often than one monitoring window)",
        )
        return (
            "# The continual-learning loop (`loopml loop step`): what retrains, how it is judged.\n"
            "loop:\n"
            "  triggers:\n"
            f"    new_rows: {new_rows}\n"
            "    alerts: [inputs_moved, decay]\n"
            f"    min_interval: {min_interval}\n"
            "  retrain: {mode: stateless}\n"
            "  rollout: {strategy: direct}     # or canary: a share of requests first\n"
        )


def parse_seconds(duration: str) -> float:
    return parse_duration(duration).total_seconds()


_STEPS = [(604800, "w"), (86400, "d"), (3600, "h"), (60, "m")]


def _nice(seconds: float, *, up: bool) -> str:
    """A round duration near ``seconds``: whole weeks from two weeks, whole days from two days,
    whole hours from two hours, else minutes."""
    for size, _unit in _STEPS:
        if seconds >= 2 * size or size == 60:
            n = math.ceil(seconds / size) if up else max(1, round(seconds / size))
            return format_duration(timedelta(seconds=max(n, 1) * size))
    return "1m"  # pragma: no cover


def _window_sizes(rate: float, span: timedelta | None) -> list[str]:
    sizes: list[str] = []
    limit = span.total_seconds() / 2 if span else math.inf
    for events in _WINDOW_EVENTS:
        seconds = min(events / rate, limit)
        size = _nice(seconds, up=False)
        if size not in sizes:
            sizes.append(size)
    return sizes


def _tile(sizes: list[str]) -> str:
    """The largest of 1d, 1h, 5m that divides every window."""
    secs = [parse_seconds(s) for s in sizes]
    for tile, size in (("1d", 86400), ("1h", 3600), ("5m", 300)):
        if all(s % size == 0 for s in secs):
            return tile
    return "1m"


def _rate_text(per_day: float) -> str:
    if per_day >= 1:
        return f"{per_day:,.1f} a day"
    return f"{per_day * 7:,.2f} a week"


def _round_count(n: int) -> int:
    if n < 100:
        return n
    magnitude = 10 ** (len(str(n)) - 2)
    return int(round(n / magnitude) * magnitude)


def _num(x: Any) -> str:
    if isinstance(x, float) and not x.is_integer():
        return f"{x:.4g}"
    return str(int(x)) if isinstance(x, int | float) else str(x)


def _entity(column: str) -> str:
    """A lower-case identifier from a column name: HomeTeam -> home_team, customer_id ->
    customer (an entity is named by the thing, not by its id)."""
    words = name_words(column)
    if len(words) > 1 and words[-1] in ("id", "key", "name", "uuid"):
        words = words[:-1]
    name = "_".join(words) or "value"
    return name if re.match(r"[a-z_]", name) else f"v_{name}"


def _yaml(name: str) -> str:
    """A YAML scalar for a name: plain when safe, else quoted."""
    if re.match(r"^[A-Za-z_][A-Za-z0-9_./*-]*$", name) and name.lower() not in _YAML_WORDS:
        return name
    return json.dumps(name)


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
