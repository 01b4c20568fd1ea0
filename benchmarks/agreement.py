"""Does the answer tell one story?  Reported emotion vs the paintings and the neighbours.

For the test speakers of a run (clips its classifier never saw), every clip goes through
the pipeline as a user's would, and we count how often

* the **neighbours' majority** label (the ``k`` artworks nearest the voice) equals the
  reported emotion;
* the **painted emotion** equals it, judged twice: by the image-emotion probe the pipeline
  uses to pick among its candidate paintings (so partly by construction), and by an
  independent judge the pipeline never consults: a plain 10-nearest-neighbour majority vote
  among the gallery's labelled paintings in EfficientNet feature space.

Arms: the pipeline as shipped (steering + probe-picked paintings) and with both switched
off (``pipeline.steer=false``, ``pipeline.oversample=1``), so the design's effect shows.

Usage::

    python benchmarks/agreement.py --run runs/real0 --clips 300

Prints a table and writes ``benchmarks/results/agreement.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np

from sound2sight.io import atomic_write_json

log = logging.getLogger("sound2sight.benchmarks.agreement")
REPO = Path(__file__).resolve().parents[1]


def _knn_judge(judge, feats: np.ndarray, labels: np.ndarray, k: int = 10) -> list[str]:
    """Plain majority of the ``k`` nearest labelled paintings (not class-balanced: happy,
    80 % of the labelled paintings, wins most votes)."""
    idx, _ = judge.nearest(feats, k=k)
    return [Counter(labels[row].tolist()).most_common(1)[0][0] for row in idx]


def run_arm(pipe, rows: list[dict], *, n_images: int, k: int) -> dict:
    labels = np.asarray(pipe.gallery.labels).astype(str)
    out = Counter()
    steer_moves, t_total, skipped = [], [], []
    for r in rows:
        try:
            res = pipe(r["path"], n_images=n_images, k=k, seed=0)
        except ValueError as exc:  # AudioError: the speech check refused the clip
            skipped.append(str(exc))
            continue
        out["clips"] += 1
        e = res.emotion
        out["correct"] += e == r["label"]
        out["uncertain"] += res.uncertain is not None
        nb = Counter(n.label for n in res.neighbours).most_common(1)[0][0]
        out["neighbours_agree"] += nb == e
        if res.images and pipe.judge is not None:
            feats = pipe.judge.features(res.images)
            probe = [pipe.judge.names[i] for i in pipe.judge.emotion_probs(feats).argmax(1)]
            knn = _knn_judge(pipe.judge, feats, labels)
            out["painted_probe_agree"] += Counter(probe).most_common(1)[0][0] == e
            out["painted_knn_agree"] += Counter(knn).most_common(1)[0][0] == e
            out["all_three_agree"] += (nb == e) and Counter(probe).most_common(1)[0][0] == e
        steer_moves.append(res.steered)
        t_total.append(res.timings_ms["total"])
    n = max(out["clips"], 1)
    return {
        "clips": out["clips"],
        "refused_by_speech_check": len(skipped),
        "accuracy": out["correct"] / n,
        "uncertain_share": out["uncertain"] / n,
        "neighbours_majority_agrees": out["neighbours_agree"] / n,
        "painted_agrees_probe": out["painted_probe_agree"] / n,
        "painted_agrees_knn_judge": out["painted_knn_agree"] / n,
        "neighbours_and_probe_agree": out["all_three_agree"] / n,
        "steered_share": float(np.mean([m > 0 for m in steer_moves])) if steer_moves else 0.0,
        "median_ms": float(np.median(t_total)) if t_total else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a run trained on real data")
    ap.add_argument("--clips", type=int, default=300, help="test clips (evenly sampled)")
    ap.add_argument("--n-images", type=int, default=4)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "agreement.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from sound2sight.pipeline import Sound2Sight

    with open(args.run / "data" / "audio_manifest.csv", newline="", encoding="utf-8") as fh:
        test = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    step = max(1, len(test) // args.clips)
    rows = test[::step][: args.clips]
    pipe = Sound2Sight.from_run(args.run)
    result = {"run": str(args.run), "test_clips_available": len(test), "arms": {}}
    for arm, steer, over in (("as shipped", True, pipe.cfg.pipeline.oversample), ("off", False, 1)):
        pipe.cfg.pipeline.steer, pipe.cfg.pipeline.oversample = steer, over
        t0 = time.perf_counter()
        result["arms"][arm] = run_arm(pipe, rows, n_images=args.n_images, k=args.k)
        result["arms"][arm] |= {
            "steer": steer,
            "oversample": over,
            "seconds": time.perf_counter() - t0,
        }
    clf = json.loads((args.run / "classifier" / "metrics.json").read_text())
    result["calibration"] = clf.get("calibration")
    keys = [
        "accuracy",
        "uncertain_share",
        "neighbours_majority_agrees",
        "painted_agrees_probe",
        "painted_agrees_knn_judge",
        "neighbours_and_probe_agree",
        "steered_share",
        "median_ms",
    ]
    print(f"{'':30s}" + "".join(f"{a:>14s}" for a in result["arms"]))
    for key in keys:
        vals = [result["arms"][a][key] for a in result["arms"]]
        print(
            f"{key:30s}" + "".join(f"{v:14.3f}" if v is not None else f"{'-':>14s}" for v in vals)
        )
    atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
