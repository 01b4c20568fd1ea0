"""The shipped voice recipe over several seeds: how far apart single seeds land on voices
unlike CREMA-D, and what averaging their answers (a seed ensemble) does.

    python benchmarks/voice_seeds.py --data ../shared/data/audio --seeds 0,1,2,3,4

Trains the shipped speaker-normalised recipe (``python -m sound2sight.voice.pretrained
--set classifier.speaker_norm=true``, CREMA-D actors only, SI fold 0's actors held out) once
per seed into ``--runs`` (a seed already there is reused; ``--set`` changes the recipe, e.g.
``--set classifier.encoder=base --runs runs/voice_base``), then scores each head, and the
average of the heads' probabilities, on the speakers none of them saw: the 13 held-out CREMA-D
actors and the never-seen corpora RAVDESS, TESS and SAVEE, two ways:

- ``one recording``: each clip read as the pipeline reads a recording without a calibration
  (``speaker.standardise_alone``);
- ``training statistics``: each clip standardised by the training frames' statistics.

The seed also draws the validation actors, so each head standardises a clip by its own
training frames' statistics and prior; the ensemble averages the heads' probabilities.
Also times the heads alone (one, and all of them) on two 3 s windows' features.  Prints a
table and writes ``benchmarks/results/voice_seeds.json``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "voice_seeds.json"
CORPORA = ("CREMA-D", "RAVDESS", "TESS", "SAVEE")


def score(probs: np.ndarray, y: np.ndarray) -> dict:
    from sound2sight.labels import EMOTIONS
    from sound2sight.metrics import classification_report

    r = classification_report(y, probs.argmax(1), labels=EMOTIONS)
    return {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "recall": r["recall"]}


def head_ms(heads, shape: tuple[int, int], *, repeats: int = 50) -> dict:
    """Median milliseconds of the first head and of the ensemble of all of them on the
    features of two 3 s windows (38 frames of the encoder's ``shape = (layers, channels)``,
    tiny.en's (5, 384)), one thread."""
    import torch

    from sound2sight.voice.model import HeadEnsemble

    x = torch.randn(2, shape[0], 38, shape[1])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for name, model in (("one", heads[0]), ("all", HeadEnsemble(heads).eval())):
            times = []
            with torch.no_grad():
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    model.logits_and_embedding(x)
                    times.append(time.perf_counter() - t0)
            out[name] = 1000 * float(np.median(times))
    finally:
        torch.set_num_threads(threads)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "audio")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "voice_seeds")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        help="config override on top of the shipped recipe, k=v (e.g. classifier.encoder=base)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from sound2sight.datasets import load_audio_corpus
    from sound2sight.io import atomic_write_json
    from sound2sight.labels import EMOTIONS
    from sound2sight.voice.cache import load_voice_features
    from sound2sight.voice.pretrained import build_shipped, load_folder
    from sound2sight.voice.speaker import standardise, standardise_alone
    from sound2sight.voice.train import predict

    seeds = [int(s) for s in args.seeds.split(",")]
    heads, cards, minutes = [], [], {}
    for seed in seeds:
        folder = args.runs / f"seed{seed}"
        if not (folder / "model.json").is_file():
            t0 = time.perf_counter()
            build_shipped(
                args.data,
                folder,
                seed=seed,
                overrides=["classifier.speaker_norm=true", *args.set],
            )
            minutes[seed] = (time.perf_counter() - t0) / 60
        head, _, card = load_folder(folder)
        heads.append(head)
        cards.append(card)
    seen = set(cards[0]["data"]["speakers"]["train"]) | set(cards[0]["data"]["speakers"]["val"])
    assert all(set(c["data"]["speakers"]["train"]) <= seen for c in cards)  # one split for all
    from sound2sight.config import config_from_dict, voice_sections

    cfg = config_from_dict(voice_sections(cards[0]["config"]))
    items = [it for it in load_audio_corpus(args.data).items if it.label]
    ok, x_all = load_voice_features(items, cfg)
    y_all = np.array([EMOTIONS.index(it.label) for it in ok])
    stats = [(h.population_stats(), h.shrink_prior()) for h in heads]  # each seed's own
    readings = {  # (head index, features) -> that head's input
        "one recording": lambda i, x: standardise_alone(x, *stats[i]),
        "training statistics": lambda i, x: standardise(x, stats[i][0]),
    }
    result: dict = {"seeds": seeds, "overrides": args.set, "train_minutes": minutes, "corpora": {}}
    for corpus in CORPORA:
        sel = np.array([it.corpus == corpus and it.speaker not in seen for it in ok])
        if not sel.any():
            continue
        x, y = x_all[sel], y_all[sel]
        r: dict = {"clips": int(sel.sum())}
        for reading, fn in readings.items():
            probs = [predict(h, fn(i, x))[0] for i, h in enumerate(heads)]
            per = [score(p, y) for p in probs]
            acc = np.array([s["accuracy"] for s in per])
            r[reading] = {
                "per_seed": per,
                "seed_mean": float(acc.mean()),
                "seed_min": float(acc.min()),
                "seed_max": float(acc.max()),
                "ensemble": score(np.mean(probs, axis=0), y),
            }
        result["corpora"][corpus] = r
    result["head_ms"] = head_ms(heads, (x_all.shape[1], x_all.shape[-1]))
    print(f"{'corpus':10s} {'reading':20s} {'seeds: mean [min, max]':>26s} {'ensemble':>9s}")
    for corpus, r in result["corpora"].items():
        for reading in readings:
            a = r[reading]
            print(
                f"{corpus:10s} {reading:20s} {a['seed_mean']:>10.3f} [{a['seed_min']:.3f}, "
                f"{a['seed_max']:.3f}] {a['ensemble']['accuracy']:>9.3f}"
            )
    t = result["head_ms"]
    print(
        f"heads' time for two 3 s windows, 1 thread: one {t['one']:.2f} ms, all {t['all']:.2f} ms"
    )
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
