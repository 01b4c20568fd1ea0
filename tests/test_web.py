"""The web app: paint, limits, hostile requests, concurrency.

Routes and error contract run through FastAPI's :class:`~fastapi.testclient.TestClient`
against :class:`FakePipeline` (the real audio front end, no model); what only a real
socket shows (413 before the body is sent, malformed bytes, stalled or vanishing
clients, 503 under load) runs against uvicorn on a loopback port.  The end-to-end cases
also run against the ``tiny_run`` fixture.
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
from fastapi.testclient import TestClient

from sound2sight.config import AudioConfig
from sound2sight.labels import EMOTIONS
from sound2sight.pipeline import Neighbour, Result
from sound2sight.synthetic import synth_voice
from sound2sight.voice.audio import AudioError, decode_audio, preprocess_waveform
from sound2sight.web import Limits, create_app, make_server


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
        order = np.argsort(p)[::-1]

        def nb(i: int) -> Neighbour:
            name = ("claude-monet_water-lilies-1916.jpg", f"art_{EMOTIONS[i % 3]}_{i:04d}.png")[
                i % 2
            ]
            return Neighbour(
                f"/srv/data/art/{EMOTIONS[i % 3]}/{name}", EMOTIONS[i % 3], 0.9 - 0.05 * i, thumb
            )

        return Result(
            emotion=EMOTIONS[int(p.argmax())],
            probabilities={e: float(v) for e, v in zip(EMOTIONS, p, strict=True)},
            embedding=np.zeros(128, np.float32),
            images=[rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n_images)],
            neighbours=[nb(i) for i in range(k)],
            timings_ms={"total": 1.0},
            uncertain=(EMOTIONS[order[0]], EMOTIONS[order[1]])
            if p[order[0]] - p[order[1]] < 0.2
            else None,
            image_neighbours=[[nb(j) for j in range(3)] for _ in range(n_images)],
            provenance={"voice": "fake pipeline (tests)", "art": "procedural demo paintings"},
        )


def wav_bytes(wave: np.ndarray, sr: int = 16000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def voice_wav(seconds: float = 3.0, emotion: str = "happy") -> bytes:
    return wav_bytes(synth_voice(emotion, speaker=1, seed=3, duration=seconds))


def client_for(pipeline, **limits) -> TestClient:
    return TestClient(create_app(pipeline, Limits(**limits)), raise_server_exceptions=False)


@contextlib.contextmanager
def running(pipeline, **kw):
    """Serve ``pipeline`` with uvicorn on a free loopback port in a thread; yield ``(host, port)``."""
    server = make_server(pipeline, port=0, **kw)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield server.server_address
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(addr, method: str, path: str, body: bytes | None = None, headers=None):
    """One request on a fresh connection; returns ``(status, parsed JSON or bytes)``."""
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
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                out += chunk
    return out


def assert_healthy(addr) -> None:
    status, body = request(addr, "GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["errors"] == 0


@pytest.fixture(scope="module")
def client():
    with client_for(FakePipeline(), max_upload_bytes=500_000, max_seconds=10.0) as c:
        yield c


@pytest.fixture(scope="module")
def fake_addr():
    with running(
        FakePipeline(), max_upload_bytes=500_000, max_seconds=10.0, request_timeout=1.0
    ) as addr:
        yield addr


@pytest.fixture(scope="module", params=["fake", "tiny_run"])
def paint_client(request):
    """A client of the app over the fake pipeline, and over a real tiny trained run."""
    if request.param == "fake":
        pipe = FakePipeline()
    else:
        from sound2sight.pipeline import Sound2Sight

        pipe = Sound2Sight.from_run(request.getfixturevalue("tiny_run"))
    with client_for(pipe) as c:
        yield c


def _png_shape(data_url: str) -> tuple[int, ...]:
    from PIL import Image

    assert data_url.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
    return np.asarray(img).shape


# ---- paint
def test_paint_raw_wav_returns_emotion_images_neighbours(paint_client):
    resp = paint_client.post(
        "/api/paint",
        params={"n": 3, "k": 5, "seed": 1},
        content=voice_wav(),
        headers={"Content-Type": "audio/wav"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["emotion"] in EMOTIONS
    assert set(body["probabilities"]) == set(EMOTIONS)
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-3
    assert len(body["images"]) == 3 and _png_shape(body["images"][0])[2] == 3
    w, h = body["image_sizes"][0]
    assert _png_shape(body["images"][0])[:2] == (h, w)
    assert 1 <= len(body["neighbours"]) <= 5
    for nb in body["neighbours"]:
        assert nb["label"] in EMOTIONS and -1.001 <= nb["score"] <= 1.001
        assert "/" not in nb["name"] and _png_shape(nb["thumbnail"])[2] == 3
        assert nb["title"] and "artist" in nb
    assert body["uncertain"] is None or set(body["uncertain"]) <= set(EMOTIONS)
    assert isinstance(body["provenance"], dict) and isinstance(body["image_neighbours"], list)
    assert body["n_windows"] >= 1 and "total" in body["timings_ms"]


def test_payload_passes_uncertain_neighbours_per_painting_and_provenance(client):
    body = client.post("/api/paint?n=2&k=2", content=voice_wav()).json()
    assert body["provenance"]["art"] == "procedural demo paintings"
    assert len(body["image_neighbours"]) == 2 and len(body["image_neighbours"][0]) == 3
    monet = body["image_neighbours"][0][0]
    assert (monet["artist"], monet["title"]) == ("Claude Monet", "Water Lilies 1916")
    demo = body["image_neighbours"][0][1]
    assert demo["artist"] is None and demo["title"].startswith("Art ")
    assert body["uncertain"] is None or len(body["uncertain"]) == 2


def test_paint_multipart_field_audio(paint_client):
    resp = paint_client.post(
        "/api/paint?n=1&k=2",
        data={"note": "hi"},
        files={"audio": ("v.wav", voice_wav(), "audio/wav")},
    )
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["images"]) == 1 and len(resp.json()["neighbours"]) == 2


def test_multipart_without_audio_field_is_400(client):
    resp = client.post("/api/paint", files={"sound": ("v.wav", voice_wav(1.0), "audio/wav")})
    assert resp.status_code == 400 and "'audio' field" in resp.json()["error"]


def test_same_seed_same_paintings(paint_client):
    a = paint_client.post("/api/paint?n=2&seed=7", content=voice_wav()).json()
    b = paint_client.post("/api/paint?n=2&seed=7", content=voice_wav()).json()
    assert a["images"] == b["images"] and a["emotion"] == b["emotion"]


def test_garbage_bytes_is_422_naming_the_problem(paint_client):
    resp = paint_client.post("/api/paint", content=b"this is not audio at all " * 40)
    assert resp.status_code == 422 and "cannot decode audio" in resp.json()["error"]


def test_silence_is_422_no_speech_detected(paint_client):
    resp = paint_client.post("/api/paint", content=wav_bytes(np.zeros(48000)))
    assert resp.status_code == 422 and "no speech detected" in resp.json()["error"]


def test_concurrent_clients_all_succeed(paint_client):
    wav = voice_wav(2.0)

    def one(i: int) -> list[int]:
        return [
            paint_client.post(f"/api/paint?seed={i}&n=2&k=3", content=wav).status_code
            for _ in range(5)
        ]

    with ThreadPoolExecutor(4) as pool:
        statuses = [s for batch in pool.map(one, range(4)) for s in batch]
    assert statuses == [200] * 20
    health = paint_client.get("/health").json()
    assert health["status"] == "ok" and health["errors"] == 0


# ---- limits and bad requests
def test_oversize_upload_is_413(client):
    resp = client.post("/api/paint", content=b"\0" * 600_000)
    assert resp.status_code == 413
    assert "too large" in resp.json()["error"] and "0.5 MB" in resp.json()["error"]


def test_oversize_is_refused_before_the_body_is_sent(fake_addr):
    head = b"POST /api/paint HTTP/1.1\r\nHost: x\r\nContent-Length: 900000000000\r\n\r\n"
    t0 = time.perf_counter()
    answer = raw_exchange(fake_addr, head, shut_write=False)
    assert answer.startswith(b"HTTP/1.1 413") and b"too large" in answer
    assert time.perf_counter() - t0 < 5
    expect = head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n")
    answer = raw_exchange(fake_addr, expect, shut_write=False)
    assert answer.startswith(b"HTTP/1.1 413")  # no "100 Continue": the client sends nothing
    assert_healthy(fake_addr)


def test_too_long_is_422():
    with client_for(FakePipeline(), max_seconds=2.0) as c:
        resp = c.post("/api/paint", content=voice_wav(3.0))
    assert resp.status_code == 422 and "over the 2 s limit" in resp.json()["error"]


@pytest.mark.parametrize(
    "headers, code, words",
    [
        ({}, 411, b"Content-Length required"),
        ({"Content-Length": "12abc"}, 400, b""),  # uvicorn refuses it as malformed HTTP
        ({"Transfer-Encoding": "chunked"}, 411, b"chunked"),
    ],
)
def test_content_length_problems(fake_addr, headers, code, words):
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request_head = f"POST /api/paint HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode()
    answer = raw_exchange(fake_addr, request_head, shut_write=False)  # the server closes
    assert answer.startswith(f"HTTP/1.1 {code}".encode()) and words in answer
    assert_healthy(fake_addr)


def test_empty_upload_is_422(client):
    resp = client.post("/api/paint", content=b"")
    assert resp.status_code == 422 and "empty upload" in resp.json()["error"]


@pytest.mark.parametrize("query", ["n=abc", "n=99", "k=-1", "colour=red"])
def test_bad_query_is_400(client, query):
    resp = client.post(f"/api/paint?{query}", content=voice_wav(1.0))
    assert resp.status_code == 400 and resp.json()["error"]
    assert "Traceback" not in resp.text


def test_survives_malformed_requests(fake_addr):
    for junk in (
        b"\x16\x03\x01\x02\x00junk-tls-hello\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\nConnection: close\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
    ):  # (uvicorn drops a half-closed connection before a well-formed request is answered)
        assert raw_exchange(fake_addr, junk, shut_write=False).startswith(b"HTTP/1.")
        assert_healthy(fake_addr)
    # Content-Length larger than the body, then the client closes: nobody to answer, server fine
    short = b"POST /api/paint HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nRIFF1234"
    answer = raw_exchange(fake_addr, short)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400")
    # a stalled client gets 400 after request_timeout (1 s here)
    assert b"incomplete body" in raw_exchange(fake_addr, short, shut_write=False)
    assert_healthy(fake_addr)


def test_unknown_routes_are_404_json(client):
    assert client.get("/nope").json() == {"error": "no such page: /nope"}
    assert client.post("/api/nope", content=b"x").status_code == 404
    assert client.get("/static/nope.js").status_code == 404


def test_static_traversal_is_refused(fake_addr):
    for path in ("/static/../server.py", "/static/%2e%2e%2fserver.py", "/static/..%2fgate.py"):
        status, body = request(fake_addr, "GET", path)
        assert status == 404 and b"import" not in json.dumps(body).encode()


def test_page_assets_and_openapi_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "sound2sight" in page.text and "/static/app.js" in page.text
    assert "https://" not in page.text  # no CDN: the machine may be offline
    assert page.headers["x-content-type-options"] == "nosniff"
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "MediaRecorder" in js.text
    assert "createScriptProcessor" not in js.text
    schema = client.get("/openapi.json").json()
    paint = schema["paths"]["/api/paint"]["post"]
    assert "413" in paint["responses"] and "503" in paint["responses"]
    assert {"multipart/form-data", "application/octet-stream"} <= set(
        paint["requestBody"]["content"]
    )
    assert client.get("/docs").status_code == 200


def test_unexpected_exception_is_500_without_leaks():
    def broken(audio, **kw):
        raise RuntimeError("boom in /home/secret/model.pt")

    def leaky(audio, **kw):
        raise AudioError("/home/secret/upload.wav: no speech detected")

    for pipe, code in ((broken, 500), (leaky, 422)):
        with client_for(pipe) as c:
            resp = c.post("/api/paint", content=voice_wav(1.0))
            body = resp.json()
            assert resp.status_code == code
            assert "/home" not in body["error"] and "Traceback" not in body["error"]
            assert c.get("/health").json()["status"] == "ok"


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
