"""The web app: a stdlib HTTP server around any ``pipeline(audio_bytes, ...) -> Result``.

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
    Answers ``{emotion, probabilities, images, neighbours, n_windows, timings_ms}``;
    images and thumbnails are ``data:image/png;base64,...`` URLs.

Every error is JSON ``{"error": message}``: 400 bad request, 404 unknown route,
411 no ``Content-Length``, 413 upload over the size limit (refused before the body is
read), 422 audio that cannot be used (undecodable, silent, over the duration limit),
503 too many requests in flight, 500 anything unexpected (logged; the server keeps
serving).  Messages never carry a stack trace or a file system path.

>>> srv = make_server(lambda audio, **kw: None, port=0)
>>> srv.server_address[0]
'127.0.0.1'
>>> srv.server_close()
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import threading
import time
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sound2sight.web.payload import (
    ClientError,
    clean_message,
    multipart_field,
    probe_seconds,
    result_to_json,
    too_large,
)

__all__ = ["make_server", "serve", "result_to_json", "PaintServer", "Limits"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self' blob:",
}
QUERY_LIMITS = {"n": (0, 16), "k": (0, 32), "seed": (0, 2**31 - 1)}  # inclusive ranges


@dataclass(frozen=True)
class Limits:
    """What one server accepts (see :func:`make_server` for each field)."""

    max_upload_bytes: int = 10_000_000  # larger uploads: 413 before the body is read
    max_seconds: float = 60.0  # longer recordings: 422
    serialize: bool = True  # one pipeline call at a time (a lock around the torch models)
    max_in_flight: int = 32  # paint requests accepted at once; more: 503
    request_timeout: float = 30.0  # seconds a client may stall mid-request


class PaintServer(ThreadingHTTPServer):
    """A :class:`ThreadingHTTPServer` holding the pipeline and its :class:`Limits`."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], pipeline, limits: Limits) -> None:
        self.pipeline = pipeline
        self.limits = limits
        self.pipeline_lock = threading.Lock() if limits.serialize else None
        self.slots = threading.BoundedSemaphore(limits.max_in_flight)
        self.stats_lock = threading.Lock()
        self.served = 0  # responses sent
        self.errors = 0  # responses with status >= 500
        super().__init__(address, _Handler)

    def count(self, status: int) -> None:
        with self.stats_lock:
            self.served += 1
            self.errors += status >= 500

    def handle_error(self, request, client_address) -> None:
        """A client that vanished mid-answer is routine; anything else is logged with its trace."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            log.debug("client %s went away", client_address[0])
        else:
            log.exception("error while serving %s", client_address[0])

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PaintServer
    server_version = "sound2sight"
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.limits.request_timeout  # socket timeout: no slow-loris hangs
        super().setup()

    # ---- responses
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.server.count(status)

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), "application/json")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """JSON errors also for what :mod:`http.server` rejects itself (bad request line...)."""
        self.close_connection = True
        # an unparsable request line leaves HTTP/0.9, which gets no status line: answer properly
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"
        try:
            self._json(code, {"error": (message or HTTPStatus(code).phrase)[:200]})
        except OSError:
            pass

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: refuse an over-size upload before the client sends it."""
        raw, limit = self.headers.get("Content-Length", ""), self.server.limits.max_upload_bytes
        if raw.strip().isdigit() and int(raw) > limit:
            self.close_connection = True
            self._json(413, {"error": too_large(int(raw), limit)})
            return False
        return super().handle_expect_100()

    # ---- routes
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path == "/health":
            s = self.server
            status = {"status": "ok", "served": s.served, "errors": s.errors}
            return self._json(200, {**status, **asdict(s.limits)})
        if path.startswith("/static/"):
            return self._static(path[len("/static/") :])
        self._json(404, {"error": f"no such page: {path[:100]}"})

    do_HEAD = do_GET

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path != "/api/paint":
            self.close_connection = True  # the body is not read
            return self._json(404, {"error": f"no such endpoint: POST {path[:100]}"})
        if not self.server.slots.acquire(blocking=False):
            self.close_connection = True
            return self._json(503, {"error": "server busy: too many requests in flight, retry"})
        try:
            self._paint()
        except ClientError as exc:
            self.close_connection = self.close_connection or exc.status in (400, 411, 413)
            self._json(exc.status, {"error": exc.message})
        except ConnectionError:  # the client left before its answer: nothing to send
            log.debug("client went away before its answer")
            self.close_connection = True
        except Exception:  # any bug: log it, answer 500, keep serving
            log.exception("POST /api/paint failed")
            self.close_connection = True
            self._json(500, {"error": "internal server error (logged on the server)"})
        finally:
            self.server.slots.release()

    def _static(self, name: str) -> None:
        shipped = {p.name for p in STATIC_DIR.iterdir() if p.is_file()}
        if name not in shipped:  # only files that ship with the package: no traversal
            return self._json(404, {"error": f"no such file: {name[:100]}"})
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        charset = "; charset=utf-8" if ctype.startswith("text/") else ""
        self._send(200, (STATIC_DIR / name).read_bytes(), ctype + charset)

    def _query(self) -> dict[str, int]:
        out = {}
        for key, values in parse_qs(urlsplit(self.path).query).items():
            if key not in QUERY_LIMITS:
                raise ClientError(400, f"unknown query parameter {key!r} (use n, k, seed)")
            lo, hi = QUERY_LIMITS[key]
            try:
                value = int(values[-1])
            except ValueError:
                raise ClientError(400, f"{key} must be an integer") from None
            if not lo <= value <= hi:
                raise ClientError(400, f"{key} must be in [{lo}, {hi}]")
            out[key] = value
        return out

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise ClientError(411, "chunked uploads are not supported: send Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise ClientError(411, "Content-Length required")
        if not raw.strip().isdigit():
            raise ClientError(400, f"invalid Content-Length {raw[:40]!r}")
        length = int(raw)
        limit = self.server.limits.max_upload_bytes
        if length > limit:
            self._drain_later = length
            raise ClientError(413, too_large(length, limit))
        if length == 0:
            raise ClientError(422, "empty upload (0 bytes): send an audio file")
        chunks, got = [], 0
        try:
            while got < length:
                chunk = self.rfile.read(min(1 << 16, length - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except TimeoutError:  # a stalled client (request_timeout)
            pass
        if got < length:
            raise ClientError(400, f"incomplete body: Content-Length {length}, got {got} bytes")
        return b"".join(chunks)

    def _paint(self) -> None:
        from sound2sight.audio import AudioError

        query = self._query()
        body = self._read_body()
        ctype = self.headers.get("Content-Type", "")
        if ctype.lower().startswith("multipart/form-data"):
            body = multipart_field(body, ctype, "audio")
            if not body:
                raise ClientError(422, "empty upload (0 bytes): send an audio file")
        try:
            seconds, limit = probe_seconds(body), self.server.limits.max_seconds
            if seconds > limit:
                raise AudioError(f"upload: {seconds:.1f} s long, over the {limit:g} s limit")
            kwargs = {"n_images": query.get("n", 4), "k": query.get("k", 8)}
            kwargs["seed"] = query.get("seed", 0)
            t0 = time.perf_counter()
            lock = self.server.pipeline_lock
            if lock is None:
                result = self.server.pipeline(body, **kwargs)
            else:
                with lock:
                    result = self.server.pipeline(body, **kwargs)
            ms = (time.perf_counter() - t0) * 1000
            log.info("painted %.1f s of audio: %s in %.0f ms", seconds, result.emotion, ms)
        except AudioError as exc:
            raise ClientError(422, clean_message(str(exc))) from None
        payload = result_to_json(result)
        payload["seconds"] = round(seconds, 3)
        self._json(200, payload)

    def finish(self) -> None:
        """After a 413, read and drop what the client still sends (bounded), so it sees the answer."""
        pending = getattr(self, "_drain_later", 0)
        if pending:
            try:
                self.connection.settimeout(1.0)
                for _ in range(min(pending, 64 << 20) // (1 << 16) + 1):
                    if not self.connection.recv(1 << 16):
                        break
            except OSError:
                pass
        super().finish()


def _cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def make_server(
    pipeline,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_upload_bytes: int = 10_000_000,
    max_seconds: float = 60.0,
    serialize: bool = True,
    max_in_flight: int = 32,
    request_timeout: float = 30.0,
) -> PaintServer:
    """Build (not start) the HTTP server; run it with ``serve_forever()``.

    Parameters
    ----------
    pipeline : callable
        ``pipeline(audio_bytes, n_images=, k=, seed=) -> Result``, e.g. a ``Sound2Sight``.
    host : str
        Interface to bind; the default serves this machine only.
    port : int in [0, 65535]
        0 picks a free port (read it from ``server.server_address``).
    max_upload_bytes : int > 0
        Larger uploads get 413 before their body is read.
    max_seconds : float > 0
        Longer recordings get 422.
    serialize : bool
        Run one pipeline call at a time (a lock around the shared torch model).
    max_in_flight : int > 0
        Paint requests accepted at once; more get 503.
    request_timeout : float > 0
        Seconds a client may stall mid-request before its connection is dropped.
    """
    limits = Limits(
        int(max_upload_bytes), float(max_seconds), serialize, max_in_flight, request_timeout
    )
    return PaintServer((host, port), pipeline, limits)


def serve(
    run_dir: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int | None = None,
    **limits,
) -> None:
    """Load a run (or bundle) and serve the web page until interrupted.

    Parameters
    ----------
    run_dir : path
        A trained run directory or an exported bundle.
    host, port
        Where to listen (default: this machine only, port 8000).
    threads : int | None
        ``torch.set_num_threads``; default: the number of CPU cores.
    **limits
        Passed to :func:`make_server` (``max_upload_bytes``, ``max_seconds``, ...).
    """
    import torch

    from sound2sight.pipeline import Sound2Sight

    torch.set_num_threads(threads or _cores())
    pipe = Sound2Sight.from_run(run_dir)
    server = make_server(pipe, host=host, port=port, **limits)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: the page is reachable from other machines", host)
    log.info("serving %s at %s (Ctrl-C stops)", run_dir, server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        server.server_close()
