"""Is the shipped voice model's angry bias on studio speech CREMA-D's MP3 codec?

    python benchmarks/voice_codec.py --data ../shared/data/audio

The shipped heads learnt from CREMA-D's 64 kbps, 16 kHz MP3 release only; RAVDESS, TESS and
SAVEE are lossless, and the heads read their clean studio speech as angry.  If the codec were
the cue, passing the never-seen clips through the same codec before the encoder would move
them towards CREMA-D and fix much of it.  This benchmark re-encodes every clip of the
speakers neither head saw as a 64 kbps constant-bit-rate MP3 (libsndfile's LAME encoder via
``soundfile``, at 16 kHz, written under ``--work``), reads the round trip back, and scores
both shipped heads on both versions one recording at a time, as the pipeline does (the
speaker head: each clip standardised by ``speaker.calibrate`` of itself alone).

Prints a table (accuracy and angry / happy / sad recall per corpus) and writes
``benchmarks/results/voice_codec.json``.  About 4 minutes on 2 cores (the round trips'
Whisper features are cached like any clip's).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
CORPORA = ("CREMA-D", "RAVDESS", "TESS", "SAVEE")
MODELS = ("voice-cremad-tiny-speaker", "voice-cremad-tiny")
SR = 16000
LEVEL = 0.6  # soundfile's compression level that gives ~64 kbps CBR at 16 kHz (66 measured)


def mp3_round_trip(wave: np.ndarray) -> tuple[np.ndarray, int]:
    """``wave`` (16 kHz) encoded as MP3 and decoded again, same length; and the MP3's bytes."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, SR, format="MP3", subtype="MPEG_LAYER_III", compression_level=LEVEL,
             bitrate_mode="CONSTANT")  # fmt: skip
    size = buf.tell()
    buf.seek(0)
    back, _ = sf.read(buf, dtype="float32")
    back = back[: len(wave)] if len(back) >= len(wave) else np.pad(back, (0, len(wave) - len(back)))
    return back.astype(np.float32), size


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with RAVDESS/ TESS/ ...")
    ap.add_argument("--work", type=Path, default=Path("/tmp/sound2sight-voice-codec"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/voice_codec.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import soundfile as sf

    from sound2sight.datasets import load_audio_corpus
    from sound2sight.io import atomic_write_json
    from sound2sight.labels import EMOTIONS
    from sound2sight.voice.audio import AudioError, load_audio
    from sound2sight.voice.cache import load_voice_features
    from sound2sight.voice.pretrained import load_shipped
    from sound2sight.voice.speaker import standardise_alone
    from sound2sight.voice.train import predict

    t0 = time.perf_counter()
    shipped = {m: load_shipped(m) for m in MODELS}
    seen = set()
    for _, _, card in shipped.values():
        seen |= set(card["data"]["speakers"]["train"]) | set(card["data"]["speakers"]["val"])
    items = [
        it
        for it in load_audio_corpus(args.data).items
        if it.label and it.speaker not in seen and it.corpus in CORPORA
    ]
    trips, kbps = [], []
    for it in tqdm(items, desc="MP3 round trips", unit="clip"):
        rel = Path(it.path).resolve().relative_to(args.data.resolve())
        dest = args.work / rel.with_suffix(".wav")
        try:
            wave = load_audio(it.path, sample_rate=SR)
        except AudioError:
            continue  # the silent CREMA-D clip: skipped by the features too
        back, size = mp3_round_trip(wave)
        kbps.append(size * 8 / (len(wave) / SR) / 1000)
        dest.parent.mkdir(parents=True, exist_ok=True)
        sf.write(dest, back, SR, subtype="FLOAT")
        trips.append(dataclasses.replace(it, path=str(dest)))
    result: dict = {
        "clips": len(trips),
        "mp3_kbps_median": round(float(np.median(kbps)), 1),
        "arms": {},
    }
    print(f"{len(trips)} clips of unseen speakers, MP3 at {np.median(kbps):.0f} kbps (median)")
    print(f"{'model, input':44s}" + "".join(f"{c:>28s}" for c in CORPORA))
    for name, (head, cfg, _) in shipped.items():
        for version, its in (("as recorded", items), ("MP3 round trip", trips)):
            ok, x = load_voice_features(its, cfg, progress=False)
            if cfg.classifier.speaker_norm:  # one recording, as the pipeline reads it
                x = standardise_alone(x, head.population_stats(), head.shrink_prior())
            y = np.array([EMOTIONS.index(it.label) for it in ok])
            corpus = np.array([it.corpus for it in ok])
            p = predict(head, x)[0].argmax(1)
            row = {}
            for c in CORPORA:
                m = corpus == c
                row[c] = {
                    "clips": int(m.sum()),
                    "accuracy": round(float((p[m] == y[m]).mean()), 4),
                    "recall": [round(float((p[m & (y == k)] == k).mean()), 3) for k in range(3)],
                }
            result["arms"][f"{name}, {version}"] = row
            cells = [
                f"{r['accuracy']:.3f} ({' / '.join(f'{v:.2f}' for v in r['recall'])})"
                for r in row.values()
            ]
            print(f"{name + ', ' + version:44s}" + "".join(f"{c:>28s}" for c in cells))
    result["seconds"] = round(time.perf_counter() - t0)
    atomic_write_json(args.out, result)
    print(f"wrote {args.out} ({result['seconds']} s)")
    return result


if __name__ == "__main__":
    main()
