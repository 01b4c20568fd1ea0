"""Serve the app with uvicorn: :func:`serve` for a run directory, :func:`make_server` for tests.

>>> srv = make_server(lambda audio, **kw: None, port=0)
>>> srv.server_address[0], srv.url.startswith("http://127.0.0.1:")
('127.0.0.1', True)
>>> srv.server_close()
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from sound2sight.web.server import Limits, cores, create_app

__all__ = ["PaintServer", "make_server", "serve"]

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class PaintServer:
    """A uvicorn server bound at construction (so its port is known before it runs).

    ``serve_forever()`` blocks (run it in a thread to serve in the background);
    ``shutdown()`` asks it to stop and waits; ``server_close()`` releases the socket.
    """

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=128)
        self.config = uvicorn.Config(
            app,
            http="h11",  # the pure-Python parser: the same behaviour on every machine
            loop="asyncio",
            lifespan="on",
            log_config=None,  # keep the application's logging setup
            access_log=False,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(self.config)
        self._stopped = threading.Event()

    @property
    def server_address(self) -> tuple[str, int]:
        return self.socket.getsockname()[:2]

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        """Run until :meth:`shutdown` (or Ctrl-C when in the main thread)."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self._stopped.wait(timeout)

    def server_close(self) -> None:
        self.socket.close()


def make_server(
    pipeline,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_upload_bytes: int = 10_000_000,
    max_seconds: float = 60.0,
    workers: int = 1,
    max_in_flight: int = 32,
    request_timeout: float = 30.0,
    calibration: str = "opt-in",
) -> PaintServer:
    """Build (not start) the server; run it with ``serve_forever()``.

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
    workers : int > 0
        Pipeline calls at once (threads of the model pool); 1 serialises them.
    max_in_flight : int > 0
        Paint requests accepted at once (queued and running); more get 503.
    request_timeout : float > 0
        Seconds a client may stall mid-body before it gets 400.
    calibration : "auto" | "opt-in" | "off"
        Speaker calibration of a browser session (a speaker-normalised voice model only):
        always from the third recording, when the page's checkbox asks (the default), or never.
    """
    limits = Limits(
        max_upload_bytes=int(max_upload_bytes),
        max_seconds=float(max_seconds),
        workers=int(workers),
        max_in_flight=int(max_in_flight),
        request_timeout=float(request_timeout),
        calibration=calibration,
    )
    return PaintServer(create_app(pipeline, limits), host=host, port=port)


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
        Passed to :func:`make_server` (``max_upload_bytes``, ``max_seconds``, ``workers``...).
    """
    import torch

    from sound2sight.pipeline import Sound2Sight

    torch.set_num_threads(threads or cores())
    pipe = Sound2Sight.from_run(run_dir)
    server = make_server(pipe, host=host, port=port, **limits)
    if host not in LOOPBACK:
        log.warning("listening on %s: the page is reachable from other machines", host)
    log.info("serving %s at %s (API docs at %sdocs; Ctrl-C stops)", run_dir, server.url, server.url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        log.info("stopped")
