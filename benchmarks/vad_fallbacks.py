"""Second chances for clips the speech check refuses: which rescue real speech, and which
also let music and noise through.

    python benchmarks/vad_fallbacks.py --data ../shared/data/audio

Reads the clips an earlier speech check refused from ``benchmarks/results/speech_refusals.json``
(the arm named by ``--arm``, default ``d0796f0``: the tone-guard fix, before any second
hearing; ``67de262``: after the quiet-voice one) and a set of non-speech signals (the zoo of
``tests/test_vad.py`` and quieter / noisier / melodic variants), and gives each a second chance:

- ``shipped``: the checked-out ``vad.extract_speech`` (its second hearings in order: raised
  towards RMS 0.05 if quiet, a telephone band's 3.4 kHz low-pass, 20 and 30 dB quieter,
  slowed to 2/3 and 4/5 of its speed, pitch lowered);
- each of those hearings alone (``raised`` only for clips under RMS 0.05);
- ``threshold 0.2`` / ``threshold 0.15``: silero's regions at a lower threshold (its end
  threshold 0.15 lower, floored at 0.01);
- ``threshold 0.15, end 0.1``: the same with speech ending below 0.1.

A second chance accepts a clip when it finds at least 0.5 s of speech.  Also prints silero's
frame probabilities of the refused speech (quantiles per clip).  Writes
``benchmarks/results/vad_fallbacks.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SR = 16000


def non_speech() -> dict[str, np.ndarray]:
    sys.path.insert(0, str(REPO / "tests"))
    from test_vad import BAD_INPUTS, chords

    rng = np.random.default_rng(1)
    out = {k: f(np.random.default_rng(0)).astype(np.float32) for k, f in BAD_INPUTS.items()}
    for level in (0.2, 1.0, 5.0):
        out[f"chords x{level}"] = (level * chords(4)).astype(np.float32)
        out[f"chords x{level} + noise 0.01"] = (
            level * chords(4) + 0.01 * rng.normal(size=4 * SR)
        ).astype(np.float32)

    def note(f, n, harm=6, decay=3.0, vib=False):
        t = np.arange(n) / SR
        phase = 2 * np.pi * f * t + (0.3 * np.sin(2 * np.pi * 5.5 * t) if vib else 0.0)
        return sum(np.sin(h * phase) / h for h in range(1, harm + 1)) * np.exp(-decay * t)

    scale = [262, 294, 330, 349, 392, 440, 494, 523]
    out["arpeggio"] = 0.1 * np.concatenate([note(f, SR // 4) for f in scale * 2])
    out["flute melody"] = 0.1 * np.concatenate(
        [note(f, SR // 2, harm=2, decay=0.5, vib=True) for f in scale]
    )
    out["bowed melody"] = 0.1 * np.concatenate(
        [note(f / 2, SR // 2, harm=12, decay=0.3, vib=True) for f in scale]
    )
    out["organ chord"] = 0.05 * sum(note(f, 3 * SR, harm=8, decay=0.0) for f in (262, 330, 392))
    t = np.arange(3 * SR) / SR
    out["siren"] = 0.3 * np.sin(2 * np.pi * (700 * t + 300 * np.sin(2 * np.pi * 0.5 * t)))
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with RAVDESS/ TESS/ ...")
    ap.add_argument("--arm", default="d0796f0", help="arm of speech_refusals.json to read")
    ap.add_argument(
        "--refusals", type=Path, default=REPO / "benchmarks/results/speech_refusals.json"
    )
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/vad_fallbacks.json")
    args = ap.parse_args(argv)
    import torch
    from silero_vad import get_speech_timestamps_from_probs

    from sound2sight.io import atomic_write_json
    from sound2sight.voice import vad
    from sound2sight.voice.audio import AudioError, load_audio

    torch.set_num_threads(1)
    refused = json.loads(args.refusals.read_text())["refused"][args.arm]["as recorded"]
    clips = [r["clip"] for r in refused]

    def seconds(wave: np.ndarray, threshold: float, end: float | None = None) -> float:
        probs = vad._probabilities(wave - wave.mean(), SR)
        found = get_speech_timestamps_from_probs(
            probs.tolist(),
            sampling_rate=SR,
            threshold=threshold,
            neg_threshold=end,
            min_speech_duration_ms=250,
            min_silence_duration_ms=100,
            speech_pad_ms=0,
            audio_length_samples=len(wave),
        )
        return sum(s["end"] - s["start"] for s in found) / SR

    def shipped(wave: np.ndarray, name: str) -> float:
        try:
            return len(vad.extract_speech(wave, name=name, threshold=0.3)) / SR
        except AudioError:
            return 0.0

    def hearing(how: str):
        def fn(wave: np.ndarray, name: str) -> float:
            found = next(((w, k) for h, w, k in vad._second_hearings(wave) if h == how), None)
            return 0.0 if found is None else vad.speech_seconds(found[0], threshold=0.3) / found[1]

        return fn

    rules = {
        "shipped": shipped,
        **{how: hearing(how) for how, _, _ in vad._second_hearings(np.full(SR, 1e-3, np.float32))},
        "threshold 0.2": lambda w, n: seconds(w, 0.2),
        "threshold 0.15": lambda w, n: seconds(w, 0.15),
        "threshold 0.15, end 0.1": lambda w, n: seconds(w, 0.15, 0.1),
    }
    speech = {r: [] for r in rules}
    quantiles = []
    for clip in clips:
        wave = load_audio(args.data / clip, sample_rate=SR)
        for r, fn in rules.items():
            speech[r].append(fn(wave, clip))
        p = vad._probabilities(wave - wave.mean(), SR)
        quantiles.append(np.quantile(p, [0.5, 0.75, 0.9]).tolist())
    noise = {r: {} for r in rules}
    for name, wave in non_speech().items():
        for r, fn in rules.items():
            noise[r][name] = fn(wave, name)
    result = {"arm": args.arm, "refused_speech": len(clips), "rules": {}}
    print(f"{len(clips)} refused speech clips ({args.arm}); a rule accepts >= 0.5 s of speech")
    print(f"{'rule':26s}{'speech rescued':>16s}  non-speech accepted (s of 'speech')")
    for r in rules:
        rescued = int(sum(s >= 0.5 for s in speech[r]))
        accepted = {k: round(v, 2) for k, v in noise[r].items() if v >= 0.5}
        result["rules"][r] = {
            "speech_rescued": rescued,
            "non_speech_accepted": accepted,
            "non_speech_seconds": {k: round(v, 2) for k, v in noise[r].items()},
        }
        print(f"{r:26s}{rescued:>16d}  {accepted or 'none'}")
    q = np.median(np.array(quantiles), axis=0)
    result["refused_speech_probability_quantiles_median_clip"] = {
        "p50": float(q[0]),
        "p75": float(q[1]),
        "p90": float(q[2]),
    }
    print(
        f"silero's frame probabilities in the median refused clip: median {q[0]:.3f}, "
        f"75th percentile {q[1]:.3f}, 90th {q[2]:.3f}"
    )
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
