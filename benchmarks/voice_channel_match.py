"""Is the shipped voice model's angry bias on studio speech a cue of CREMA-D's channel that
the never-seen corpora lack: its MP3 codec, or its noise floor?

    python benchmarks/voice_channel_match.py --data ../shared/data/audio

The shipped heads learnt from CREMA-D's 64 kbps, 16 kHz MP3 release only; RAVDESS, TESS and
SAVEE are lossless studio recordings, and the heads read their clean speech as angry.  If a
property of CREMA-D's channel were the cue, giving the never-seen clips that property before
the encoder would move them towards CREMA-D.  Every clip of the speakers neither head saw is
read one recording at a time, as the pipeline does (the speaker head: each clip standardised
by ``speaker.calibrate`` of itself alone):

- as recorded;
- through the same codec: a 64 kbps constant-bit-rate MP3 (libsndfile's LAME encoder via
  ``soundfile``, at 16 kHz, written under ``--work``) read back; both shipped heads;
- with white noise ``N`` dB under the clip's RMS (``--noise-db``, the ``noise<N>`` view of
  :func:`sound2sight.voice.cache.alter_voice`, seeded per clip); the speaker head;
- with its floor raised by white noise to the median floor of the speaker head's training
  actors (:func:`raise_floor`; a clip already above it is left alone); the speaker head.

Also measures each corpus's floor: the 2nd percentile of a clip's 32 ms frame RMS, in dB
under the clip's RMS (median over up to 300 clips per corpus, CREMA-D's from every actor).

Prints tables and writes ``benchmarks/results/voice_channel_match.json``.  About 7 minutes on
2 cores (the altered clips' Whisper features are cached like any clip's).
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

from sound2sight.voice.cache import clip_floor_db, raise_floor

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


def corpus_floors(items, load_audio, error, per_corpus: int = 300) -> dict:
    """Median :func:`clip_floor_db` per corpus over up to ``per_corpus`` random clips."""
    rng = np.random.default_rng(0)
    by: dict[str, list] = {}
    for it in items:
        by.setdefault(it.corpus, []).append(it)
    out = {}
    for corpus in CORPORA:
        its = by.get(corpus, [])
        floors = []
        for i in rng.permutation(len(its))[:per_corpus]:
            try:
                f = clip_floor_db(load_audio(its[i].path, sample_rate=SR))
            except error:
                continue
            if f is not None:
                floors.append(f)
        if floors:
            out[corpus] = round(float(np.median(floors)), 1)
    return out


def written(items, data: Path, folder: Path, alter, load_audio, error):
    """``items`` with each clip replaced by ``alter(wave)`` written as a WAV under ``folder``."""
    import soundfile as sf

    out = []
    for it in tqdm(items, desc=folder.name, unit="clip"):
        dest = folder / Path(it.path).resolve().relative_to(data.resolve()).with_suffix(".wav")
        try:
            wave = load_audio(it.path, sample_rate=SR)
        except error:
            continue  # the silent CREMA-D clip: skipped by the features too
        dest.parent.mkdir(parents=True, exist_ok=True)
        sf.write(dest, alter(wave), SR, subtype="FLOAT")
        out.append(dataclasses.replace(it, path=str(dest)))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with RAVDESS/ TESS/ ...")
    ap.add_argument("--work", type=Path, default=Path("/tmp/sound2sight-voice-channel-match"))
    ap.add_argument("--noise-db", default="40,30,20", help="white-noise arms, dB under the voice")
    ap.add_argument(
        "--out", type=Path, default=REPO / "benchmarks/results/voice_channel_match.json"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
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
    labelled = [it for it in load_audio_corpus(args.data).items if it.label]
    items = [it for it in labelled if it.speaker not in seen and it.corpus in CORPORA]
    kbps = []

    def mp3(wave: np.ndarray) -> np.ndarray:
        back, size = mp3_round_trip(wave)
        kbps.append(size * 8 / (len(wave) / SR) / 1000)
        return back

    trips = written(items, args.data, args.work / "mp3", mp3, load_audio, AudioError)
    floors = corpus_floors(labelled, load_audio, AudioError)
    train = set(shipped[MODELS[0]][2]["data"]["speakers"]["train"])
    target = corpus_floors([it for it in labelled if it.speaker in train], load_audio, AudioError)
    target_db = target["CREMA-D"]
    print("floor (2nd percentile of 32 ms frame RMS, dB under the clip's RMS; median): "
          + ", ".join(f"{c} {v:.1f}" for c, v in floors.items())
          + f"; the speaker head's training actors {target_db:.1f}")  # fmt: skip
    raised = written(
        items, args.data, args.work / "floor", lambda w: raise_floor(w, target_db), load_audio,
        AudioError,
    )  # fmt: skip
    result: dict = {
        "clips": len(trips),
        "mp3_kbps_median": round(float(np.median(kbps)), 1),
        "floor_db_median": floors,
        "floor_db_target_training_actors": target_db,
        "arms": {},
    }
    print(f"{len(trips)} clips of unseen speakers, MP3 at {np.median(kbps):.0f} kbps (median)")
    print(f"{'model, input':44s}" + "".join(f"{c:>28s}" for c in CORPORA))
    noise = [f"noise{float(d):g}" for d in args.noise_db.split(",") if d]
    for name, (head, cfg, _) in shipped.items():
        versions = [("as recorded", items, ""), ("MP3 round trip", trips, "")]
        if name == MODELS[0]:
            versions += [(f"white noise {v[5:]} dB under", items, v) for v in noise]
            versions.append(("floor raised to CREMA-D's", raised, ""))
        for version, its, view in versions:
            ok, x = load_voice_features(its, cfg, progress=False, view=view)
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
