"""The noise floors of prepared clips, and how many of them the shipped head's listening view
changes.

    python benchmarks/voice_floors.py --data ../shared/data/audio

A clip's floor (:func:`sound2sight.voice.cache.clip_floor_db`): the 2nd percentile of its
32 ms frame RMS, in dB under its RMS, measured on the clip as the encoder gets it (trimmed,
RMS-normalised, centre-cropped: :func:`~sound2sight.voice.cache.prepare_voice`).  Printed per
group (the shipped speaker head's CREMA-D training actors, its held-out actors, and the
never-seen corpora), up to ``--per-group`` random clips each: the 2nd, 5th, 10th, 25th, 50th
and 75th percentiles, and the share of clips under ``floor<dB>``'s target (those the view
adds noise to; the others it leaves alone).

``classifier.listen=floor25`` was set from the 10th percentile of the training actors'
floors: no recording is read with a cleaner floor than nine in ten of the training clips had.
Writes ``benchmarks/results/voice_floors.json``; seconds to a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "voice_floors.json"
PERCENTILES = (2, 5, 10, 25, 50, 75)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "audio")
    ap.add_argument("--model", default="voice-cremad-tiny-speaker")
    ap.add_argument("--per-group", type=int, default=600)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    from sound2sight.datasets import load_audio_corpus
    from sound2sight.io import atomic_write_json
    from sound2sight.voice.audio import AudioError, load_audio
    from sound2sight.voice.cache import clip_floor_db, listening_view, prepare_voice
    from sound2sight.voice.pretrained import load_shipped

    t0 = time.perf_counter()
    _, cfg, card = load_shipped(args.model)
    view = listening_view(cfg)
    target = -float(view[len("floor") :]) if view.startswith("floor") else None
    train, test = (set(card["data"]["speakers"][s]) for s in ("train", "test"))
    groups: dict[str, list] = {}
    for it in load_audio_corpus(args.data).items:
        if not it.label:
            continue
        if it.corpus == "CREMA-D":
            name = "CREMA-D training actors" if it.speaker in train else None
            name = "CREMA-D held-out actors" if it.speaker in test else name
        else:
            name = f"{it.corpus} (never seen)"
        if name:
            groups.setdefault(name, []).append(it)
    rng = np.random.default_rng(0)
    rows = {}
    for name, items in groups.items():
        floors = []
        for i in rng.permutation(len(items))[: args.per_group]:
            try:
                wave = prepare_voice(load_audio(items[i].path, sample_rate=16000), cfg)
            except AudioError:
                continue
            f = clip_floor_db(wave)
            if f is not None:
                floors.append(f)
        q = np.percentile(floors, PERCENTILES)
        rows[name] = {
            "clips": len(floors),
            "floor_db_percentiles": {
                str(p): round(float(v), 1) for p, v in zip(PERCENTILES, q, strict=True)
            },
            **(
                {"share_raised": round(float(np.mean(np.array(floors) < target)), 3)}
                if target is not None
                else {}
            ),
        }
    head = f"{'clips (floor, dB under the RMS)':32s}" + "".join(f"{p:>7d}%" for p in PERCENTILES)
    print(head + (f"  under {target:g} dB" if target is not None else ""))
    for name, r in rows.items():
        cells = "".join(f"{v:8.1f}" for v in r["floor_db_percentiles"].values())
        extra = f"  {r['share_raised']:.2f}" if "share_raised" in r else ""
        print(f"{name:32s}{cells}{extra}")
    out = {
        "model": args.model,
        "listen": view,
        "groups": rows,
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "python benchmarks/voice_floors.py " + " ".join(argv or sys.argv[1:]),
    }
    atomic_write_json(args.out, out)
    print(json.dumps({k: v for k, v in out.items() if k != "groups"}))
    return out


if __name__ == "__main__":
    main()
