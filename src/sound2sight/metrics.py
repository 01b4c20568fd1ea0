"""Pure classification metrics and the figures the stages save (confusion, curves, embedding map).

All functions take integer class indices (``y_true``, ``y_pred`` of shape ``(N,)``) and
return plain Python numbers or lists, so results drop straight into ``metrics.json``.

>>> y_true, y_pred = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0]
>>> round(accuracy(y_true, y_pred), 3), round(macro_f1(y_true, y_pred, n_classes=3), 3)
(0.667, 0.656)
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "accuracy",
    "macro_f1",
    "per_class_recall",
    "confusion",
    "group_accuracy",
    "classification_report",
    "plot_confusion",
    "plot_history",
    "plot_embedding_map",
]


def _arr(y) -> np.ndarray:
    return np.asarray(y, dtype=np.int64).reshape(-1)


def accuracy(y_true, y_pred) -> float:
    """Share of exact matches; ``nan`` for empty input.

    >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
    0.75
    """
    t, p = _arr(y_true), _arr(y_pred)
    return float((t == p).mean()) if len(t) else float("nan")


def confusion(y_true, y_pred, *, n_classes: int) -> np.ndarray:
    """Counts ``(n_classes, n_classes)``; rows are true classes, columns predictions.

    >>> confusion([0, 1, 1], [0, 1, 0], n_classes=2).tolist()
    [[1, 0], [1, 1]]
    """
    t, p = _arr(y_true), _arr(y_pred)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def per_class_recall(y_true, y_pred, *, n_classes: int) -> list[float]:
    """Recall of each class (``nan`` for a class absent from ``y_true``).

    >>> per_class_recall([0, 0, 1, 1], [0, 1, 1, 1], n_classes=2)
    [0.5, 1.0]
    """
    cm = confusion(y_true, y_pred, n_classes=n_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = np.diag(cm) / support
    return [float(r) for r in rec]


def macro_f1(y_true, y_pred, *, n_classes: int) -> float:
    """Unweighted mean of the per-class F1 over classes present in truth or prediction.

    A class that is neither in ``y_true`` nor in ``y_pred`` is left out (as scikit-learn
    does with ``labels`` restricted to those seen).

    >>> macro_f1([0, 0, 1, 1], [0, 0, 1, 1], n_classes=3)
    1.0
    """
    cm = confusion(y_true, y_pred, n_classes=n_classes).astype(np.float64)
    tp = np.diag(cm)
    pred, true = cm.sum(axis=0), cm.sum(axis=1)
    seen = (pred + true) > 0
    if not seen.any():
        return float("nan")
    f1 = np.where(seen, 2 * tp / np.maximum(pred + true, 1), 0.0)
    return float(f1[seen].mean())


def group_accuracy(y_true, y_pred, groups: Sequence[str]) -> dict[str, float]:
    """Accuracy inside each group (e.g. corpus), sorted by group name.

    >>> group_accuracy([0, 1, 1], [0, 0, 1], ["a", "b", "b"])
    {'a': 1.0, 'b': 0.5}
    """
    t, p, g = _arr(y_true), _arr(y_pred), np.asarray(list(groups))
    return {str(k): accuracy(t[g == k], p[g == k]) for k in sorted(set(g.tolist()))}


def classification_report(
    y_true, y_pred, *, labels: Sequence[str], groups: Sequence[str] | None = None
) -> dict:
    """Everything ``metrics.json`` records for one prediction set.

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``macro_f1``, ``recall`` ({label: value}), ``confusion``
        (nested lists, rows = truth, in ``labels`` order), ``labels`` and, when
        ``groups`` is given, ``per_corpus_accuracy``.

    >>> r = classification_report([0, 1, 2], [0, 1, 1], labels=["angry", "happy", "sad"])
    >>> r["accuracy"], r["recall"]["sad"]
    (0.6666666666666666, 0.0)
    """
    n = len(labels)
    out = {
        "n": int(len(_arr(y_true))),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, n_classes=n),
        "recall": dict(zip(labels, per_class_recall(y_true, y_pred, n_classes=n), strict=True)),
        "labels": list(labels),
        "confusion": confusion(y_true, y_pred, n_classes=n).tolist(),
    }
    if groups is not None:
        out["per_corpus_accuracy"] = group_accuracy(y_true, y_pred, groups)
    return out


def plot_confusion(cm, *, labels: Sequence[str], path: str | os.PathLike, title: str = "") -> Path:
    """Save a row-normalised confusion-matrix heat map (counts in each cell) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sound2sight.io import atomic_write_bytes

    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(3.6, 3.2), dpi=120)
    ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            colour = "white" if norm[i, j] > 0.6 else "black"
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}\n{norm[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color=colour,
            )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_history(history: list[dict], path: str | os.PathLike) -> Path:
    """Save training curves (train/val loss and val macro-F1 per epoch) as a PNG.

    ``history`` holds one dict per epoch with ``epoch``, ``train_loss``, ``val_loss``,
    ``val_macro_f1``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sound2sight.io import atomic_write_bytes

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(7, 2.8), dpi=110)
    a1.plot(ep, [h["train_loss"] for h in history], label="train")
    a1.plot(ep, [h["val_loss"] for h in history], label="val")
    a1.set_xlabel("epoch")
    a1.set_ylabel("loss")
    a1.legend()
    a2.plot(ep, [h["val_macro_f1"] for h in history], marker="o")
    a2.set_xlabel("epoch")
    a2.set_ylabel("val macro-F1")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_embedding_map(
    path: str | os.PathLike,
    audio: tuple[np.ndarray, np.ndarray],
    image: tuple[np.ndarray, np.ndarray],
    *,
    labels: Sequence[str],
    points: int = 240,
    seed: int = 0,
) -> Path:
    """Save a t-SNE map of the shared space: colour = emotion, marker = modality (PNG).

    Parameters
    ----------
    path : path-like
        PNG to write (atomically).
    audio, image : (ndarray (N, D) float, ndarray (N,) int)
        Embeddings and class indices of each modality.
    labels : sequence of str
        Class names, indexed by the class indices.
    points : int > 0
        Points per modality, drawn class-balanced (all of a class smaller than its share).
    seed : int
        Subsample and t-SNE seed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    from sound2sight.io import atomic_write_bytes

    rng = np.random.default_rng(seed)
    per = max(1, points // len(labels))
    picked = []
    for z, y in (audio, image):
        idx = [
            rng.choice(np.flatnonzero(y == c), min(per, int((y == c).sum())), replace=False)
            for c in np.unique(y)
        ]
        keep = np.sort(np.concatenate(idx))
        picked.append((z[keep], y[keep]))
    z = np.concatenate([picked[0][0], picked[1][0]])  # (Na + Ni, D)
    xy = TSNE(
        2, init="pca", perplexity=min(30, len(z) - 1), max_iter=500, random_state=seed
    ).fit_transform(z)  # (Na + Ni, 2)
    n_a = len(picked[0][0])
    palette = ["tab:red", "tab:orange", "tab:blue", "tab:green", "tab:purple", "tab:brown"]
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for m, (sl, (_, ys), name) in enumerate(
        ((slice(0, n_a), picked[0], "audio"), (slice(n_a, None), picked[1], "image"))
    ):
        for c, emo in enumerate(labels):
            pts = xy[sl][ys == c]
            colour = palette[c % len(palette)]
            ax.scatter(*pts.T, s=14, c=colour, marker="o^"[m], alpha=0.6, label=f"{emo} ({name})")
    ax.set_title("Shared space (t-SNE): colour = emotion, marker = modality")
    ax.legend(fontsize=7, markerscale=1.2)
    ax.set_xticks([]), ax.set_yticks([])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
