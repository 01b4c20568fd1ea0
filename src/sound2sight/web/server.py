"""The web app: FastAPI around any ``pipeline(audio_bytes, ...) -> Result``, served by uvicorn.

Routes
------
``GET /``
    The single page (upload a file or record from the microphone).
``GET /static/<file>``
    The page's script and style sheet (only files shipped in ``web/static``).
``GET /health``
    ``{"status": "ok", "served", "errors"}`` plus the :class:`Limits` (the page reads them).
``POST /api/paint?n=4&k=8&seed=0``
    Body: the raw bytes of an audio file, or ``multipart/form-data`` with field ``audio``.
    Answers :func:`~sound2sight.web.payload.result_to_json`: emotion, probabilities,
    ``uncertain``, images, neighbours (with artist and title), ``image_neighbours``,
    provenance, timings; images are ``data:image/png;base64,...`` URLs.
``GET /docs``, ``GET /openapi.json``
    FastAPI's interactive documentation and the OpenAPI schema.

Every error is JSON ``{"error": message}``: 400 bad request, 404 unknown route,
411 no ``Content-Length``, 413 upload over the size limit (refused before the body is
read, see :mod:`sound2sight.web.gate`), 422 audio that cannot be used (undecodable,
silent, over the duration limit), 503 too many requests in flight, 500 anything
unexpected (logged; the server keeps serving).  Messages never carry a stack trace or
a file system path.  Requests that are not HTTP at all get uvicorn's plain 400.

The model runs off the event loop in a bounded thread pool (``Limits.workers`` threads;
1 = one pipeline call at a time, the safe default around one shared torch model).

>>> from fastapi.testclient import TestClient
>>> client = TestClient(create_app(lambda audio, **kw: None))
>>> client.get("/health").json()["status"], client.get("/nope").json()
('ok', {'error': 'no such page: /nope'})
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from sound2sight.web.gate import Stats, UploadGate
from sound2sight.web.payload import clean_message, probe_seconds, result_to_json

__all__ = ["Limits", "create_app", "result_to_json"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
QUERY_KEYS = ("n", "k", "seed")


@dataclass(frozen=True)
class Limits:
    """What one app accepts; ``/health`` reports them and the page reads them."""

    max_upload_bytes: int = 10_000_000  # larger uploads: 413 before the body is read
    max_seconds: float = 60.0  # longer recordings: 422
    workers: int = 1  # pipeline calls at once (threads of the model pool); 1 = serialised
    max_in_flight: int = 32  # paint requests accepted at once (queued + running); more: 503
    request_timeout: float = 30.0  # seconds a client may stall mid-body: then 400


def _state(request: Request):
    return request.app.state


def get_limits(request: Request) -> Limits:
    """Dependency: the app's :class:`Limits`."""
    return _state(request).limits


def reject_unknown_query(request: Request) -> None:
    """Dependency: a query key other than ``n``, ``k``, ``seed`` is a 400, not ignored."""
    for key in request.query_params:
        if key not in QUERY_KEYS:
            raise HTTPException(400, f"unknown query parameter {key[:40]!r} (use n, k, seed)")


LimitsDep = Annotated[Limits, Depends(get_limits)]


def _paint_now(pipeline, data: bytes, limits: Limits, kwargs: dict[str, int]) -> dict[str, Any]:
    """Runs in the model pool: probe, paint, encode the answer (PNG encoding included)."""
    from sound2sight.audio import AudioError

    seconds = probe_seconds(data)
    if seconds > limits.max_seconds:
        raise AudioError(f"upload: {seconds:.1f} s long, over the {limits.max_seconds:g} s limit")
    t0 = time.perf_counter()
    result = pipeline(data, **kwargs)
    log.info(
        "painted %.1f s of audio: %s in %.0f ms",
        seconds,
        result.emotion,
        (time.perf_counter() - t0) * 1000,
    )
    payload = result_to_json(result)
    payload["seconds"] = round(seconds, 3)
    return payload


PAINT_RESPONSES = {
    code: {"description": text, "content": {"application/json": {"example": {"error": text}}}}
    for code, text in [
        (400, "bad query or malformed upload"),
        (411, "Content-Length required"),
        (413, "upload too large (refused before the body is read)"),
        (422, "audio that cannot be used: undecodable, silent or too long"),
        (503, "server busy: too many requests in flight, retry"),
    ]
}


RAW_BODY = {
    "requestBody": {
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    }
}


async def paint(
    request: Request,
    limits: LimitsDep,
    n: Annotated[int, Query(ge=0, le=16, description="paintings to generate")] = 4,
    k: Annotated[int, Query(ge=0, le=32, description="nearest artworks to return")] = 8,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1, description="seeds the painting noise")] = 0,
    audio: Annotated[
        UploadFile | None,
        File(description="the recording (WAV, FLAC, OGG, MP3); or send it as the raw body"),
    ] = None,
) -> dict[str, Any]:
    """Hear the emotion in one recording, paint it, and find the artworks nearest to it."""
    from sound2sight.audio import AudioError

    if audio is not None:
        data = await audio.read()
    elif request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise HTTPException(400, "multipart upload has no 'audio' field")
    else:
        data = await request.body()
    if not data:
        raise HTTPException(422, "empty upload (0 bytes): send an audio file")
    state = _state(request)
    job = partial(_paint_now, state.pipeline, data, limits, {"n_images": n, "k": k, "seed": seed})
    try:
        return await asyncio.get_running_loop().run_in_executor(state.pool, job)
    except AudioError as exc:
        raise HTTPException(422, clean_message(str(exc))) from None
    except Exception:  # any bug: log it, answer 500, keep serving
        log.exception("POST /api/paint failed")
        raise HTTPException(500, "internal server error (logged on the server)") from None


async def health(request: Request, limits: LimitsDep) -> dict[str, Any]:
    """Liveness, counters, and the limits the page shows."""
    stats: Stats = _state(request).stats
    return {"status": "ok", "served": stats.served, "errors": stats.errors, **asdict(limits)}


async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404 and exc.detail == "Not Found":
        detail = f"no such page: {request.url.path[:100]}"
    else:
        detail = clean_message(str(exc.detail))
    headers = {"connection": "close"} if exc.status_code in (400, 413) else None
    return JSONResponse({"error": detail}, status_code=exc.status_code, headers=headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
    message = clean_message(f"{where}: {first.get('msg', 'invalid')}")
    return JSONResponse({"error": message}, status_code=400)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return JSONResponse({"error": "internal server error (logged on the server)"}, 500)


def create_app(pipeline, limits: Limits | None = None) -> FastAPI:
    """The FastAPI app serving ``pipeline``; run it with uvicorn (see :func:`serve`).

    Parameters
    ----------
    pipeline : callable
        ``pipeline(audio_bytes, n_images=, k=, seed=) -> Result``, e.g. a ``Sound2Sight``.
    limits : Limits | None
        Upload, duration, pool and concurrency limits (default :class:`Limits()`).
    """
    from sound2sight import __version__

    limits = limits or Limits()
    pool = ThreadPoolExecutor(max_workers=max(1, limits.workers), thread_name_prefix="paint")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="sound2sight",
        version=__version__,
        summary="Hear the emotion in a voice, paint it, show the nearest artworks.",
        lifespan=lifespan,
    )
    app.state.pipeline, app.state.limits, app.state.pool = pipeline, limits, pool
    app.state.stats = Stats()
    app.add_middleware(UploadGate, limits=limits, stats=app.state.stats)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route(
        "/api/paint",
        paint,
        methods=["POST"],
        dependencies=[Depends(reject_unknown_query)],
        responses=PAINT_RESPONSES,
        openapi_extra=RAW_BODY,  # besides the form: the file's bytes as the whole body
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
