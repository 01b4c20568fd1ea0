"""Whisper encoder throughput on this CPU: 3 s clips, batched, float32 vs dynamic int8.

Times the front end + encoder (every layer's states) on ``--batch`` clips of 3 s after a
warm-up, median of ``--repeats``; for int8, PyTorch's dynamic quantisation of the linear
layers, and how far its last hidden state moves from float32 (mean absolute difference
relative to the mean absolute value).  Goal (issue 11): >= 30 clips/s.

Usage::

    python benchmarks/whisper_speed.py --encoders tiny.en,base

Prints a table and writes ``benchmarks/results/whisper_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from sound2sight.io import atomic_write_text
from sound2sight.voice.whisper import load_whisper

REPO = Path(__file__).resolve().parents[1]


def clips_per_s(fn, x: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        fn(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
    return len(x) / float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", default="tiny.en,base")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "whisper_speed.json"
    )
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 48000) * 0.1
    rows, lines = (
        {},
        [f"{'encoder':8s} {'fp32 clips/s':>13s} {'int8 clips/s':>13s} {'int8 rel. error':>16s}"],
    )
    for name in args.encoders.split(","):
        enc, fe, _ = load_whisper(name)
        fp32 = clips_per_s(lambda b, enc=enc, fe=fe: enc(fe(b)), x, args.repeats)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = torch.ao.quantization.quantize_dynamic(enc, {torch.nn.Linear}, dtype=torch.qint8)
        int8 = clips_per_s(lambda b, q=q, fe=fe: q(fe(b)), x, args.repeats)
        with torch.inference_mode():
            a, b = enc(fe(x))[-1], q(fe(x))[-1]
        err = float((a - b).abs().mean() / a.abs().mean())
        rows[name] = {"fp32_clips_per_s": fp32, "int8_clips_per_s": int8, "int8_rel_error": err}
        lines.append(f"{name:8s} {fp32:13.1f} {int8:13.1f} {err:16.3f}")
        print(lines[-1], flush=True)
    payload = {
        "batch": args.batch,
        "clip_seconds": 3.0,
        "threads": torch.get_num_threads(),
        "load_1min": os.getloadavg()[0],
        "rows": rows,
        "table": "\n".join(lines),
    }
    atomic_write_text(args.out, json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
