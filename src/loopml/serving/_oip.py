"""The Open Inference Protocol's REST endpoints (KServe v2): health, server and model metadata,
and inference with named tensors, answered by the same engine as ``/predict``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from loopml._version import __version__
from loopml.serving._errors import BODY, responses

_DATATYPES = {
    "int": "INT64",
    "float": "FP64",
    "bool": "BOOL",
    "string": "BYTES",
    "timestamp": "INT64",
    "duration": "INT64",
}


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "data"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "shape": {"type": "array", "items": {"type": "integer"}},
                                    "datatype": {"type": "string"},
                                    "data": {"type": "array"},
                                },
                            },
                        },
                    },
                }
            }
        },
    }
}
MODEL = responses(404, 503, oip=True)
INFER = responses(*BODY, 404, 422, 503, oip=True)


def add_oip_routes(
    app: FastAPI,
    http_error: type[Exception],
    read_body: Callable[[Request], Awaitable[bytes]],
) -> None:
    def err(status: int, message: str) -> Exception:
        return http_error(status, "oip", message)

    @app.get("/v2/health/live", summary="OIP: server live")
    async def live() -> Response:
        return _json({"live": True})

    @app.get(
        "/v2/health/ready",
        summary="OIP: server ready",
        responses={
            503: {
                "description": "No model is loaded yet.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    async def ready(request: Request) -> Response:
        ok = request.app.state.rt.holder.current is not None
        return _json({"ready": ok}, 200 if ok else 503)

    @app.get("/v2", summary="OIP: server metadata")
    async def server() -> Response:
        return _json({"name": "loopml", "version": __version__, "extensions": []})

    def _model(request: Request, name: str, version: str | None) -> Any:
        rt = request.app.state.rt
        if name != rt.name:
            raise err(404, f"unknown model {name!r}: this server serves {rt.name!r}")
        served = rt.holder.current
        if served is None:
            raise err(503, f"model {name!r}: {rt.holder.unavailable()}")
        if version is not None and version != str(served.number):
            raise err(
                404, f"version {version} of {name!r} is not served here (serving {served.number})"
            )
        return rt, served

    def _metadata(rt: Any, served: Any) -> dict[str, Any]:
        fs = rt.engine.fs
        inputs = (
            [
                {"name": n, "datatype": _DATATYPES[fs.features[n].type], "shape": [-1]}
                for n in fs.request
            ]
            if fs is not None
            else [
                {"name": f, "datatype": "FP64", "shape": [-1]}
                for f in served.model.encoding.features
            ]
        )
        task = served.model.task
        output = {
            "binary": "probability",
            "multiclass": "probabilities",
            "regression": "value",
            "ranking": "score",
        }[task]
        shape = [-1, len(served.model.classes or [])] if task == "multiclass" else [-1]
        return {
            "name": rt.name,
            "versions": [str(served.number)],
            "platform": f"loopml-{served.model.kind}",
            "inputs": inputs,
            "outputs": [{"name": output, "datatype": "FP64", "shape": shape}],
        }

    @app.get("/v2/models/{name}", summary="OIP: model metadata", responses=MODEL)
    async def model_meta(name: str, request: Request) -> Response:
        rt, served = _model(request, name, None)
        return _json(_metadata(rt, served))

    @app.get(
        "/v2/models/{name}/versions/{version}",
        summary="OIP: model version metadata",
        responses=MODEL,
    )
    async def version_meta(name: str, version: str, request: Request) -> Response:
        rt, served = _model(request, name, version)
        return _json(_metadata(rt, served))

    @app.get("/v2/models/{name}/ready", summary="OIP: model ready", responses=MODEL)
    async def model_ready(name: str, request: Request) -> Response:
        _model(request, name, None)
        return _json({"name": name, "ready": True})

    async def _infer(request: Request, name: str, version: str | None) -> Response:
        _rt, served = _model(request, name, version)
        body = await read_body(request)  # bounded while read (413, 408)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise err(400, f"the body is not valid JSON: {exc}") from None
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("inputs"), list)
            or not payload["inputs"]
        ):
            raise err(400, "an inference request needs 'inputs': a list of named tensors")
        columns: dict[str, list[Any]] = {}
        n = None
        for i, tensor in enumerate(payload["inputs"]):
            if (
                not isinstance(tensor, dict)
                or not isinstance(tensor.get("name"), str)
                or not isinstance(tensor.get("data"), list)
            ):
                raise err(400, f"inputs[{i}] needs 'name' and 'data' (a list)")
            data = tensor["data"]
            shape = tensor.get("shape")
            if not isinstance(shape, list) or not shape or shape[0] != len(data):
                raise err(
                    400,
                    f"inputs[{i}] ({tensor['name']}): shape {shape!r} does not match {len(data)} values",
                )
            if n is not None and len(data) != n:
                raise err(
                    400, f"inputs[{i}] ({tensor['name']}) has {len(data)} values, the others {n}"
                )
            n = len(data)
            columns[tensor["name"]] = data
        rows = [{k: v[j] for k, v in columns.items()} for j in range(n or 0)]
        preds, _ = await request.app.state.predict.answer(rows)  # errors: the one table
        task = served.model.task
        if task == "multiclass":
            data = [list(map(float, p.output)) for p in preds]
            out = {
                "name": "probabilities",
                "datatype": "FP64",
                "shape": [len(preds), len(served.model.classes or [])],
                "data": [x for row in data for x in row],
            }
        else:
            out = {
                "name": {"binary": "probability", "regression": "value", "ranking": "score"}[task],
                "datatype": "FP64",
                "shape": [len(preds)],
                "data": [float(p.output) if p.output is not None else None for p in preds],
            }
        response: dict[str, Any] = {
            "model_name": name,
            "model_version": str(served.number),
            "outputs": [out],
        }
        if any(p.flags for p in preds):
            # The protocol's free-form parameters: each row's flags, as /predict gives them.
            response["parameters"] = {"flags": [p.flags or {} for p in preds]}
        if isinstance(payload.get("id"), str):
            response["id"] = payload["id"]
        return _json(response)

    @app.post(
        "/v2/models/{name}/infer",
        summary="OIP: inference",
        openapi_extra=INFER_BODY,
        responses=INFER,
    )
    async def infer(name: str, request: Request) -> Response:
        return await _infer(request, name, None)

    @app.post(
        "/v2/models/{name}/versions/{version}/infer",
        summary="OIP: inference with a version",
        openapi_extra=INFER_BODY,
        responses=INFER,
    )
    async def infer_version(name: str, version: str, request: Request) -> Response:
        return await _infer(request, name, version)
