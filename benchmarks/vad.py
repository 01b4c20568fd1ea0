"""CPU cost of the silero speech check (sound2sight.voice.vad) on 3 s and 60 s clips.

    python benchmarks/vad.py                 # procedural voice, 9 calls per length
    python benchmarks/vad.py --clip a.mp3    # tile a real recording instead

Reports the median wall time of ``speech_segments`` (our batched forward + silero's
segmentation) and, for reference, of silero's own ``get_speech_timestamps`` (one model call
per 32 ms chunk), both on one intra-op thread, plus the first call's model-load time.
Writes ``benchmarks/results/vad.json``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from pathlib import Path

import numpy as np
import torch

from sound2sight.io import atomic_write_json
from sound2sight.synthetic import synth_voice
from sound2sight.voice import vad
from sound2sight.voice.audio import load_audio

log = logging.getLogger("benchmarks.vad")


def median_ms(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, help="real recording to tile (default: synthetic)")
    parser.add_argument("--calls", type=int, default=9)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/vad.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    source = load_audio(args.clip) if args.clip else synth_voice("happy", speaker=1, seed=0)
    start = time.perf_counter()
    vad.speech_segments(source[: vad.SAMPLE_RATE])
    load_ms = 1000 * (time.perf_counter() - start)

    with vad._one_thread():  # silero's import sets one thread for the process
        from silero_vad import get_speech_timestamps
    jit = torch.jit.load(str(vad._package_file("silero_vad.jit")), map_location="cpu")
    rows = []
    for seconds in (3, 60):
        wave = np.resize(source, seconds * vad.SAMPLE_RATE).astype(np.float32)
        ours = median_ms(lambda w=wave: vad.speech_segments(w), args.calls)
        with vad._one_thread():
            ref = median_ms(
                lambda w=wave: get_speech_timestamps(torch.from_numpy(w), jit),
                max(3, args.calls // 3),
            )
        rows.append({"seconds": seconds, "speech_segments_ms": ours, "silero_loop_ms": ref})
        log.info("%3d s clip: speech_segments %.1f ms, silero loop %.1f ms", seconds, ours, ref)
    log.info("first call (loads the model): %.0f ms", load_ms)
    result = {
        "clip": str(args.clip or "synth_voice('happy', speaker=1, seed=0), tiled"),
        "calls": args.calls,
        "threads": 1,
        "cpu": platform.processor() or platform.machine(),
        "first_call_ms": load_ms,
        "rows": rows,
    }
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
