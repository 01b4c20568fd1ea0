"""The gate in front of the app: what is decided before a request body is read.

FastAPI reads (and parses) a body before any dependency runs, so the checks that must
come first live in one small ASGI middleware, :class:`UploadGate`:

- every response gets the security headers and is counted (``/health`` reports it);
- ``POST /api/paint`` is refused with 503 when ``max_in_flight`` requests are already in,
  with 411 without ``Content-Length`` (or chunked), with 413 when the declared length is
  over ``max_upload_bytes`` -- all before a byte of the body is read, so uvicorn never
  sends ``100 Continue`` -- and with 400 when the client stalls for ``request_timeout``
  seconds mid-body.  The buffered body is then replayed to the app.

Errors are ``{"error": message}`` with ``Connection: close`` (the body was not read).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sound2sight.web.payload import too_large

__all__ = ["Stats", "UploadGate", "SECURITY_HEADERS"]

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "content-security-policy": "default-src 'self'; img-src 'self' data:; media-src 'self' blob:",
}
DOCS_PATHS = ("/docs", "/redoc")  # FastAPI's pages: an inline script, assets from a CDN
_HEADERS = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]
_DOCS_HEADERS = [h for h in _HEADERS if h[0] != b"content-security-policy"]


@dataclass
class Stats:
    """Counters of one app (mutated on the event loop only, so no lock)."""

    served: int = 0  # responses started
    errors: int = 0  # responses with status >= 500
    in_flight: int = 0  # paint requests inside the gate now


class UploadGate:
    """ASGI middleware guarding ``POST path`` (see the module docstring).

    Parameters
    ----------
    app : ASGI app
        The FastAPI app behind the gate.
    limits : Limits
        ``max_upload_bytes``, ``max_in_flight`` and ``request_timeout`` are read.
    stats : Stats
        Counters this gate updates.
    path : str
        The upload route.
    """

    def __init__(self, app: ASGIApp, *, limits, stats: Stats, path: str = "/api/paint") -> None:
        self.app, self.limits, self.stats, self.path = app, limits, stats, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        extra = _DOCS_HEADERS if scope["path"].startswith(DOCS_PATHS) else _HEADERS

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
                self.stats.served += 1
                self.stats.errors += message["status"] >= 500
            await send(message)

        if scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, counted_send)
            return
        refusal = self._refusal(dict(scope["headers"]))
        if refusal is not None:
            await _error(scope, receive, counted_send, *refusal)
            return
        self.stats.in_flight += 1
        try:
            body = await self._read_body(receive, int(dict(scope["headers"])[b"content-length"]))
            if body is None:  # the client left or stalled: answered or nobody to answer
                await _error(scope, receive, counted_send, 400, "incomplete body (client stalled)")
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if replayed:
                    return await receive()  # waits for the disconnect, as a body-less receive does
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, replay, counted_send)
        finally:
            self.stats.in_flight -= 1

    def _refusal(self, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        """``(status, message)`` when the request is refused before its body is read."""
        if self.stats.in_flight >= self.limits.max_in_flight:
            return 503, "server busy: too many requests in flight, retry"
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            return 411, "chunked uploads are not supported: send Content-Length"
        raw = headers.get(b"content-length")
        if raw is None:
            return 411, "Content-Length required"
        if not raw.strip().isdigit():
            return 400, f"invalid Content-Length {raw[:40].decode('latin-1')!r}"
        length, limit = int(raw), self.limits.max_upload_bytes
        if length > limit:
            return 413, too_large(length, limit)
        if length == 0:
            return 422, "empty upload (0 bytes): send an audio file"
        return None

    async def _read_body(self, receive: Receive, length: int) -> bytes | None:
        """The whole body (``length`` bytes, at most ``max_upload_bytes``), or None."""
        chunks, got = [], 0
        while got < length:
            try:
                message = await asyncio.wait_for(receive(), self.limits.request_timeout)
            except asyncio.TimeoutError:
                log.debug("client stalled after %d of %d bytes", got, length)
                return None
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            got += len(chunks[-1])
            if not message.get("more_body", False):
                break
        return b"".join(chunks) if got == length else None


async def _error(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    response = JSONResponse({"error": message}, status_code=status, headers={"connection": "close"})
    await response(scope, receive, send)
