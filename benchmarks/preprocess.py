"""Audio preprocessing speed: the project's cached front end against a naive librosa loop.

    python benchmarks/preprocess.py                          # all 6,016 clips of ../shared/data/audio
    python benchmarks/preprocess.py --limit 600 --naive-limit 200   # a quick run

In one run, on the same files:

(a) **cold**: ``build_mel_cache`` into a fresh, empty temporary cache (hash, decode, resample,
    trim, RMS-normalise, pad/crop, batched torch log-Mel, write), ``--workers`` processes;
(b) **naive**: one process, per file ``librosa.load(sr=16000)`` + ``librosa.effects.trim`` +
    ``librosa.feature.melspectrogram`` with the same STFT/Mel settings.  With
    ``--naive-limit`` it runs on an evenly spread subset and its clips/s is extrapolated to
    the whole pool (the table says so);
(c) **warm**: ``build_mel_cache`` again (all hits: hashing only) + ``MelBatch.load``.

Imports and librosa's first-call set-up are done before any clock starts, for both sides.
It also checks that the cached Mels equal the single-file serve-time path
(``load_audio`` + ``preprocess_waveform`` + ``LogMel``) on a few clips.  Prints a table and
writes ``benchmarks/results/preprocess.json``.  Goals: cold >= 10x naive and >= 200 clips/s
on 2 cores; warm < 2 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sound2sight.cache import build_mel_cache, config_hash
from sound2sight.config import AudioConfig
from sound2sight.datasets.audio import load_audio_corpus
from sound2sight.voice.audio import LogMel, load_audio, preprocess_waveform

log = logging.getLogger("benchmarks.preprocess")

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "audio"


def naive_one(path: str, cfg: AudioConfig):
    """The per-file librosa baseline: load at 16 kHz, trim, Mel spectrogram."""
    import librosa

    y, sr = librosa.load(path, sr=cfg.sample_rate)
    y, _ = librosa.effects.trim(y, top_db=cfg.top_db)
    return librosa.feature.melspectrogram(
        y=y,
        sr=sr,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
    )  # (n_mels, frames)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children."""
    return sum(
        r.ru_utime + r.ru_stime
        for r in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )


def time_naive(paths: list[str], cfg: AudioConfig) -> dict:
    naive_one(paths[0], cfg)  # librosa's lazy imports and first-call set-up, untimed
    failed = 0
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    for p in paths:
        try:
            naive_one(p, cfg)
        except Exception:  # noqa: BLE001 - a baseline that fails on a file just moves on
            failed += 1
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return {
        "clips": len(paths),
        "seconds": seconds,
        "clips_per_s": len(paths) / seconds,
        "cpu_ms_per_clip": 1e3 * cpu / len(paths),
        "failed": failed,
    }


def serve_path_diff(paths: list[str], keys: list, cache, cfg: AudioConfig) -> float:
    """Largest |cached Mel - single-file serve-time Mel| over a few clips."""
    lm, worst = LogMel(cfg), 0.0
    for path, key in zip(paths, keys, strict=True):
        if key is None:
            continue
        wave = preprocess_waveform(load_audio(path, sample_rate=cfg.sample_rate), cfg, name=path)
        with torch.inference_mode():
            mel = lm(torch.from_numpy(wave)[None])[0].numpy()  # (n_mels, frames)
        worst = max(worst, float(np.abs(mel - cache.get(key)).max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(DEFAULT_ROOT), help="speech corpus folder")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N clips (0 = all)")
    ap.add_argument(
        "--naive-limit",
        type=int,
        default=0,
        help="time the naive baseline on N evenly spread clips and extrapolate (0 = all)",
    )
    ap.add_argument("--workers", type=int, default=0, help="worker processes (0 = one per core)")
    ap.add_argument("--out", default=str(RESULTS / "preprocess.json"))
    ap.add_argument(
        "--keep-cache",
        metavar="DIR",
        help="build the cold cache in DIR (must be empty or absent) and keep it",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    cfg = AudioConfig()
    paths = [it.path for it in load_audio_corpus(args.root).items]
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        raise SystemExit(f"{args.root}: no audio found")
    n = len(paths)
    n_naive = min(args.naive_limit or n, n)
    naive_paths = [paths[i] for i in np.linspace(0, n - 1, n_naive).round().astype(int)]
    load_start = os.getloadavg()
    workers = args.workers or os.cpu_count() or 1

    naive = time_naive(naive_paths, cfg)

    if args.keep_cache:
        cache_dir = args.keep_cache
        if Path(cache_dir).exists() and any(Path(cache_dir).iterdir()):
            raise SystemExit(f"{cache_dir}: not empty; a cold run needs an empty cache")
    else:
        cache_dir = tempfile.mkdtemp(prefix="s2s-bench-cache-")
    try:
        cpu0 = cpu_seconds()
        cold_batch, cache = build_mel_cache(paths, cfg, cache_dir, workers=workers, progress=False)
        cold_cpu = cpu_seconds() - cpu0
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        warm_batch, cache = build_mel_cache(paths, cfg, cache_dir, workers=workers, progress=False)
        mels = warm_batch.load(cache)
        warm_s, warm_cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        check = list(range(0, n, max(1, n // 8)))[:8]
        diff = serve_path_diff(
            [paths[i] for i in check], [cold_batch.keys[i] for i in check], cache, cfg
        )
    finally:
        if not args.keep_cache:
            shutil.rmtree(cache_dir, ignore_errors=True)

    naive_rate = naive["clips_per_s"]
    cold_rate, warm_rate = n / cold_batch.seconds, n / warm_s
    extrapolated = n_naive < n
    naive_name = "naive librosa, 1 process" + (
        f" (on {n_naive}, extrapolated)" if extrapolated else ""
    )
    rows = [  # name, seconds, clips/s, CPU ms per clip
        (naive_name, n / naive_rate, naive_rate, naive["cpu_ms_per_clip"]),
        (f"cold cache build, {workers} workers", cold_batch.seconds, cold_rate, 1e3 * cold_cpu / n),
        ("warm: hash + hits + MelBatch.load", warm_s, warm_rate, 1e3 * warm_cpu / n),
    ]
    print(
        f"\n{n} clips from {args.root}  ({os.cpu_count()} cores, load average "
        f"{load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end)"
    )
    head = ("", "seconds", "clips/s", "vs naive", "CPU ms/clip")
    print(f"{head[0]:50s} {head[1]:>8s} {head[2]:>9s} {head[3]:>9s} {head[4]:>12s}")
    for name, secs, rate, cpu_ms in rows:
        print(f"{name:50s} {secs:8.2f} {rate:9.1f} {rate / naive_rate:8.1f}x {cpu_ms:12.2f}")
    print(
        f"cold: {cold_batch.misses} computed, {len(cold_batch.failures)} failed"
        + "".join(f"\n  failed: {r}" for _, r in cold_batch.failures[:5])
    )
    print(
        f"warm: {warm_batch.hits} hits, {warm_batch.misses} misses, Mels {tuple(mels.shape)}; "
        f"cache == serve path: max |diff| {diff:.2e}"
    )

    result = {
        "clips": n,
        "root": args.root,
        "config_hash": config_hash(cfg),
        "audio_config": vars(cfg),
        "workers": workers,
        "naive": {
            **naive,
            "extrapolated": extrapolated,
            "seconds_for_all_extrapolated": n / naive_rate,
        },
        "cold": {
            "seconds": cold_batch.seconds,
            "clips_per_s": cold_rate,
            "computed": cold_batch.misses,
            "failures": cold_batch.failures,
            "speedup_vs_naive": cold_rate / naive_rate,
            "cpu_ms_per_clip": 1e3 * cold_cpu / n,
        },
        "warm": {
            "seconds": warm_s,
            "hits": warm_batch.hits,
            "misses": warm_batch.misses,
            "mels_shape": list(mels.shape),
            "cpu_ms_per_clip": 1e3 * warm_cpu / n,
        },
        "serve_path_max_abs_diff": diff,
        "goals": {
            "cold_10x_naive": cold_rate >= 10 * naive_rate,
            "cold_200_clips_s": cold_rate >= 200,
            "warm_under_2s": warm_s < 2.0,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
