"""The Data pages: sources and their schemas, batches, snapshots, and the quarantine with each
row's reasons and original text; a schema proposal accepted, entries released or dropped (one,
or several at once) from the page.

Lists are keyset pages (newest first, "older" carries the last row's time and id); what an
action did is shown as it happened: a release whose rows fail again says the entry stays held,
with the counts.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse

from loopml.data import IngestResult, QuarantineRecord
from loopml.errors import ConflictError, IntegrityError, LoopmlError, NotFoundError, UsageError
from loopml.ui._context import UiContext
from loopml.ui._pages import _data_queries as dq
from loopml.ui._pages._common import form_of, parse_int, ui

router = APIRouter()
ACCEPTABLE = ("row_count", "null_rate")  # the batch checks a release may overrule
PREVIEW_BYTES = 4_000_000  # how far into a held file the page reads for its lines


def _limit(request: Request, default: int = 50) -> int:
    return parse_int(request.query_params.get("limit"), "limit", default=default, low=1, high=500)


# -------------------------------------------------------------------------------- overview


@router.get("/data", response_class=HTMLResponse)
def overview(request: Request) -> HTMLResponse:
    ctx = ui(request)
    q = request.query_params
    limit = _limit(request, 20)
    with ctx.project.store.read() as conn:
        sources = dq.source_summaries(conn, ctx.project.spec.sources)
        batches = dq.batch_page(conn, before=q.get("batches_before"), limit=limit)
        snapshots = dq.snapshot_page(conn, before=q.get("snapshots_before"), limit=limit)
        held = dq.held_totals(conn)
    return ctx.render(
        request,
        "data/index.html",
        page_name="data",
        sources=sources,
        batches=batches,
        snapshots=snapshots,
        held=held,
        limit=limit,
    )


# --------------------------------------------------------------------------------- sources


@router.get("/data/sources/{source}", response_class=HTMLResponse)
def source_page(request: Request, source: str) -> HTMLResponse:
    ctx = ui(request)
    data = ctx.project.data
    data.source_spec(source)  # a 404 naming the declared sources when there is none
    limit = _limit(request)
    versions = data.schema_versions(source)
    try:
        active = data.schema(source)
    except NotFoundError:
        active = None
    diff = data.schema_diff(source)
    with ctx.project.store.read() as conn:
        batches = dq.batch_page(
            conn, source=source, before=request.query_params.get("before"), limit=limit
        )
        held = dq.held_totals(conn, source)
    return ctx.render(
        request,
        "data/source.html",
        page_name="data",
        source=source,
        spec=data.source_spec(source),
        active=active,
        versions=list(reversed(versions)),
        proposed=next((v for v in versions if v.status == "proposed"), None),
        diff=diff,
        batches=batches,
        held=held,
        limit=limit,
    )


@router.post("/data/sources/{source}/accept", response_class=HTMLResponse)
async def accept_schema(request: Request, source: str) -> HTMLResponse:
    ctx = ui(request)
    form = await form_of(request)
    release = bool(form.get("release"))
    outcome = Outcome()

    def do(by: str, reason: str) -> dict[str, Any]:
        version, released = ctx.project.data.accept_schema(source, by=by, release=release)
        outcome.title = f"{source}: schema version {version} is now active"
        for r in released:
            outcome.add_release(r.quarantine_id or "", r)
        return {"version": version, **outcome.totals(released=release)}

    ctx.act(request, form, action="schema_accept", target=f"source:{source}", do=do)
    return _result(ctx, request, outcome, back=f"/ui/data/sources/{source}")


# --------------------------------------------------------------------------------- batches


@router.get("/data/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, batch_id: str) -> HTMLResponse:
    ctx = ui(request)
    with ctx.project.store.read() as conn:
        batch = dq.get_batch(conn, batch_id)
        entries = dq.entries_of_batch(conn, batch_id)
        origin_entry = None
        quarantine_id = (batch.origin or {}).get("quarantine")
        if quarantine_id:
            found = dq.entries_by_id(conn, [quarantine_id])
            origin_entry = found[0] if found else None
    return ctx.render(
        request,
        "data/batch.html",
        page_name="data",
        batch=batch,
        entries=entries,
        origin_entry=origin_entry,
        process=_process(batch.owner),
    )


def _process(owner: str) -> str:
    host, _, rest = owner.partition("|")
    pid = rest.partition("|")[0]
    return f"{host} (process {pid})" if pid else owner


# ------------------------------------------------------------------------------ quarantine


@router.get("/data/quarantine", response_class=HTMLResponse)
def quarantine_list(request: Request) -> HTMLResponse:
    ctx = ui(request)
    q = request.query_params
    source = q.get("source") or None
    status = q.get("status") or "held"
    limit = _limit(request)
    with ctx.project.store.read() as conn:
        page = dq.entry_page(
            conn, source=source, status=status, before=q.get("before"), limit=limit
        )
        counts = dq.entry_counts(conn, source)
        sources = [s.name for s in dq.source_summaries(conn, ctx.project.spec.sources)]
    return ctx.render(
        request,
        "data/quarantine.html",
        page_name="data",
        page=page,
        counts=counts,
        source=source,
        state=status,
        statuses=dq.STATUSES,
        sources=sources,
        limit=limit,
    )


@router.get("/data/quarantine/{entry_id}", response_class=HTMLResponse)
def entry_page(request: Request, entry_id: str) -> HTMLResponse:
    ctx = ui(request)
    limit = _limit(request)
    offset = parse_int(request.query_params.get("offset"), "offset", default=0, low=0, high=2**40)
    missing = None  # the entry's record is whole, its rows or file are gone from the lake
    try:
        view = ctx.project.data.quarantine.show(entry_id)
    except IntegrityError as exc:
        missing = exc.message
        view = ctx.project.data.quarantine.record(entry_id)
    entry = view.entry
    rows: list[dict[str, Any]] = []
    lines: list[tuple[int, str]] = []
    more = truncated = False
    header = None
    total = entry.rows
    if missing is not None:
        pass
    elif view.rows is not None:
        total = view.rows.num_rows
        rows = view.rows.slice(offset, limit).to_pylist()
        more = offset + limit < total
        header = (view.rows.schema.metadata or {}).get(b"loopml.header", b"").decode() or None
    elif view.batch.format in ("csv", "jsonl"):
        try:
            lines, more, truncated = _held_lines(ctx, entry, offset, limit)
        except FileNotFoundError:
            missing = f"the held file is missing from the lake ({entry.path})"
    return ctx.render(
        request,
        "data/entry.html",
        page_name="data",
        entry=entry,
        batch=view.batch,
        rows=rows,
        lines=lines,
        total=total,
        offset=offset,
        limit=limit,
        more=more,
        truncated=truncated,
        header=header,
        acceptable=[
            r["code"] for r in entry.reasons if r["code"] in ACCEPTABLE and not r.get("also")
        ],
        main_reasons=[r for r in entry.reasons if not r.get("also")],
        missing=missing,
        also_reasons=[r for r in entry.reasons if r.get("also")],
    )


def _held_lines(
    ctx: UiContext, entry: QuarantineRecord, offset: int, limit: int
) -> tuple[list[tuple[int, str]], bool, bool]:
    """Lines ``offset + 1`` to ``offset + limit`` of a file held whole (numbered from 1, a CSV
    file's header included), whether there are more, and whether the page stopped reading
    (it reads at most :data:`PREVIEW_BYTES` of the file, never the whole of a large one)."""
    files = ctx.project.data.lake.files
    out: list[tuple[int, str]] = []
    read = 0
    with files.open_read(entry.path) as raw:
        stream: Any = gzip.GzipFile(fileobj=raw) if entry.path.endswith(".gz") else raw
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
        for number, line in enumerate(text, start=1):
            read += len(line)
            if read > PREVIEW_BYTES:
                return out, False, True
            if number <= offset:
                continue
            if len(out) == limit:
                return out, True, False
            out.append((number, line.rstrip("\r\n")))
    return out, False, False


@router.post("/data/quarantine/{entry_id}/release", response_class=HTMLResponse)
async def release_entry(request: Request, entry_id: str) -> HTMLResponse:
    ctx = ui(request)
    form = await form_of(request)
    accept = _accept_of(form)
    outcome = Outcome()

    def do(by: str, reason: str) -> dict[str, Any]:
        result = ctx.project.data.quarantine.release(entry_id, by=by, accept=accept)
        outcome.add_release(entry_id, result)
        outcome.title = outcome.lines[0].text
        return outcome.totals() | ({"accepted": sorted(accept)} if accept else {})

    ctx.act(request, form, action="quarantine_release", target=f"quarantine:{entry_id}", do=do)
    return _result(ctx, request, outcome, back=f"/ui/data/quarantine/{entry_id}", single=True)


@router.post("/data/quarantine/{entry_id}/drop", response_class=HTMLResponse)
async def drop_entry(request: Request, entry_id: str) -> HTMLResponse:
    ctx = ui(request)
    form = await form_of(request)
    outcome = Outcome()

    def do(by: str, reason: str) -> dict[str, Any]:
        dropped = ctx.project.data.quarantine.drop(entry_id, by=by, reason=reason)
        outcome.title = f"dropped {dropped.id}: {_rows(dropped.rows)} of {dropped.source} discarded"
        return {"entries_dropped": 1, "rows_dropped": dropped.rows}

    ctx.act(request, form, action="quarantine_drop", target=f"quarantine:{entry_id}", do=do)
    return _result(ctx, request, outcome, back=f"/ui/data/quarantine/{entry_id}")


@router.post("/data/quarantine", response_class=HTMLResponse)
async def bulk(request: Request) -> HTMLResponse:
    """Release or drop several entries at once: those ticked, or every held entry of the
    list's filter (``scope=filter``)."""
    ctx = ui(request)
    form = await form_of(request)
    op = str(form.get("op") or "")
    if op not in ("release", "drop"):
        raise UsageError("say what to do with the entries: release or drop (the 'op' field)")
    source = str(form.get("source") or "") or None
    chosen_ids, selection = _chosen(ctx, form, source)
    outcome = Outcome()
    target = f"quarantine:{selection}"

    def do(by: str, reason: str) -> dict[str, Any]:
        q = ctx.project.data.quarantine
        if op == "drop":
            dropped = q.drop_many(chosen_ids, by=by, reason=reason, selection=selection)
            rows = sum(e.rows for e in dropped)
            outcome.title = f"dropped {_entries(len(dropped))} ({_rows(rows)}), in one decision"
            for e in dropped:
                outcome.line(e.id, f"{e.id}: {_rows(e.rows)} of {e.source} dropped", "good")
            return {"entries_dropped": len(dropped), "rows_dropped": rows, "ids": chosen_ids}
        for entry_id in chosen_ids:
            try:
                outcome.add_release(entry_id, q.release(entry_id, by=by))
            except LoopmlError as exc:  # this one failed; the others are still tried
                outcome.line(entry_id, f"{entry_id}: not released: {exc.message}", "bad")
                outcome.failed.append(entry_id)
        totals = outcome.totals()
        if len(outcome.failed) == len(chosen_ids):
            raise ConflictError(
                "nothing was released: " + "; ".join(x.text for x in outcome.lines),
                details={"failed": outcome.failed},
            )
        outcome.title = (
            f"{_entries(len(chosen_ids))} checked again: {_rows(totals['rows_landed'])} landed, "
            f"{_rows(totals['rows_still_held'])} still held"
        )
        return totals | {"failed": outcome.failed, "ids": chosen_ids}

    action = "quarantine_release" if op == "release" else "quarantine_drop"
    ctx.act(request, form, action=action, target=target, do=do)
    return _result(ctx, request, outcome, back="/ui/data/quarantine")


def _chosen(ctx: UiContext, form: dict[str, Any], source: str | None) -> tuple[list[str], str]:
    """The ids an action on several entries acts on, and how they were chosen."""
    if form.get("scope") == "filter":
        chosen = [e.id for e in ctx.project.data.quarantine.select(source=source)]
        selection = "every held entry" + (f" of {source}" if source else "")
        if not chosen:
            raise ConflictError(f"no held entries match: {selection}")
        return chosen, selection
    ids = form.get("ids[]") or form.get("ids") or []
    ids = [ids] if isinstance(ids, str) else list(ids)
    chosen = list(dict.fromkeys(str(i) for i in ids if i))
    if not chosen:
        raise UsageError("tick the entries to act on (or choose every held entry of the filter)")
    return chosen, ",".join(chosen) if len(chosen) <= 3 else f"{len(chosen)} entries"


def _accept_of(form: dict[str, Any]) -> list[str]:
    values = form.get("accept[]") or form.get("accept") or []
    values = [values] if isinstance(values, str) else list(values)
    return [str(v) for v in values if v]


def _entries(n: int) -> str:
    return f"{n:,} entr{'y' if n == 1 else 'ies'}"


def _rows(n: int) -> str:
    return f"{n:,} row{'' if n == 1 else 's'}"


# ------------------------------------------------------------------------------- snapshots


@router.get("/data/snapshots/{snapshot_id}", response_class=HTMLResponse)
def snapshot_page(request: Request, snapshot_id: str) -> HTMLResponse:
    ctx = ui(request)
    limit = _limit(request)
    after = request.query_params.get("after") or None
    with ctx.project.store.read() as conn:
        snap = dq.get_snapshot(conn, snapshot_id)
        batches = dq.snapshot_batches(conn, snapshot_id, after=after, limit=limit)
    return ctx.render(
        request,
        "data/snapshot.html",
        page_name="data",
        snap=snap,
        batches=batches,
        limit=limit,
    )


# ---------------------------------------------------------------------- what an action did


@dataclass
class Line:
    key: str
    text: str
    kind: str  # good | warn | bad
    link: str | None = None


@dataclass
class Outcome:
    """What an action did, line by line, as the result shows it and the record keeps it."""

    title: str = ""
    lines: list[Line] = field(default_factory=list)
    landed: int = 0
    still_held: int = 0
    stayed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)

    def line(self, key: str, text: str, kind: str, link: str | None = None) -> None:
        self.lines.append(Line(key, text, kind, link))

    def add_release(self, entry_id: str, r: IngestResult) -> None:
        """A release as it went: rows landed (in which batch) and rows still held (where), or
        the entry held again with nothing landed, and why."""
        self.landed += r.rows_accepted
        self.still_held += r.rows_quarantined
        if r.rows_accepted == 0:
            self.stayed.append(entry_id)
            why = "; ".join(f"{b['code']}: {b['message']}" for b in r.batch_reasons) or ", ".join(
                f"{x['code']}{' (' + x['column'] + ')' if x.get('column') else ''} "
                f"in {_rows(x['count'])}"
                for x in r.reasons
            )
            self.line(
                entry_id,
                f"{entry_id} stays held: {_rows(r.rows_read)} checked again, none landed"
                + (f" ({why})" if why else ""),
                "warn",
                f"/ui/data/quarantine/{entry_id}",
            )
            return
        if r.batch_id:
            self.batches.append(r.batch_id)
        residual = (
            f", {_rows(r.rows_quarantined)} still quarantined in {r.quarantine_id}"
            if r.rows_quarantined and r.quarantine_id
            else ""
        )
        self.line(
            entry_id,
            f"released {entry_id}: {_rows(r.rows_read)} checked again, {r.rows_accepted:,} "
            f"landed in batch {r.batch_id}{residual}",
            "warn" if r.rows_quarantined else "good",
            f"/ui/data/batches/{r.batch_id}" if r.batch_id else None,
        )

    def totals(self, *, released: bool = True) -> dict[str, Any]:
        if not released:
            return {}
        return {
            "rows_landed": self.landed,
            "rows_still_held": self.still_held,
            "entries_still_held": len(self.stayed),
            "batches": self.batches,
        }

    @property
    def kind(self) -> str:
        if any(x.kind == "bad" for x in self.lines) or self.stayed:
            return "warn"
        return "warn" if self.still_held else "good"


def _result(
    ctx: UiContext, request: Request, outcome: Outcome, *, back: str, single: bool = False
) -> HTMLResponse:
    return ctx.render(
        request,
        "data/result.html",
        page_name="data",
        outcome=outcome,
        lines=outcome.lines[1:] if single else outcome.lines,
        back=back,
    )
