"""How many recordings of a speaker does "calibrate to this speaker" need?

    python benchmarks/speaker_calibration.py --data ../shared/data/audio

Scores a speaker-normalised voice model (default: the shipped ``voice-cremad-tiny-speaker``,
trained on CREMA-D only) on the CREMA-D actors it never saw and on RAVDESS, TESS and SAVEE
(never trained on), with each clip standardised by

- ``none``: the statistics of the model's training frames (no calibration: one recording);
- ``k other clips``: the plain statistics of ``k`` other clips of the same speaker, drawn
  at random (any emotions, unlabelled; the clip itself excluded) — what
  ``Sound2Sight.calibrate_to_speaker`` did with ``k`` recordings before issue 21 (it now
  shrinks them towards the training statistics: ``benchmarks/voice_wild.py`` measures that,
  with calibration sets of one emotion too);
- ``all``: all of the speaker's clips including itself (the transductive SI protocol).

For comparison it also scores the default shipped model (``voice-cremad-tiny``, no
speaker normalisation) on the same clips.  Prints a table and writes
``benchmarks/results/speaker_calibration.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "speaker_calibration.json"
CORPORA = ["CREMA-D", "RAVDESS", "TESS", "SAVEE"]

log = logging.getLogger("benchmarks.speaker_calibration")


def _accuracy(head, x: np.ndarray, y: np.ndarray) -> float:
    from sound2sight.voice.train import predict

    probs, _ = predict(head, x)
    return float((probs.argmax(1) == y).mean())


def calibrated_accuracy(head, x, y, speakers, k: int, rng: np.random.Generator) -> float:
    """Each clip standardised by ``k`` other random clips of its speaker."""
    from sound2sight.voice.speaker import speaker_stats, standardise

    out = np.empty_like(x)
    for s in np.unique(speakers):
        rows = np.flatnonzero(speakers == s)
        for r in rows:
            pool = rows[rows != r]
            others = rng.choice(pool, size=min(k, len(pool)), replace=False)
            out[r] = standardise(x[[r]], speaker_stats(x[others]))[0]
    return _accuracy(head, out, y)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "audio")
    ap.add_argument("--model", default="voice-cremad-tiny-speaker")
    ap.add_argument("--baseline", default="voice-cremad-tiny", help="'' to skip")
    ap.add_argument("--ks", default="1,3,10", help="calibration set sizes")
    ap.add_argument("--draws", type=int, default=3, help="random calibration draws per k")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from sound2sight.datasets import load_audio_corpus
    from sound2sight.io import atomic_write_json
    from sound2sight.labels import EMOTIONS
    from sound2sight.voice.cache import load_voice_features
    from sound2sight.voice.pretrained import load_shipped
    from sound2sight.voice.speaker import standardise, standardise_by_speaker

    head, cfg, card = load_shipped(args.model)
    if not cfg.classifier.speaker_norm:
        raise SystemExit(f"{args.model}: not a speaker-normalised model (classifier.speaker_norm)")
    base = load_shipped(args.baseline) if args.baseline else None
    items = [it for it in load_audio_corpus(args.data).items if it.label]
    ok, x_all = load_voice_features(items, cfg)
    seen = set(card["data"]["speakers"]["train"]) | set(card["data"]["speakers"]["val"])
    if base is not None:
        seen |= set(base[2]["data"]["speakers"]["train"]) | set(base[2]["data"]["speakers"]["val"])
    pop = head.population_stats()
    ks = [int(k) for k in args.ks.split(",")]
    rows: dict[str, dict] = {}
    for corpus in CORPORA:
        sel = np.array([it.corpus == corpus and it.speaker not in seen for it in ok])
        if not sel.any():
            continue
        x = x_all[sel]
        y = np.array([EMOTIONS.index(it.label) for it, s in zip(ok, sel, strict=True) if s])
        spk = np.array([it.speaker for it, s in zip(ok, sel, strict=True) if s])
        r = {"clips": int(sel.sum()), "speakers": int(len(np.unique(spk)))}
        if base is not None:
            r["default shipped model"] = _accuracy(base[0], x, y)
        r["none"] = _accuracy(head, standardise(x, pop), y)
        for k in ks:
            accs = [
                calibrated_accuracy(head, x, y, spk, k, np.random.default_rng(d))
                for d in range(args.draws)
            ]
            r[f"{k} other clips"] = float(np.mean(accs))
            r[f"{k} other clips sd"] = float(np.std(accs))
        r["all"] = _accuracy(head, standardise_by_speaker(x, spk), y)
        rows[corpus] = r
        log.info("%s: %s", corpus, r)
    cols = (["default shipped model"] if base is not None else []) + ["none"]
    cols += [f"{k} other clips" for k in ks] + ["all"]
    head_line = f"{'corpus (unseen speakers)':26s}" + "".join(f"{c:>23s}" for c in cols)
    lines = [f"accuracy of {args.model}, each clip standardised by:", head_line]
    for corpus, r in rows.items():
        name = f"{corpus} ({r['clips']}, {r['speakers']} spk)"
        lines.append(f"{name:26s}" + "".join(f"{r[c]:23.3f}" for c in cols))
    table = "\n".join(lines)
    print(table)
    out = {
        "model": args.model,
        "baseline": args.baseline,
        "draws": args.draws,
        "rows": rows,
        "table": table,
        "command": "python benchmarks/speaker_calibration.py " + " ".join(argv or sys.argv[1:]),
    }
    print(f"wrote {atomic_write_json(args.out, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
