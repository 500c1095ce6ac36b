"""The HTTP routes of `serve`, as one ASGI (Starlette) application over the loaded models.

    GET  /v2/health/live | /v2/health/ready | /v2 | /v2/models/{m} | /v2/models/{m}/ready      KServe v2
    POST /v2/models/{m}/infer         KServe v2 JSON and binary tensors (tritonclient), every task
    POST /v1/embeddings               OpenAI embeddings (float or base64), feature-extraction models
    POST /embed                       TEI embed, feature-extraction models
    POST /predict                     {"inputs": str | [str]} -> the pipeline's answer, classification models
    GET  /v1/models                   OpenAI model list

`submit(host, rows)` runs rows through the model (the Ray Serve deployment passes its batcher). A client error
is a 4xx {"error": "<one line>"}; anything else a 500 with one line, never a traceback or a server path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from encoderforge.errors import EncoderForgeError, InputError
from encoderforge.serving import wire
from encoderforge.serving.hosts import ModelHost
from encoderforge.serving.tasks import Rows, to_json_bytes

log = logging.getLogger(__name__)

Submit = Callable[[ModelHost, Rows], Awaitable[list[dict[str, np.ndarray] | InputError]]]
MAX_BODY_BYTES = 64 * 1024 * 1024
EMBED = "feature-extraction"
CLASSIFY = ("text-classification", "token-classification")


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = value if isinstance(value, bytes) else to_json_bytes(value)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def build_app(hosts: Sequence[ModelHost], submit: Submit, *, max_text_bytes: int, replica: str = "") -> Starlette:
    by_name = {h.spec.name: h for h in hosts}
    tag = {"x-encoderforge-replica": replica} if replica else {}

    def pick(name: str | None, tasks: tuple[str, ...], route: str) -> ModelHost:
        fitting = [h for h in hosts if h.spec.task in tasks]
        if name is not None and name in by_name and by_name[name].spec.task in tasks:
            return by_name[name]
        if name is None and len(fitting) == 1:
            return fitting[0]
        valid = ", ".join(h.spec.name for h in fitting) or "none is served"
        if name is None:
            raise wire.ClientError(f"{route} needs a `model` field naming one of: {valid}")
        raise wire.ClientError(f"model {name!r:.60} is not served for {route}; choose one of: {valid}", 404)

    async def run(host: ModelHost, rows: Rows) -> list[dict[str, np.ndarray]]:
        answers = await submit(host, rows)
        bad = next((a for a in answers if isinstance(a, InputError)), None)
        if bad is not None:
            raise wire.ClientError(str(bad))
        return answers  # type: ignore[return-value]

    async def body(request: Request) -> bytes:
        data = await request.body()
        if len(data) > MAX_BODY_BYTES:
            raise wire.ClientError(f"request body of {len(data):,} bytes is over {MAX_BODY_BYTES:,}; split it", 413)
        return data

    def guarded(handler: Callable[[Request], Awaitable[Response]], *,
                openai_errors: bool = False) -> Callable[[Request], Awaitable[Response]]:
        def error(message: str, status: int) -> Response:
            return _json(wire.error_body(message, openai=openai_errors, status=status), status, tag)

        async def endpoint(request: Request) -> Response:
            try:
                response = await handler(request)
            except InputError as exc:
                return error(str(exc), exc.status if isinstance(exc, wire.ClientError) else 400)
            except EncoderForgeError as exc:
                log.error("%s %s: %s", request.method, request.url.path, exc)
                return error(f"server error: {exc}", 500)
            except Exception as exc:  # a server fault: one line out, the traceback in our log
                log.exception("%s %s failed", request.method, request.url.path)
                return error(f"server error ({type(exc).__name__}); see the server log", 500)
            response.headers.update(tag)
            return response
        return endpoint

    def model_of(request: Request) -> ModelHost:
        name = request.path_params["model"]
        if name not in by_name:
            raise wire.ClientError(f"unknown model {name!r:.60}; served: {', '.join(by_name)}", 404)
        return by_name[name]

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        return _json({"ready": True}) if hosts else _json({"ready": False}, 503)

    async def server_metadata(request: Request) -> Response:
        return _json({"name": "encoderforge", "version": "1", "extensions": ["binary_tensor_data"],
                      "models": [h.spec.name for h in hosts]})

    async def model_metadata(request: Request) -> Response:
        host = model_of(request)
        return _json(wire.v2_metadata(host.spec.name, host.io))

    async def model_ready(request: Request) -> Response:
        model_of(request)
        return _json({"ready": True})

    async def infer(request: Request) -> Response:
        host = model_of(request)
        parsed = wire.parse_v2(await body(request), request.headers.get("inference-header-content-length"),
                               host.io, max_text_bytes=max_text_bytes)
        answers = await run(host, parsed.rows)
        return _json(wire.v2_response(host.spec.name, host.io, answers, parsed.request_id))

    async def embeddings(request: Request, parsed: wire.EmbeddingsRequest, route: str) -> tuple[ModelHost, Any]:
        host = pick(parsed.model, (EMBED,), route)
        if parsed.normalize is False and host.normalizes:
            raise wire.ClientError(f"{host.spec.name} normalizes its embeddings (its pooling config); "
                                   "drop normalize=false")
        answers = await run(host, {"text": parsed.texts})
        vectors = np.stack([a["embedding"] for a in answers])
        if parsed.normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return host, vectors

    async def openai(request: Request) -> Response:
        parsed = wire.parse_openai(await body(request), max_text_bytes=max_text_bytes)
        host, vectors = await embeddings(request, parsed, "/v1/embeddings")
        return _json(wire.openai_response(host.spec.name, vectors, as_base64=parsed.base64))

    async def openai_models(request: Request) -> Response:
        return _json({"object": "list", "data": [{"id": h.spec.name, "object": "model", "owned_by": "encoderforge"}
                                                 for h in hosts if h.spec.task == EMBED]})

    async def tei(request: Request) -> Response:
        parsed = wire.parse_tei(await body(request), max_text_bytes=max_text_bytes)
        _, vectors = await embeddings(request, parsed, "/embed")
        return _json(json.dumps(vectors.tolist()).encode())

    async def predict(request: Request) -> Response:
        parsed = wire.parse_predict(await body(request), max_text_bytes=max_text_bytes)
        host = pick(parsed.model, CLASSIFY, "/predict")
        answers = await run(host, {"text": parsed.texts})
        return _json(wire.results_json(answers, single=parsed.single))

    routes = [
        Route("/v2/health/live", guarded(live)), Route("/v2/health/ready", guarded(ready)),
        Route("/v2", guarded(server_metadata)),
        Route("/v2/models/{model}", guarded(model_metadata)),
        Route("/v2/models/{model}/ready", guarded(model_ready)),
        Route("/v2/models/{model}/infer", guarded(infer), methods=["POST"]),
        Route("/v2/models/{model}/versions/{version}/infer", guarded(infer), methods=["POST"]),
        Route("/v1/embeddings", guarded(openai, openai_errors=True), methods=["POST"]),
        Route("/v1/models", guarded(openai_models)),
        Route("/embed", guarded(tei), methods=["POST"]),
        Route("/predict", guarded(predict), methods=["POST"]),
    ]
    return Starlette(routes=routes)
