"""The web app: FastAPI around any ``pipeline(audio_bytes, ...) -> Result``, served by uvicorn.

Routes
------
``GET /``
    The single page (upload a file or record from the microphone).
``GET /static/<file>``
    The page's script and style sheet (only files shipped in ``web/static``).
``GET /health``
    ``{"status": "ok", "served", "errors"}`` plus the :class:`Limits` (the page reads them).
``POST /api/paint?n=4&k=8&seed=0&session=ID&calibrate=true``
    Body: the raw bytes of an audio file, or ``multipart/form-data`` with field ``audio``.
    Answers :func:`~sound2sight.web.payload.result_to_json`: emotion, probabilities,
    ``uncertain``, images, neighbours (with artist and title), ``image_neighbours``,
    provenance, timings; images are ``data:image/png;base64,...`` URLs.  With a
    ``session``, the recording's voice features join that session and, from the
    ``Limits.calibrate_from``-th recording on, the answer is calibrated to the speaker
    (when asked with ``calibrate=true`` with ``Limits.calibration="opt-in"``, the default;
    always with ``"auto"``); ``"calibration"`` in the answer says what was done.
``POST /api/session``, ``DELETE /api/session/<id>``
    A new random session id (and how calibration works here); forget a session's voice.
    Sessions live in server memory only (:mod:`sound2sight.web.sessions`), never on disk,
    and are dropped after ``Limits.session_minutes`` without a request.
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
from sound2sight.web.sessions import SESSION_ID, VoiceSessions

__all__ = ["Limits", "create_app", "result_to_json"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
QUERY_KEYS = ("n", "k", "seed", "session", "calibrate")
CALIBRATION_MODES = ("auto", "opt-in", "off")


@dataclass(frozen=True)
class Limits:
    """What one app accepts; ``/health`` reports them and the page reads them."""

    max_upload_bytes: int = 10_000_000  # larger uploads: 413 before the body is read
    max_seconds: float = 60.0  # longer recordings: 422
    workers: int = 1  # pipeline calls at once (threads of the model pool); 1 = serialised
    max_in_flight: int = 32  # paint requests accepted at once (queued + running); more: 503
    request_timeout: float = 30.0  # seconds a client may stall mid-body: then 400
    # speaker calibration of a browser session: "opt-in" (when the page's checkbox asks, from
    # the calibrate_from-th recording on), "auto" (always) or "off".  Opt-in because, with the
    # shipped head listening through floor25, three recordings of one emotion (the page's way)
    # cost TESS 0.033 against one recording, past the 0.02; on average it helps
    # (benchmarks/voice_wild.py, BENCHMARKS.md › "The shipped speaker head listens")
    calibration: str = "opt-in"
    calibrate_from: int = 3  # recordings of a session (this one included) before calibrating
    session_minutes: float = 30.0  # a session's voice is forgotten after this long idle

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_MODES:
            raise ValueError(
                f"calibration: {self.calibration!r} is not one of {', '.join(CALIBRATION_MODES)}"
            )
        if self.calibrate_from < 1 or self.session_minutes <= 0:
            raise ValueError("calibrate_from and session_minutes must be positive")


def _state(request: Request):
    return request.app.state


def get_limits(request: Request) -> Limits:
    """Dependency: the app's :class:`Limits`."""
    return _state(request).limits


def reject_unknown_query(request: Request) -> None:
    """Dependency: a query key other than ``n``, ``k``, ``seed`` is a 400, not ignored."""
    for key in request.query_params:
        if key not in QUERY_KEYS:
            raise HTTPException(
                400, f"unknown query parameter {key[:40]!r} (use {', '.join(QUERY_KEYS)})"
            )


LimitsDep = Annotated[Limits, Depends(get_limits)]


def _calibration_available(pipeline) -> bool:
    """Whether ``pipeline`` can calibrate to a speaker (a speaker-normalised voice model)."""
    return bool(getattr(pipeline, "speaker_normalised", False))


def _paint_now(
    pipeline,
    data: bytes,
    limits: Limits,
    kwargs: dict[str, int],
    session: tuple[VoiceSessions, str, bool] | None = None,
) -> dict[str, Any]:
    """Runs in the model pool: probe, paint, encode the answer (PNG encoding included).
    ``session``: (store, id, calibration asked for) of a browser session."""
    from sound2sight.voice.audio import AudioError

    seconds = probe_seconds(data)
    if seconds > limits.max_seconds:
        raise AudioError(f"upload: {seconds:.1f} s long, over the {limits.max_seconds:g} s limit")
    t0 = time.perf_counter()
    earlier: list = []
    use = False
    if session is not None and _calibration_available(pipeline):
        store, sid, asked = session
        earlier = store.recordings(sid)
        wanted = limits.calibration == "auto" or (limits.calibration == "opt-in" and asked)
        use = wanted and len(earlier) + 1 >= limits.calibrate_from
        if use:
            kwargs = {**kwargs, "speaker_recordings": earlier}
    result = pipeline(data, **kwargs)
    log.info(
        "painted %.1f s of audio: %s in %.0f ms",
        seconds,
        result.emotion,
        (time.perf_counter() - t0) * 1000,
    )
    payload = result_to_json(result)
    payload["seconds"] = round(seconds, 3)
    if session is not None:
        held = len(earlier)
        keep = _calibration_available(pipeline) and limits.calibration != "off"
        if keep and result.voice_features is not None:  # "off": no voice is kept at all
            from sound2sight.voice.speaker import recording_stats

            # kept as its statistics: what a calibration needs of it
            held = session[0].add(session[1], recording_stats(result.voice_features))
        payload["calibration"] = {
            "available": _calibration_available(pipeline),
            "mode": limits.calibration,
            "calibrate_from": limits.calibrate_from,
            "recordings": held,  # this session's recordings kept, this one included
            "calibrated_on": int(result.calibrated_on) if use else 0,
        }
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
    session: Annotated[
        str | None,
        Query(
            pattern=SESSION_ID.pattern,
            description="a browser session's id (POST /api/session): its voice is kept in "
            "server memory to calibrate to the speaker",
        ),
    ] = None,
    calibrate: Annotated[
        bool, Query(description="with 'opt-in' calibration: calibrate to the session's voice")
    ] = False,
    audio: Annotated[
        UploadFile | None,
        File(description="the recording (WAV, FLAC, OGG, MP3); or send it as the raw body"),
    ] = None,
) -> dict[str, Any]:
    """Hear the emotion in one recording, paint it, and find the artworks nearest to it."""
    from sound2sight.voice.audio import AudioError

    if audio is not None:
        data = await audio.read()
    elif request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise HTTPException(400, "multipart upload has no 'audio' field")
    else:
        data = await request.body()
    if not data:
        raise HTTPException(422, "empty upload (0 bytes): send an audio file")
    state = _state(request)
    kwargs = {"n_images": n, "k": k, "seed": seed}
    voice = None if session is None else (state.sessions, session, calibrate)
    job = partial(_paint_now, state.pipeline, data, limits, kwargs, voice)
    try:
        return await asyncio.get_running_loop().run_in_executor(state.pool, job)
    except AudioError as exc:
        raise HTTPException(422, clean_message(str(exc))) from None
    except Exception:  # any bug: log it, answer 500, keep serving
        log.exception("POST /api/paint failed")
        raise HTTPException(500, "internal server error (logged on the server)") from None


async def new_session(request: Request, limits: LimitsDep) -> dict[str, Any]:
    """A new browser session: its recordings' voice features stay in server memory (never
    on disk) to calibrate to the speaker, until forgotten or idle for ``session_minutes``."""
    state = _state(request)
    return {
        "session": state.sessions.new(),
        "calibration": {
            "available": _calibration_available(state.pipeline),
            "mode": limits.calibration,
            "calibrate_from": limits.calibrate_from,
            "recordings": 0,
            "calibrated_on": 0,
        },
        "forget_after_minutes": limits.session_minutes,
    }


async def forget_session(request: Request, session_id: str) -> dict[str, Any]:
    """Forget a session's voice now (the page's "forget my voice")."""
    if not SESSION_ID.match(session_id):
        raise HTTPException(400, "a session id is 22-64 letters, digits, '-' or '_'")
    return {"forgotten": _state(request).sessions.forget(session_id)}


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
    app.state.sessions = VoiceSessions(ttl=limits.session_minutes * 60.0)
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
    app.add_api_route("/api/session", new_session, methods=["POST"])
    app.add_api_route("/api/session/{session_id}", forget_session, methods=["DELETE"])
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
