"""The web server over HTTP: paint, limits, hostile requests, concurrency.

HTTP behaviour runs against :class:`FakePipeline` (the real audio front end, no model);
the end-to-end cases also run against the lead's ``tiny_run`` fixture when it exists.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from sound2sight.audio import AudioError, decode_audio, preprocess_waveform
from sound2sight.config import AudioConfig
from sound2sight.labels import EMOTIONS
from sound2sight.pipeline import Neighbour, Result
from sound2sight.synthetic import synth_voice
from sound2sight.web import make_server


class FakePipeline:
    """``Sound2Sight``'s call signature and ``Result``, with the real audio checks and no model."""

    def __init__(self) -> None:
        self.cfg = AudioConfig()
        self.calls = 0

    def __call__(self, audio, *, sample_rate=None, n_images=4, k=8, seed=0, generator=None):
        self.calls += 1
        wave = decode_audio(audio, name="upload", sample_rate=self.cfg.sample_rate)
        wave = preprocess_waveform(wave, self.cfg, name="upload")  # raises "no speech detected"
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=len(EMOTIONS)) + np.abs(wave).mean()
        p = np.exp(logits) / np.exp(logits).sum()
        thumb = np.full((32, 32, 3), 90, np.uint8)
        return Result(
            emotion=EMOTIONS[int(p.argmax())],
            probabilities={e: float(v) for e, v in zip(EMOTIONS, p, strict=True)},
            embedding=np.zeros(128, np.float32),
            images=[rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n_images)],
            neighbours=[
                Neighbour(
                    f"/srv/data/art/{EMOTIONS[i % 3]}/art_{i}.png",
                    EMOTIONS[i % 3],
                    0.9 - 0.05 * i,
                    thumb,
                )
                for i in range(k)
            ],
            timings_ms={"total": 1.0},
        )


def wav_bytes(wave: np.ndarray, sr: int = 16000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def voice_wav(seconds: float = 3.0, emotion: str = "happy") -> bytes:
    return wav_bytes(synth_voice(emotion, speaker=1, seed=3, duration=seconds))


@contextlib.contextmanager
def running(pipeline, **kw):
    """Serve ``pipeline`` on a free loopback port in a thread; yield ``(host, port)``."""
    server = make_server(pipeline, port=0, **kw)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[:2]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(addr, method: str, path: str, body: bytes | None = None, headers=None):
    """One request on a fresh connection; returns ``(status, parsed JSON or text)``."""
    conn = http.client.HTTPConnection(*addr, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    ctype = resp.getheader("Content-Type", "")
    return resp.status, json.loads(data) if ctype.startswith("application/json") else data


def raw_exchange(addr, payload: bytes, *, shut_write: bool = True) -> bytes:
    """Send raw bytes on a socket, read the answer until the server closes."""
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(payload)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def assert_healthy(addr) -> None:
    status, body = request(addr, "GET", "/health")
    assert status == 200 and body["status"] == "ok"


@pytest.fixture(scope="module")
def fake_addr():
    with running(
        FakePipeline(), max_upload_bytes=500_000, max_seconds=10.0, request_timeout=1.0
    ) as addr:
        yield addr


@pytest.fixture(scope="module", params=["fake", "tiny_run"])
def paint_addr(request):
    """A server over the fake pipeline, and over a real tiny trained run when available."""
    if request.param == "fake":
        pipe = FakePipeline()
    else:
        try:
            run_dir = request.getfixturevalue("tiny_run")
        except pytest.FixtureLookupError:
            pytest.skip("tests/conftest.py has no tiny_run fixture yet")
        from sound2sight.pipeline import Sound2Sight

        pipe = Sound2Sight.from_run(run_dir)
    with running(pipe) as addr:
        yield addr


def _png_shape(data_url: str) -> tuple[int, ...]:
    from PIL import Image

    assert data_url.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
    return np.asarray(img).shape


# ---- paint
def test_paint_raw_wav_returns_emotion_images_neighbours(paint_addr):
    status, body = request(
        paint_addr, "POST", "/api/paint?n=3&k=5&seed=1", voice_wav(), {"Content-Type": "audio/wav"}
    )
    assert status == 200, body
    assert body["emotion"] in EMOTIONS
    assert set(body["probabilities"]) == set(EMOTIONS)
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-3
    assert len(body["images"]) == 3 and _png_shape(body["images"][0])[2] == 3
    assert 1 <= len(body["neighbours"]) <= 5
    for nb in body["neighbours"]:
        assert nb["label"] in EMOTIONS and -1.001 <= nb["score"] <= 1.001
        assert "/" not in nb["name"] and _png_shape(nb["thumbnail"])[2] == 3
    assert body["n_windows"] >= 1 and "total" in body["timings_ms"]


def test_paint_multipart_field_audio(paint_addr):
    boundary = "----s2sBoundary7MA4YWxk"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; '
        f'filename="v.wav"\r\nContent-Type: audio/wav\r\n\r\n'
    ).encode()
    body += voice_wav() + f"\r\n--{boundary}--\r\n".encode()
    status, out = request(
        paint_addr,
        "POST",
        "/api/paint?n=1&k=2",
        body,
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert status == 200, out
    assert len(out["images"]) == 1 and len(out["neighbours"]) == 2


def test_same_seed_same_paintings(paint_addr):
    a = request(paint_addr, "POST", "/api/paint?n=2&seed=7", voice_wav())[1]
    b = request(paint_addr, "POST", "/api/paint?n=2&seed=7", voice_wav())[1]
    assert a["images"] == b["images"] and a["emotion"] == b["emotion"]


def test_garbage_bytes_is_422_naming_the_problem(paint_addr):
    status, body = request(paint_addr, "POST", "/api/paint", b"this is not audio at all " * 40)
    assert status == 422 and "cannot decode audio" in body["error"]


def test_silence_is_422_no_speech_detected(paint_addr):
    status, body = request(paint_addr, "POST", "/api/paint", wav_bytes(np.zeros(48000)))
    assert status == 422 and "no speech detected" in body["error"]


def test_concurrent_clients_all_succeed(paint_addr):
    wav = voice_wav(2.0)

    def client(i: int) -> list[int]:
        return [
            request(paint_addr, "POST", f"/api/paint?seed={i}&n=2&k=3", wav)[0] for _ in range(5)
        ]

    with ThreadPoolExecutor(4) as pool:
        statuses = [s for batch in pool.map(client, range(4)) for s in batch]
    assert statuses == [200] * 20
    assert_healthy(paint_addr)


# ---- limits and bad requests
def test_oversize_upload_is_413(fake_addr):
    status, body = request(fake_addr, "POST", "/api/paint", b"\0" * 600_000)
    assert status == 413 and "too large" in body["error"] and "0.5 MB" in body["error"]
    assert_healthy(fake_addr)


def test_oversize_is_refused_before_the_body_is_sent(fake_addr):
    head = b"POST /api/paint HTTP/1.1\r\nHost: x\r\nContent-Length: 900000000000\r\n\r\n"
    t0 = time.perf_counter()
    answer = raw_exchange(fake_addr, head, shut_write=False)
    assert answer.startswith(b"HTTP/1.1 413") and b"too large" in answer
    assert time.perf_counter() - t0 < 5
    expect = head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n")
    assert raw_exchange(fake_addr, expect).startswith(b"HTTP/1.1 413")


def test_too_long_is_422():
    with running(FakePipeline(), max_seconds=2.0) as addr:
        status, body = request(addr, "POST", "/api/paint", voice_wav(3.0))
    assert status == 422 and "over the 2 s limit" in body["error"]


@pytest.mark.parametrize(
    "headers, code, words",
    [
        ({}, 411, "Content-Length required"),
        ({"Content-Length": "12abc"}, 400, "invalid Content-Length"),
        ({"Transfer-Encoding": "chunked"}, 411, "chunked"),
    ],
)
def test_content_length_problems(fake_addr, headers, code, words):
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    answer = raw_exchange(fake_addr, f"POST /api/paint HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
    assert answer.startswith(f"HTTP/1.1 {code}".encode()) and words.encode() in answer
    assert_healthy(fake_addr)


def test_empty_upload_is_422(fake_addr):
    status, body = request(fake_addr, "POST", "/api/paint", b"")
    assert status == 422 and "empty upload" in body["error"]


@pytest.mark.parametrize("query", ["n=abc", "n=99", "k=-1", "colour=red"])
def test_bad_query_is_400(fake_addr, query):
    status, body = request(fake_addr, "POST", f"/api/paint?{query}", voice_wav(1.0))
    assert status == 400 and body["error"]


def test_survives_malformed_requests(fake_addr):
    for junk in (
        b"\x16\x03\x01\x02\x00junk-tls-hello\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
    ):
        assert raw_exchange(fake_addr, junk).startswith(b"HTTP/1.")
        assert_healthy(fake_addr)
    # Content-Length larger than the body, then the client closes: 400, server fine
    short = b"POST /api/paint HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nRIFF1234"
    assert b"incomplete body" in raw_exchange(fake_addr, short)
    # a stalled client is dropped after request_timeout (1 s here)
    assert b"incomplete body" in raw_exchange(fake_addr, short, shut_write=False)
    assert_healthy(fake_addr)


def test_unknown_routes_are_404(fake_addr):
    assert request(fake_addr, "GET", "/nope")[0] == 404
    assert request(fake_addr, "POST", "/api/nope", b"x")[0] == 404
    assert request(fake_addr, "GET", "/static/../server.py")[0] == 404
    assert request(fake_addr, "GET", "/static/%2e%2e%2fserver.py")[0] == 404


def test_page_and_assets_are_served(fake_addr):
    status, page = request(fake_addr, "GET", "/")
    assert status == 200 and b"sound2sight" in page and b"/static/app.js" in page
    assert b"https://" not in page  # no CDN: the machine may be offline
    status, js = request(fake_addr, "GET", "/static/app.js")
    assert status == 200 and b"getUserMedia" in js and b"encodeWav" in js


def test_unexpected_exception_is_500_without_leaks():
    def broken(audio, **kw):
        raise RuntimeError("boom in /home/secret/model.pt")

    def leaky(audio, **kw):
        raise AudioError("/home/secret/upload.wav: no speech detected")

    for pipe, code in ((broken, 500), (leaky, 422)):
        with running(pipe) as addr:
            status, body = request(addr, "POST", "/api/paint", voice_wav(1.0))
            assert (
                status == code and "/home" not in body["error"] and "Traceback" not in body["error"]
            )
            assert_healthy(addr)


def test_busy_server_answers_503():
    release = threading.Event()
    slow = FakePipeline()

    def blocking(audio, **kw):
        release.wait(10)
        return slow(audio, **kw)

    with running(blocking, max_in_flight=1) as addr, ThreadPoolExecutor(1) as pool:
        first = pool.submit(request, addr, "POST", "/api/paint", voice_wav(1.0))
        time.sleep(0.3)
        status, body = request(addr, "POST", "/api/paint", voice_wav(1.0))
        release.set()
        assert status == 503 and "busy" in body["error"]
        assert first.result(10)[0] == 200


def test_client_leaving_mid_request_is_harmless():
    def slow(audio, **kw):
        time.sleep(0.3)
        return FakePipeline()(audio, **kw)

    with running(slow) as addr:
        wav = voice_wav(1.0)
        s = socket.create_connection(addr)
        s.sendall(b"POST /api/paint HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(wav) + wav)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # reset: the answer has nowhere to go
        time.sleep(0.6)
        assert_healthy(addr)
        assert request(addr, "GET", "/health")[1]["errors"] == 0
