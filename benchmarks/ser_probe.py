"""Which Whisper layer carries the emotion?  A linear probe per layer, SI-5.

For each encoder and each layer (0 = convolutional embedding, last = final block after its
LayerNorm): mean + std of the layer's cached voice features over the clip's valid frames,
standardised, into a class-balanced logistic regression (``C``), trained on four speaker
folds and scored on the fifth; accuracy and macro-F1 over the pooled out-of-fold predictions.
Fast (seconds per layer once the voice cache is warm), so it maps every layer; the trained
head (``benchmarks/ser_whisper.py``) is measured separately.

Usage::

    python benchmarks/ser_probe.py --encoders tiny.en,base --C 0.01

Prints a table and writes ``benchmarks/results/ser_probe.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ser import load_items  # noqa: E402
from sound2sight.config import load_config  # noqa: E402
from sound2sight.io import atomic_write_text  # noqa: E402
from sound2sight.labels import EMOTIONS  # noqa: E402
from sound2sight.metrics import macro_f1  # noqa: E402
from sound2sight.voice.cache import load_voice_features  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def pooled_stats(x: np.ndarray, layer: int) -> np.ndarray:
    """``(N, L, T, C)`` float16 -> mean and std over valid frames of one layer ``(N, 2C)``."""
    valid = (np.abs(x[:, 0].astype(np.float32)).max(-1) > 0)[..., None]  # (N, T, 1)
    h = x[:, layer].astype(np.float32)  # (N, T, C)
    n = valid.sum(1)
    mu = (h * valid).sum(1) / n
    sd = np.sqrt(np.maximum((h * h * valid).sum(1) / n - mu**2, 1e-6))
    return np.concatenate([mu, sd], axis=1)


def si5_probe(f: np.ndarray, y: np.ndarray, fold: np.ndarray, *, c: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pred = np.zeros(len(y), int)
    for k in sorted(set(fold.tolist())):
        te = fold == k
        clf = make_pipeline(
            StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
        )
        pred[te] = clf.fit(f[~te], y[~te]).predict(f[te])
    return pred


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "audio")
    ap.add_argument("--encoders", default="tiny.en,base")
    ap.add_argument("--C", type=float, default=0.01, help="inverse L2 strength of the probe")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ser_probe.json")
    args = ap.parse_args(argv)
    items = load_items(args.data)
    rows = {}
    lines = [f"{'encoder':8s} {'layer':>5s} {'SI-5 acc':>9s} {'SI-5 mF1':>9s}"]
    for enc in args.encoders.split(","):
        ok, x = load_voice_features(items, load_config(overrides=[f"classifier.encoder={enc}"]))
        y = np.array([EMOTIONS.index(it.label) for it in ok])
        fold = np.array([it.fold for it in ok])
        for layer in range(x.shape[1]):
            pred = si5_probe(pooled_stats(x, layer), y, fold, c=args.C)
            acc, mf1 = float((pred == y).mean()), macro_f1(y, pred, n_classes=len(EMOTIONS))
            rows[f"{enc} layer {layer}"] = {"accuracy": acc, "macro_f1": mf1, "n": int(len(y))}
            lines.append(f"{enc:8s} {layer:5d} {acc:9.3f} {mf1:9.3f}")
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    payload = {"C": args.C, "pooling": "mean+std over valid frames", "rows": rows, "table": text}
    atomic_write_text(args.out, json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
