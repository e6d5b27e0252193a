"""What every page of the dashboard shares: the project (opened once, on first use), the
templates, rendering, and the token that every action needs.

Reading is open to anyone who can reach the dashboard; a request that changes state must carry
the serving token (``serving.token_env``, ``LOOPML_TOKEN`` by default), as an ``Authorization:
Bearer`` header or the form's ``token`` field, and a reason; what it did, or why it failed, is
recorded in the metadata store's ``actions`` table with who asked and why.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from loopml.errors import LoopmlError, UsageError
from loopml.storage import tables as t
from loopml.ui._format import FILTERS
from loopml.ui._timeline import Timeline

if TYPE_CHECKING:
    from loopml._project import Project

PREFIX = "/ui"
NAV = (
    ("timeline", "Timeline", "/ui/"),
    ("served", "Who served what", "/ui/served"),
    ("data", "Data", "/ui/data"),
    ("models", "Models", "/ui/models"),
    ("monitoring", "Monitoring", "/ui/monitoring"),
    ("serving", "Serving & experiments", "/ui/serving"),
    ("loop", "Loop", "/ui/loop"),
    ("actions", "Actions", "/ui/actions"),
)


class ActionRefused(LoopmlError):
    """An action without the token (401), or on a server that has none set (403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, details={"status": status})
        self.status = status


class UiContext:
    """The dashboard's shared state for one project."""

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        project: Project | None = None,
        token_env: str | None = None,
    ) -> None:
        self.root = Path(root or os.environ.get("LOOPML_PROJECT", ".")).resolve()
        self._project = project
        self._owns_project = project is None
        self._lock = threading.Lock()
        self._timeline: Timeline | None = None
        self._token_env = token_env
        # A running server's live numbers (the serving page): read in process when the pages are
        # mounted on `loopml serve` (mount_ui sets ``live``: its /metrics text and /status), else
        # over HTTP from ``serving_url`` (`loopml ui --serving URL`); each source's last reading
        # is kept in ``scrapes``, so that the next one gives rates.
        self.live: Callable[[], tuple[bytes, dict[str, Any]]] | None = None
        self.serving_url: str | None = os.environ.get("LOOPML_SERVING") or None
        self.scrapes: dict[str, Any] = {}
        self.env = Environment(
            loader=PackageLoader("loopml.ui", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(FILTERS)
        self.env.globals.update(nav=NAV)

    # ------------------------------------------------------------------------------ the project

    @property
    def project(self) -> Project:
        if self._project is None:
            with self._lock:
                if self._project is None:
                    from loopml._project import Project

                    self._project = Project.open(self.root)
        return self._project

    @property
    def timeline(self) -> Timeline:
        if self._timeline is None:
            self._timeline = Timeline(self.project.store)
        return self._timeline

    @property
    def token_env(self) -> str:
        if self._token_env is not None:
            return self._token_env
        return self.project.spec.serving.token_env

    def close(self) -> None:
        with self._lock:
            if self._project is not None and self._owns_project:
                self._project.close()
            self._project = None
            self._timeline = None

    # ------------------------------------------------------------------------------ rendering

    def render(
        self, request: Request, template: str, *, status: int = 200, **values: Any
    ) -> HTMLResponse:
        """A page (or, for an htmx request of a fragment, the template's ``fragment`` block)."""
        tpl = self.env.get_template(template)
        values.setdefault("page_name", "")
        values.setdefault("flash", None)
        values.update(request=request, query=dict(request.query_params), prefix=PREFIX)
        fragment = request.headers.get("hx-request") == "true" and "fragment" in tpl.blocks
        if fragment and not request.headers.get("hx-boosted"):
            ctx = tpl.new_context(values)
            html = "".join(tpl.blocks["fragment"](ctx))
        else:
            html = tpl.render(values)
        return HTMLResponse(html, status_code=status)

    # --------------------------------------------------------------------------------- actions

    def authorize(self, request: Request, form: Mapping[str, Any]) -> None:
        """Refuse an action without the server's token: 403 when none is set, 401 when the
        request's does not match it."""
        expected = os.environ.get(self.token_env)
        if not expected:
            raise ActionRefused(
                403,
                f"actions need a token and this server has none: set {self.token_env} where "
                "the dashboard runs",
            )
        scheme, _, header = request.headers.get("authorization", "").partition(" ")
        given = header if scheme.lower() == "bearer" else str(form.get("token") or "")
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise ActionRefused(
                401, f"the token is missing or wrong: give the value of {self.token_env}"
            )

    def act(
        self,
        request: Request,
        form: Mapping[str, Any],
        *,
        action: str,
        target: str,
        do: Callable[[str, str], Mapping[str, Any]],
    ) -> dict[str, Any]:
        """Run ``do(by, reason)`` once the token is checked, and record it (done or failed)
        with who and why. Returns the recorded action; a failure is re-raised after it is
        recorded."""
        self.authorize(request, form)
        by = str(form.get("by") or "").strip()
        reason = str(form.get("reason") or "").strip()
        if not by:
            raise UsageError("say who you are (the 'by' field): the action is recorded with it")
        if not reason:
            raise UsageError("give a reason (the 'reason' field): the action is recorded with it")
        by, reason = by[:128], reason[:2000]
        try:
            outcome = dict(do(by, reason))
        except LoopmlError as exc:
            self._record(by, action, target, reason, ok=False, outcome={"error": exc.message})
            raise
        record = self._record(by, action, target, reason, ok=True, outcome=outcome)
        return record

    def _record(
        self, by: str, action: str, target: str, reason: str, *, ok: bool, outcome: Any
    ) -> dict[str, Any]:
        values = {
            "at": datetime.now(UTC),
            "by": by,
            "action": action,
            "target": target[:200],
            "reason": reason,
            "ok": ok,
            "outcome": _jsonable(outcome),
        }
        with self.project.store.write() as conn:
            key = conn.execute(t.actions.insert().values(**values)).inserted_primary_key
        values["id"] = key[0] if key else None
        return values


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, datetime):
        return x.isoformat()
    if x is None or isinstance(x, bool | int | float | str):
        return x
    return str(x)
