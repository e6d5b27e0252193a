"""From an exception to an HTTP answer, through one table, for every route.

A caller's error (a bad body, a bad field, an unknown name) is a 4xx naming what was wrong; a
server's is a 5xx that says no more than its kind. Every route, the ``/predict`` fast path and
the framework's own errors (no such route, wrong method) answer through :func:`classify`, and
the OpenAPI document lists the same statuses with the same body (:func:`responses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from loopml.errors import (
    BackendUnavailable,
    ConflictError,
    DataError,
    ExpressionError,
    LoopmlError,
    NotFoundError,
    SpecError,
    StorageError,
    UsageError,
)


class HttpError(Exception):
    """An answer decided by a route: its status, a code for machines, and a message."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


# The table: the first class an error is an instance of decides its status. Order matters only
# between a class and its subclasses (BackendUnavailable before StorageError).
STATUS: tuple[tuple[type[LoopmlError], int], ...] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (UsageError, 422),
    (ExpressionError, 422),
    (DataError, 400),  # a body that is not data at all (unreadable CSV, bad JSON Lines)
    (BackendUnavailable, 503),  # the online store or the event stream is down: try again
    (SpecError, 500),  # the server's own spec: never the caller's fault
    (StorageError, 500),
)

# Starlette's own errors (routing): their status is the caller's, with a code of ours.
FRAMEWORK_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "body_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "bad_request",
}

# Answers that may leave part of the body unread: the connection is closed after them, so the
# rest of the body is never read (nor drained) by the server.
CLOSE_AFTER = frozenset({408, 413})


@dataclass(frozen=True)
class Answer:
    """An error as answered: status, code, message, details."""

    status: int
    code: str
    message: str
    details: dict[str, Any]

    def body(self) -> bytes:
        return error_body(self.code, self.message, self.details)

    def oip_body(self) -> bytes:
        """The Open Inference Protocol's error body: ``{"error": "..."}``."""
        return orjson.dumps({"error": self.message})

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(b"content-type", b"application/json")]
        if self.status in CLOSE_AFTER:
            out.append((b"connection", b"close"))
        return out


def classify(exc: BaseException) -> Answer:
    """The answer to an exception raised while serving a request."""
    if isinstance(exc, HttpError):
        return Answer(exc.status, exc.code, exc.message, exc.details)
    if isinstance(exc, LoopmlError):
        for kind, status in STATUS:
            if isinstance(exc, kind):
                return Answer(status, exc.code, exc.message, exc.details)
        return Answer(500, exc.code, exc.message, exc.details)
    framework = getattr(exc, "status_code", None)  # starlette.exceptions.HTTPException
    if isinstance(framework, int) and 400 <= framework < 500:
        detail = getattr(exc, "detail", None)
        code = FRAMEWORK_CODES.get(framework, "bad_request")
        return Answer(framework, code, str(detail) if detail else code.replace("_", " "), {})
    # Anything else is a bug of ours: its type, never its text (which may hold internals).
    return Answer(500, "internal", f"the server failed: {type(exc).__name__}", {})


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"code": code, "message": message, "details": details or {}}},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


# ------------------------------------------------------------------------------ the document

ERROR_SCHEMA: dict[str, Any] = {
    "title": "ErrorBody",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "What went wrong, for machines."},
                "message": {"type": "string", "description": "What was wrong and what to do."},
                "details": {
                    "type": "object",
                    "description": "The same facts: the field, the row, the limit.",
                },
            },
        }
    },
}
OIP_ERROR_SCHEMA: dict[str, Any] = {
    "title": "OipError",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}

WHY = {
    400: "The body is not valid JSON (or not the format its Content-Type names).",
    401: "The bearer token is missing or wrong.",
    403: "The server has no token set: this endpoint is off.",
    404: "No such model, version or route.",
    405: "The method is not allowed on this path.",
    408: "The body stopped arriving (serving.body_timeout).",
    409: "The thing is held by someone else.",
    413: "The body is over serving.max_body_bytes, or too many rows.",
    422: "A field is wrong: the message and details name it.",
    500: "The server failed (a bug): the message names the kind.",
    503: "No model is loaded yet, or a backend is down.",
}

BODY = (400, 408, 413)  # every route that reads a body may answer these


def responses(*statuses: int, oip: bool = False) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route's OpenAPI operation for these error statuses (500, which
    any route may answer, is added to every operation by :func:`add_error_schemas`)."""
    return {status: _response(status, oip) for status in sorted(statuses)}


def _response(status: int, oip: bool) -> dict[str, Any]:
    ref = "#/components/schemas/" + ("OipError" if oip else "ErrorBody")
    return {
        "description": WHY[status],
        "content": {"application/json": {"schema": {"$ref": ref}}},
    }


def add_error_schemas(openapi: dict[str, Any]) -> dict[str, Any]:
    """The error bodies as named components of the document, and the 500 every operation
    may answer."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ERROR_SCHEMA
    schemas["OipError"] = OIP_ERROR_SCHEMA
    for path, operations in openapi.get("paths", {}).items():
        for operation in operations.values():
            oip = path.startswith("/v2")
            answers = operation["responses"]
            if "422" in answers and "HTTPValidationError" in str(answers["422"]):
                # FastAPI's own shape for a bad path parameter: ours is answered instead.
                answers["422"] = _response(422, oip)
            answers.setdefault("500", _response(500, oip))
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return openapi
