"""Reading CSV, JSON Lines and Parquet into Arrow, typed to a schema, losing nothing.

The fast path parses a whole file with Arrow's multi-threaded readers and the schema's types.
Only when that fails does a reader fall back: a CSV column that does not parse is read as text and
converted value by value; a JSON Lines file that does not parse is read line by line. Records the
parser cannot use at all (wrong field count, broken JSON) are returned as :class:`Rejected` with
their line and text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from loopml.data._coerce import Coerced, coerce, decode_utf8, fits
from loopml.data._lines import LineIndex
from loopml.data._schema import Schema, from_arrow, to_arrow
from loopml.spec import CsvOptions

_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to ([^:]+): (.*)", re.S)
_WIDER = {"bool": ("int64", "float64"), "int64": ("float64",), "date": ("timestamp",)}
WIDEN_SHARE = 0.5  # a column is "widened" when more than this share of its values needs it


class Unreadable(Exception):
    """The file as a whole is not data of its format; the batch goes to quarantine whole."""


@dataclass
class Rejected:
    """A record that never became a row: its line, its text and why."""

    line: int | None
    row: int | None
    raw: str
    code: str
    column: str | None
    value: str | None
    detail: str


@dataclass
class ReadOutcome:
    """What a reader made of one file."""

    table: pa.Table
    rows_read: int
    unparseable: dict[str, Coerced] = field(default_factory=dict)
    bad_encoding: dict[str, Coerced] = field(default_factory=dict)
    missing_fields: dict[str, np.ndarray] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    widened: dict[str, str] = field(default_factory=dict)
    new_columns: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict)
    typed: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict)  # untyped columns' first
    absent_columns: list[str] = field(default_factory=list)
    header: str | None = None
    raw_row: Callable[[np.ndarray], Located] | None = None

    def locate(self, rows: np.ndarray) -> Located:
        """Where table rows came from: 1-based lines (text formats), record numbers, text."""
        if self.raw_row is not None:
            return self.raw_row(rows)
        return Located(None, rows + 1, _rows_as_json(self.table, rows))


@dataclass
class Located:
    """Lines (None where not known), 1-based record numbers and original text of some rows."""

    lines: np.ndarray | None
    records: np.ndarray
    texts: list[str]


def open_buffer(path: str) -> pa.Buffer:
    """The file's bytes, memory-mapped (no copy)."""
    with pa.memory_map(path, "r") as source:
        return source.read_buffer()


def read(buf: pa.Buffer, fmt: str, schema: Schema | None, csv: CsvOptions) -> ReadOutcome:
    if fmt in ("csv", "jsonl"):
        _refuse_binary(buf, "CSV" if fmt == "csv" else "JSON Lines", csv.encoding)
    if fmt == "csv":
        outcome = _read_csv(buf, schema, csv)
    elif fmt == "jsonl":
        outcome = _read_jsonl(buf, schema)
    elif fmt == "parquet":
        outcome = _read_parquet(buf)
    else:  # pragma: no cover - the spec only allows the three
        raise Unreadable(f"unknown format {fmt!r}")
    _conform(outcome, schema)
    return outcome


_SNIFF = 1 << 16
_CONTROL = np.zeros(256, dtype=bool)
_CONTROL[[*range(0, 9), *range(14, 32), 127]] = True  # tab, LF, VT, FF and CR are text


def _refuse_binary(buf: pa.Buffer, label: str, encoding: str) -> None:
    """An image, an archive or a spreadsheet named .csv: its first 64 KiB hold NUL bytes and
    many control bytes (about one in ten of random bytes; text has none). A text file with a
    few corrupted bytes is not refused: its rows are checked one by one."""
    if encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32", "utf16", "utf32")):
        return
    head = np.frombuffer(buf, dtype=np.uint8, count=min(buf.size, _SNIFF))
    control = int(_CONTROL[head].sum())
    if control > 0.05 * len(head) and not head.all():
        at = int(np.argmin(head))  # the first NUL
        raise Unreadable(
            f"binary data, not {label} text ({control:,} control bytes in the first "
            f"{len(head):,}, a NUL byte at offset {at}); is it an image, an archive or a "
            "spreadsheet?"
        )


# ---------------------------------------------------------------------------------------- CSV


def _read_csv(buf: pa.Buffer, schema: Schema | None, opts: CsvOptions) -> ReadOutcome:
    if buf.size == 0:
        raise Unreadable("the file is empty")
    names = _csv_header(buf, opts)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise Unreadable(f"the header repeats column names: {', '.join(dup)}")
    # An untyped column (no value seen yet) is left to Arrow's inference.
    known = {c.name: c.arrow_type for c in schema.columns if c.type != "null"} if schema else {}
    overrides: dict[str, pa.DataType] = {}
    invalid: list[tuple[int | None, str, int, int]] = []

    def on_invalid(row: Any) -> str:
        invalid.append((row.number, row.text, row.expected_columns, row.actual_columns))
        return "skip"

    # With a header, declared names replace the header's (which is then skipped).
    renamed = opts.header and opts.column_names is not None
    read_opts = pacsv.ReadOptions(
        use_threads=True,
        block_size=1 << 22,
        column_names=opts.column_names if renamed or not opts.header else None,
        skip_rows=1 if renamed else 0,
        encoding=opts.encoding,
    )
    parse_opts = pacsv.ParseOptions(
        delimiter=opts.delimiter,
        quote_char=opts.quote_char,
        newlines_in_values=opts.newlines_in_values,
        invalid_row_handler=on_invalid,
    )
    for _ in range(2 * len(names) + 1):  # a column may go to text, then to bytes
        invalid.clear()
        types = {n: overrides.get(n, known[n]) for n in names if n in known}
        types.update({n: t for n, t in overrides.items() if n not in known})
        convert = pacsv.ConvertOptions(
            column_types=types,
            null_values=opts.null_values,
            strings_can_be_null=True,
            true_values=["true", "True", "TRUE"],
            false_values=["false", "False", "FALSE"],
        )
        try:
            table = pacsv.read_csv(
                pa.BufferReader(buf),
                read_options=read_opts,
                parse_options=parse_opts,
                convert_options=convert,
            )
            break
        except pa.ArrowInvalid as exc:
            m = _CONVERSION.search(str(exc))
            name = names[int(m.group(1))] if m and int(m.group(1)) < len(names) else None
            # Arrow names bad UTF-8 when converting to text; converting to a number, its
            # message shows the value, the bad bytes replaced (then straight to bytes).
            utf8 = m is not None and ("UTF8" in m.group(3) or "\ufffd" in m.group(3))
            current = overrides.get(name) if name is not None else None
            if name is None or (current is not None and not (utf8 and current == pa.string())):
                if "Empty CSV file" in str(exc):
                    raise Unreadable("the file is empty") from None
                raise Unreadable(f"not readable as CSV: {exc}") from None
            # Bytes that are not UTF-8 can only be read as bytes: a number with a bad byte
            # fails as a number first, then as text, then is read as bytes.
            overrides[name] = pa.binary() if utf8 else pa.string()
    else:  # pragma: no cover - each pass overrides one more column
        raise Unreadable("CSV columns kept failing to convert")

    outcome = ReadOutcome(table=table, rows_read=table.num_rows)
    _decode_binary(outcome, known, opts)

    # A CSV row's text needs its header to be parsed again on release.
    outcome.header = _first_line(buf, opts.encoding) if opts.header else None
    if opts.newlines_in_values:
        # A record may span lines, so line numbers cannot be recovered from newlines.
        outcome.rows_read += len(invalid)
        outcome.rejected = [
            Rejected(
                None, None, text, "field_count", None, None, f"expected {exp} fields, found {act}"
            )
            for _, text, exp, act in invalid
        ]
        outcome.raw_row = _record_locator(buf, opts, len(names), table)
        return outcome

    # Line positions are found only when some row needs its line (a scan of the whole file).
    def index() -> LineIndex:
        return LineIndex(buf, header_lines=1 if opts.header else 0, encoding=opts.encoding)

    lines = None
    if invalid:
        lines = index()
        bad_lines = lines.find([text for _, text, _, _ in invalid])
        lines.exclude(bad_lines)
        by_text = {text: (exp, act) for _, text, exp, act in invalid}
        ordinals = lines.record_ordinal(bad_lines)
        for line, ordinal in zip(bad_lines, ordinals, strict=True):
            text = lines.text(int(line))
            exp, act = by_text.get(text, (len(names), -1))
            outcome.rejected.append(
                Rejected(
                    int(line) + 1,
                    int(ordinal),
                    text,
                    "field_count",
                    None,
                    None,
                    f"expected {exp} fields, found {act}",
                )
            )
        outcome.rows_read += len(outcome.rejected)
    outcome.raw_row = _text_locator(lines or index, table)
    return outcome


def _decode_binary(outcome: ReadOutcome, known: dict[str, pa.DataType], opts: CsvOptions) -> None:
    """Columns Arrow could only read as bytes (some value is not UTF-8) become text: the bad
    values are ``bad_encoding`` rows, and a column of unknown type is typed from its other
    values by Arrow's own inference, as if the bad bytes had never been there."""
    table = outcome.table
    for i, f in enumerate(table.schema):
        if not (pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)):
            continue
        decoded = decode_utf8(table.column(i))
        if decoded.bad is not None:
            outcome.bad_encoding[f.name] = decoded
        values = decoded.array if f.name in known else _infer_text(decoded.array, opts)
        table = table.set_column(i, pa.field(f.name, values.type), values)
    outcome.table = table


def _infer_text(values: pa.ChunkedArray, opts: CsvOptions) -> pa.ChunkedArray:
    """The type Arrow's CSV reader would have given these (valid) text values."""
    import io

    out = io.BytesIO()
    pacsv.write_csv(pa.table({"v": values}), out)  # quotes every value, nulls as empty lines
    try:
        again = pacsv.read_csv(
            pa.py_buffer(out.getvalue()),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                null_values=opts.null_values,
                strings_can_be_null=True,
                true_values=["true", "True", "TRUE"],
                false_values=["false", "False", "FALSE"],
            ),
        )
    except pa.ArrowInvalid:
        return values
    return again.column(0) if again.num_rows == len(values) else values


def _first_line(buf: pa.Buffer, encoding: str) -> str:
    head = buf.slice(0, min(buf.size, 1 << 20)).to_pybytes()
    return head.split(b"\n", 1)[0].rstrip(b"\r").decode(encoding, "backslashreplace")


def _csv_header(buf: pa.Buffer, opts: CsvOptions) -> list[str]:
    if not opts.header:
        if not opts.column_names:
            raise Unreadable("csv.header is false but csv.column_names is not set")
        return list(opts.column_names)
    header = _header_names(buf, opts)
    if opts.column_names is None:
        return header
    if len(opts.column_names) != len(header):
        raise Unreadable(
            f"csv.column_names has {len(opts.column_names)} names, the header has "
            f"{len(header)} columns: {', '.join(map(repr, header))}"
        )
    return list(opts.column_names)


def _header_names(buf: pa.Buffer, opts: CsvOptions) -> list[str]:
    data = np.frombuffer(buf, dtype=np.uint8)
    newline = np.flatnonzero(data[: 1 << 20] == 10)
    end = int(newline[0]) + 1 if len(newline) else min(buf.size, 1 << 20)
    try:
        head = pacsv.read_csv(
            pa.BufferReader(buf.slice(0, end)),
            read_options=pacsv.ReadOptions(encoding=opts.encoding),
            parse_options=pacsv.ParseOptions(delimiter=opts.delimiter, quote_char=opts.quote_char),
        )
    except pa.ArrowInvalid as exc:
        raise Unreadable(f"the header line is not readable CSV: {exc}") from None
    try:
        return list(head.column_names)
    except UnicodeDecodeError:
        raise Unreadable(
            f"the header line is not {opts.encoding} text (set csv.encoding if the file has "
            "another one)"
        ) from None


def _text_locator(
    lines: LineIndex | Callable[[], LineIndex], table: pa.Table
) -> Callable[[np.ndarray], Located]:
    cache: list[LineIndex] = [lines] if isinstance(lines, LineIndex) else []

    def locate(rows: np.ndarray) -> Located:
        if not cache:
            assert callable(lines)
            cache.append(lines())
        index = cache[0]
        row_lines = index.row_lines()
        if len(row_lines) != table.num_rows:
            # The parser and the line count disagree (quoted newlines): keep the values instead.
            return Located(None, rows + 1, _rows_as_json(table, rows))
        picked = row_lines[rows]
        return Located(
            picked + 1, index.record_ordinal(picked), [index.text(int(i)) for i in picked]
        )

    return locate


def _record_locator(
    buf: pa.Buffer, opts: CsvOptions, n_fields: int, table: pa.Table
) -> Callable[[np.ndarray], Located]:
    """Where rows came from when quoted values may span lines: a quote-aware pass over the file
    (only when some row needs its text) gives each record's lines and original text, so a
    quarantined row keeps its CSV text and can be parsed again on release."""

    def locate(rows: np.ndarray) -> Located:
        import csv
        import io

        text = buf.to_pybytes().decode(opts.encoding, "backslashreplace")
        lines = [line + "\n" for line in text.split("\n")]  # as csv counts them: LF only
        reader = csv.reader(
            io.StringIO(text, newline=""),
            delimiter=opts.delimiter,
            quotechar=opts.quote_char,
            strict=False,
        )
        first: list[int] = []
        texts: list[str] = []
        done = 0
        for k, record in enumerate(reader):
            start, done = done, reader.line_num
            if (k == 0 and opts.header) or not record or len(record) != n_fields:
                continue  # the header, a blank line, a record the parser rejected
            first.append(start)
            texts.append("".join(lines[start:done]).rstrip("\r\n"))
        if len(first) != table.num_rows:
            # The two parsers disagree: keep the values instead.
            return Located(None, rows + 1, _rows_as_json(table, rows))
        picked = np.asarray(first, dtype=np.int64)[rows]
        return Located(picked + 1, rows + 1, [texts[int(i)] for i in rows])

    return locate


# ---------------------------------------------------------------------------------- JSON Lines


def _read_jsonl(buf: pa.Buffer, schema: Schema | None) -> ReadOutcome:
    if buf.size == 0:
        raise Unreadable("the file is empty")
    lines = LineIndex(buf, header_lines=0)
    explicit = (
        pa.schema([f for f in schema.arrow_schema() if not pa.types.is_null(f.type)])
        if schema
        else None
    )
    outcome = _jsonl_by_arrow(buf, explicit, schema, lines, [])
    if outcome is None:
        # Arrow refused the file, or let bytes that are not UTF-8 through: the lines that
        # hold such bytes are bad_encoding records, and the rest is parsed again.
        bad = lines.undecodable()
        rejected = [_undecodable_line(lines, int(i)) for i in bad]
        if len(bad):
            lines.exclude(bad)
            outcome = _jsonl_by_arrow(lines.drop(bad), explicit, schema, lines, rejected)
        if outcome is None:
            outcome = _read_jsonl_by_line(lines, schema, rejected)
    outcome.raw_row = _text_locator(lines, outcome.table)
    return outcome


def _jsonl_by_arrow(
    buf: pa.Buffer,
    explicit: pa.Schema | None,
    schema: Schema | None,
    lines: LineIndex,
    rejected: list[Rejected],
) -> ReadOutcome | None:
    """The fast path: Arrow's reader, trusted only when it gave one row per line and valid text
    (it copies string bytes unchecked)."""
    try:
        table = pajson.read_json(
            pa.BufferReader(buf),
            read_options=pajson.ReadOptions(use_threads=True, block_size=1 << 22),
            parse_options=pajson.ParseOptions(
                explicit_schema=explicit, unexpected_field_behavior="infer"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(lines.row_lines()) or not _valid_text(table):
        return None
    outcome = ReadOutcome(table=table, rows_read=table.num_rows + len(rejected))
    outcome.rejected = rejected
    if schema is not None:
        _jsonl_missing_keys(outcome, schema, lines)
    return outcome


def _valid_text(table: pa.Table) -> bool:
    try:
        for f, col in zip(table.schema, table.columns, strict=True):
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
                col.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


_VALUE_END = re.compile(rb"[,}]")
_JSON_KEY = re.compile(rb'"((?:[^"\\]|\\.)*)"\s*:\s*')


def _undecodable_line(lines: LineIndex, line: int) -> Rejected:
    """A JSON line with bytes that are not UTF-8, naming the key whose value (or name) holds
    them: the line parsed with the bad bytes kept as escapes, else the key before them."""
    raw = lines.raw(line)
    ordinal = int(lines.record_ordinal(np.array([line]))[0])
    column = value = None
    try:
        obj = json.loads(raw.decode("utf-8", "surrogateescape"))
    except ValueError:  # a bad byte outside any string (in a number, say)
        obj = None
    if isinstance(obj, dict):
        for k, v in obj.items():
            if _undecodable(k) or (isinstance(v, str) and _undecodable(v)):
                column, value = _escaped(k), _escaped(v) if isinstance(v, str) else str(v)
                break
    if column is None:
        try:
            raw.decode("utf-8")
            at = len(raw)  # pragma: no cover - only undecodable lines come here
        except UnicodeDecodeError as exc:
            at = exc.start
        keys = list(_JSON_KEY.finditer(raw, 0, at))
        if keys:
            column = keys[-1].group(1).decode("utf-8", "backslashreplace")
            after = _VALUE_END.search(raw, at)  # the value up to the next separator
            found = raw[keys[-1].end() : after.start() if after else len(raw)]
            value = found.strip().decode("utf-8", "backslashreplace")
    if column is None:
        detail = "the line is not valid UTF-8"
        return Rejected(line + 1, ordinal, lines.text(line), "bad_encoding", None, None, detail)
    return Rejected(line + 1, ordinal, lines.text(line), "bad_encoding", column, value, "UTF-8")


def _undecodable(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _escaped(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _jsonl_missing_keys(outcome: ReadOutcome, schema: Schema, lines: LineIndex) -> None:
    """Arrow reads an absent key as null; for required columns, tell the two apart."""
    present = set(outcome.table.column_names)
    for col in schema.columns:
        if col.nullable or col.name not in present:
            continue
        arr = outcome.table.column(col.name)
        if arr.null_count == 0:
            continue
        rows = np.flatnonzero(np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False)))
        row_lines = lines.row_lines()
        absent = [r for r in rows if col.name not in orjson.loads(lines.text(int(row_lines[r])))]
        if absent:
            mask = np.zeros(outcome.table.num_rows, dtype=bool)
            mask[absent] = True
            outcome.missing_fields[col.name] = mask


def _read_jsonl_by_line(
    lines: LineIndex, schema: Schema | None, rejected: list[Rejected]
) -> ReadOutcome:
    """The slow path: line by line (lines with bad bytes were rejected already)."""
    records: list[dict[str, Any]] = []
    rejected = list(rejected)
    bad_lines: list[int] = [r.line - 1 for r in rejected if r.line is not None]
    data = lines.row_lines()
    for line, ordinal in zip(data, lines.record_ordinal(data), strict=True):
        text = lines.text(int(line))
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            rejected.append(
                Rejected(
                    int(line) + 1,
                    int(ordinal),
                    text,
                    "bad_json",
                    None,
                    None,
                    f"not valid JSON: {exc}",
                )
            )
            bad_lines.append(int(line))
            continue
        if not isinstance(obj, dict):
            rejected.append(
                Rejected(
                    int(line) + 1,
                    int(ordinal),
                    text,
                    "bad_json",
                    None,
                    None,
                    f"a line must hold a JSON object, not {type(obj).__name__}",
                )
            )
            bad_lines.append(int(line))
            continue
        records.append(obj)
    lines.exclude(np.array(bad_lines, dtype=np.int64))
    names: list[str] = list(schema.names) if schema else []
    seen = set(names)
    for rec in records:
        for key in rec:
            if key not in seen:
                seen.add(key)
                names.append(key)
    outcome = ReadOutcome(table=pa.table({}), rows_read=len(records) + len(rejected))
    columns: dict[str, pa.ChunkedArray] = {}
    for name in names:
        col = schema.column(name) if schema else None
        if col is not None and not col.nullable:
            present = np.fromiter((name in r for r in records), dtype=bool, count=len(records))
            if not present.all():
                outcome.missing_fields[name] = ~present
        columns[name] = _json_values([r.get(name) for r in records])
    outcome.table = pa.table(columns)
    outcome.rejected = rejected
    return outcome


def _json_values(values: list[Any]) -> pa.ChunkedArray:
    """Python values from JSON as one Arrow column: typed when they agree, text when not."""
    try:
        return pa.chunked_array([pa.array(values)])
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        texts = [
            None if v is None else v if isinstance(v, str) else orjson.dumps(v).decode()
            for v in values
        ]
        return pa.chunked_array([pa.array(texts, type=pa.string())])


# ------------------------------------------------------------------------------------- Parquet


def _read_parquet(buf: pa.Buffer) -> ReadOutcome:
    try:
        table = pq.read_table(pa.BufferReader(buf))
    except (pa.ArrowInvalid, OSError) as exc:
        raise Unreadable(f"not readable as Parquet: {exc}") from None
    return ReadOutcome(table=table, rows_read=table.num_rows)


# ----------------------------------------------------------------------------------- the rest


def _conform(outcome: ReadOutcome, schema: Schema | None) -> None:
    """Type every known column, find new, widened and absent columns, order as the schema."""
    table = outcome.table
    if schema is None:
        for name in table.column_names:
            from_arrow(table.column(name).type, name)  # refuses nested types early
        return
    # Sets and Arrow's own name index: one lookup per column of a 10,000-column file.
    present = set(table.column_names)
    for col in schema.columns:
        if col.name not in present:
            outcome.absent_columns.append(col.name)
            continue
        arr = table.column(col.name)
        if col.type == "null":
            if arr.null_count < len(arr):
                outcome.typed[col.name] = from_arrow(arr.type, col.name)
            else:
                table = _replace(table, col.name, pa.chunked_array([pa.nulls(len(arr))]))
            continue
        if arr.type.equals(col.arrow_type):
            continue
        coerced = coerce(arr, col.arrow_type)
        if coerced.bad is not None:
            wider = _widening(arr, coerced, col.type, col.unit, col.tz)
            if wider is not None:
                outcome.widened[col.name] = wider
        if coerced.bad is not None:
            outcome.unparseable[col.name] = coerced
        table = _replace(table, col.name, coerced.array)
    for name in table.column_names:
        if schema.column(name) is None:
            outcome.new_columns[name] = from_arrow(table.column(name).type, name)
    for name in outcome.absent_columns:
        absent = schema.column(name)
        assert absent is not None
        table = table.append_column(
            pa.field(name, absent.arrow_type), pa.nulls(table.num_rows, absent.arrow_type)
        )
    order = [c.name for c in schema.columns] + list(outcome.new_columns)
    outcome.table = table.select(order)


def _widening(
    arr: pa.ChunkedArray, coerced: Coerced, type_: str, unit: str | None, tz: str | None
) -> str | None:
    """The wider type a column's values ask for, if they all fit one.

    Numbers widen as soon as every value that missed the narrow type fits the wider one (one
    "0.25" in a column inferred as int64 from a week of zeros means the column holds decimals).
    Other widenings need most values to ask for them; a few odd values are bad rows instead.
    """
    assert coerced.bad is not None and coerced.original is not None
    missed = coerced.original.filter(pa.array(coerced.bad))
    present = len(arr) - arr.null_count
    for wider in _WIDER.get(type_, ()):
        target = to_arrow(wider, unit or "us", tz)
        if type_ in ("bool", "int64") and wider in ("int64", "float64"):
            if fits(missed, target) == 1.0:
                return wider
        elif coerced.n_bad > WIDEN_SHARE * present and fits(arr, target) == 1.0:
            return wider
    return None


def _replace(table: pa.Table, name: str, arr: pa.ChunkedArray) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, pa.field(name, arr.type), arr)


def _rows_as_json(table: pa.Table, rows: np.ndarray) -> list[str]:
    picked = table.take(pa.array(rows, type=pa.int64())).to_pylist()
    return [orjson.dumps(r, default=str).decode() for r in picked]
