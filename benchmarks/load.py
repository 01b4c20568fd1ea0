"""Web server under load on loopback: concurrent clients, malformed requests, memory.

    python benchmarks/load.py --run runs/demo
    python benchmarks/load.py --random-weights configs/demo.yaml    # no run: untrained models

The server is the FastAPI app under uvicorn (``sound2sight serve``).  For each server
mode (``lock:T`` = one model worker, pipeline calls serialised; ``concurrent:T`` =
``--workers`` model threads; ``T`` torch threads) a fresh server process is started on
127.0.0.1 and ``--clients``
threads each send ``--requests`` paint requests (a 3 s wav, 4 images, 8 neighbours),
with a malformed request interleaved every 5th request (garbage bytes, over-size
Content-Length, junk request line, a body that stalls, silence, bad query, no
Content-Length), each of which must get its expected 4xx.  Reports p50/p95 latency, throughput, errors
(goal 0) and the server's RSS (after warm-up, at the end, and peak VmHWM from
/proc/<pid>/status); writes ``benchmarks/results/load.json``.  Every run is bounded
(fixed request counts; the server process exits by itself after ``--max-lifetime``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import RESULTS, add_source_args, percentiles, voice_wav  # noqa: E402

log = logging.getLogger("benchmarks.load")
HOST = "127.0.0.1"


# ---- the server process
def child(args: argparse.Namespace) -> int:
    """Serve in this process until killed or ``--max-lifetime`` passes."""
    import torch

    from sound2sight.web import make_server

    torch.set_num_threads(args.threads)
    if args.run:
        from sound2sight.pipeline import Sound2Sight

        pipe = Sound2Sight.from_run(args.run)
    else:
        from latency import random_pipeline

        pipe = random_pipeline(args.random_weights or None)
    workers = 1 if args.serialize else args.workers
    server = make_server(
        pipe, host=HOST, port=0, workers=workers, max_in_flight=64, request_timeout=2.0
    )
    threading.Timer(args.max_lifetime, server.shutdown).start()
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    os._exit(0)  # the lifetime timer thread may still be waiting


def rss_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- clients
def post(port: int, path: str, body: bytes, headers: dict | None = None) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def raw(port: int, payload: bytes, *, shut_write: bool = True) -> int:
    with socket.create_connection((HOST, port), timeout=60) as s:
        s.sendall(payload)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        data = s.recv(64)
    return int(data.split()[1]) if data.startswith(b"HTTP/1.") else -1


def malformed_requests(silent_wav: bytes) -> list[tuple[str, int, object]]:
    """``(name, expected status, fn(port) -> status)`` for each hostile request."""
    return [
        ("garbage bytes", 422, lambda p: post(p, "/api/paint", b"not audio at all " * 100)),
        (
            "over-size Content-Length",
            413,
            lambda p: raw(
                p,
                b"POST /api/paint HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n",
                shut_write=False,
            ),
        ),
        ("junk request line", 400, lambda p: raw(p, b"\x16\x03\x01\x00\xffjunk\r\n\r\n")),
        (
            "stalled body",  # answered after the server's 2 s request_timeout
            400,
            lambda p: raw(
                p,
                b"POST /api/paint HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nRIFF....",
                shut_write=False,
            ),
        ),
        ("silence", 422, lambda p: post(p, "/api/paint", silent_wav)),
        ("bad query", 400, lambda p: post(p, "/api/paint?n=abc", silent_wav)),
        (
            "no Content-Length",
            411,
            lambda p: raw(p, b"POST /api/paint HTTP/1.1\r\nHost: x\r\n\r\n", shut_write=False),
        ),
    ]


def run_mode(args: argparse.Namespace, mode: str, threads: int, wav: bytes, silent: bytes) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--threads",
        str(threads),
        "--max-lifetime",
        str(args.max_lifetime),
    ]
    cmd += ["--run", args.run] if args.run else ["--random-weights", args.random_weights or ""]
    cmd += ["--serialize"] if mode == "lock" else ["--workers", str(args.workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("LISTENING"):
            raise RuntimeError(f"server did not start: {line!r}")
        port = int(line.split()[1])
        for i in range(3):  # warm-up
            post(port, f"/api/paint?seed={i}", wav)
        rss_warm = rss_kb(proc.pid)["VmRSS"]
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                samples.append(rss_kb(proc.pid)["VmRSS"])

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        bad = malformed_requests(silent)
        lock = threading.Lock()
        latencies: list[float] = []
        problems: list[str] = []
        counts = {"ok": 0, "malformed_ok": 0}

        def client(c: int) -> None:
            for j in range(args.requests):
                try:
                    t0 = time.perf_counter()
                    status = post(port, f"/api/paint?n=4&k=8&seed={c * 1000 + j}", wav)
                    ms = (time.perf_counter() - t0) * 1000
                    with lock:
                        if status == 200:
                            counts["ok"] += 1
                            latencies.append(ms)
                        else:
                            problems.append(f"paint -> {status}")
                    if j % 5 == 2:
                        name, want, fn = bad[(c + j) % len(bad)]
                        got = fn(port)
                        with lock:
                            if got == want:
                                counts["malformed_ok"] += 1
                            else:
                                problems.append(f"{name}: {got}, expected {want}")
                except Exception as exc:  # a client-side failure is an error too
                    with lock:
                        problems.append(f"client {c}: {type(exc).__name__}: {exc}")

        t0, cpu0, load0 = time.perf_counter(), cpu_seconds(proc.pid), os.getloadavg()[0]
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(client, range(args.clients)))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
        done.set()
        sampler.join()
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        conn.request("GET", "/health")
        health = json.loads(conn.getresponse().read())
        conn.close()
        mem = rss_kb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    half = len(samples) // 2
    return {
        "mode": mode,
        "server": "fastapi+uvicorn",
        "model_workers": 1 if mode == "lock" else args.workers,
        "torch_threads": threads,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "paint_ok": counts["ok"],
        "malformed_sent_ok": counts["malformed_ok"],
        "errors": len(problems),
        "error_examples": problems[:10],
        "server_5xx": health["errors"],
        "server_responses": health["served"],
        "latency_ms": percentiles(latencies) if latencies else {},
        "throughput_rps": counts["ok"] / wall,
        "server_cpu_ms_per_request": 1000 * cpu / max(1, counts["ok"] + counts["malformed_ok"]),
        "load_average_1min": {"before": load0, "after": os.getloadavg()[0]},
        "wall_s": wall,
        "rss_mb": {
            "after_warmup": rss_warm / 1024,
            "end": mem["VmRSS"] / 1024,
            "peak_hwm": mem["VmHWM"] / 1024,
            "first_half_max": max(samples[:half] or [0]) / 1024,
            "second_half_max": max(samples[half:] or [0]) / 1024,
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_source_args(p)
    cores = len(os.sched_getaffinity(0))
    p.add_argument(
        "--modes",
        default=f"lock:{cores},concurrent:1,concurrent:{cores}",
        help="comma list of lock:THREADS | concurrent:THREADS",
    )
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--workers", type=int, default=4, help="model threads in concurrent mode")
    p.add_argument("--requests", type=int, default=25, help="paint requests per client")
    p.add_argument("--seconds", type=float, default=3.0, help="length of the test voice")
    p.add_argument("--max-lifetime", type=float, default=900.0, help="server exits after (s)")
    p.add_argument("--out", default=str(RESULTS / "load.json"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serialize", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=cores, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.child:
        logging.getLogger().setLevel(logging.WARNING)  # no per-request lines from the server
        return child(args)

    wav, silent = voice_wav(args.seconds), _silent_wav()
    rows = []
    for spec in args.modes.split(","):
        mode, threads = spec.split(":")
        log.info(
            "mode %s, %s torch threads: %d clients x %d requests",
            mode,
            threads,
            args.clients,
            args.requests,
        )
        rows.append(run_mode(args, mode, int(threads), wav, silent))
    print(
        f"\n{'mode':<14}{'ok':>5}{'bad ok':>7}{'errors':>7}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'req/s':>7}{'CPU ms/req':>11}{'RSS MB warm/end/peak':>24}"
    )
    for r in rows:
        lat, m = r["latency_ms"], r["rss_mb"]
        print(
            f"{r['mode'] + ':' + str(r['torch_threads']):<14}{r['paint_ok']:>5}"
            f"{r['malformed_sent_ok']:>7}{r['errors']:>7}{lat.get('p50', float('nan')):>9.1f}"
            f"{lat.get('p95', float('nan')):>9.1f}{r['throughput_rps']:>7.1f}"
            f"{r['server_cpu_ms_per_request']:>11.1f}"
            f"{m['after_warmup']:>10.0f}/{m['end']:.0f}/{m['peak_hwm']:.0f}"
        )
    for r in rows:
        for e in r["error_examples"]:
            print(f"  error [{r['mode']}:{r['torch_threads']}]: {e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    source = args.run or f"random weights ({args.random_weights or 'default config'})"
    out.write_text(
        json.dumps(
            {
                "source": source,
                "random_weights": args.run is None,
                "cpu_cores": cores,
                "audio_seconds": args.seconds,
                "modes": rows,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {out}")
    return 0 if all(r["errors"] == 0 for r in rows) else 1


def _silent_wav(seconds: float = 2.0, sr: int = 16000) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * sr), np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


if __name__ == "__main__":
    sys.exit(main())
