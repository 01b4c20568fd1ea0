"""Honest confidence: temperature scaling, calibration error, reliability plots, "uncertain".

Temperature scaling (Guo et al., 2017) divides a classifier's logits by one scalar ``T``
fitted on held-out data; it changes confidences, never the top-1 class.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> logits = 3.0 * rng.normal(size=(2000, 3))
>>> labels = np.array([rng.choice(3, p=p) for p in softmax(logits)])
>>> round(fit_temperature(3 * logits, labels), 1)  # over-confident by 3x -> T ~ 3
3.0
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sound2sight.io import atomic_write_bytes

__all__ = [
    "softmax",
    "fit_temperature",
    "expected_calibration_error",
    "ReliabilityTable",
    "reliability_table",
    "plot_reliability",
    "decide",
]

log = logging.getLogger(__name__)

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618..., the golden-section step


def softmax(logits: np.ndarray, *, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, computed stably in float64.

    Parameters
    ----------
    logits : np.ndarray, shape (N, K)
    temperature : float > 0

    Returns
    -------
    np.ndarray, float64, shape (N, K), rows sum to 1

    Examples
    --------
    >>> softmax(np.zeros((2, 4))).round(2).tolist()
    [[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]]
    """
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))  # (N,)
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def _check(probs_or_logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a ``(N, K)`` score array and its ``(N,)`` integer labels in ``[0, K)``."""
    x = np.asarray(probs_or_logits, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(f"expected scores (N, K) and labels (N,), got {x.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= x.shape[1]:
        raise ValueError(f"labels must be integers in [0, {x.shape[1]})")
    return x, y.astype(np.int64)


def fit_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    bounds: tuple[float, float] = (0.05, 20.0),
    tol: float = 1e-4,
) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits / T)`` on ``labels``.

    A golden-section search on ``log T`` inside ``bounds``: the NLL is convex in ``1 / T``
    (log-sum-exp of logits scaled by ``1 / T``), hence unimodal in ``log T``, so the search
    finds the global minimum; it is deterministic and needs no gradients.

    Parameters
    ----------
    logits : np.ndarray, shape (N, K)
        Held-out (validation) logits; fitting on the training set under-corrects.
    labels : np.ndarray, shape (N,), int in [0, K)
    bounds : (float, float), 0 < low < high
        Search range for ``T``; the result is clipped to it.
    tol : float > 0
        Stop when the bracket on ``log T`` is narrower than this.

    Returns
    -------
    float, T in bounds; T > 1 softens an over-confident model, T < 1 sharpens.

    Examples
    --------
    >>> logits = np.array([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    >>> t = fit_temperature(logits, np.array([0, 1, 1, 0]))  # 3 of 4 right: soften
    >>> t > 1.0
    True
    """
    z, y = _check(logits, labels)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}")
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = _nll(z, y, math.exp(a)), _nll(z, y, math.exp(b))
    while hi - lo > tol:
        if fa <= fb:  # the minimum lies in [lo, b]
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = _nll(z, y, math.exp(a))
        else:  # the minimum lies in [a, hi]
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = _nll(z, y, math.exp(b))
    t = math.exp((lo + hi) / 2)
    log.info("temperature %.3f: NLL %.4f -> %.4f", t, _nll(z, y, 1.0), _nll(z, y, t))
    return t


@dataclass(frozen=True)
class ReliabilityTable:
    """Per-bin statistics of top-1 confidence (equal-width bins on [0, 1])."""

    edges: np.ndarray  # (n_bins + 1,) bin edges, 0 ... 1
    count: np.ndarray  # (n_bins,) predictions whose confidence falls in the bin
    accuracy: np.ndarray  # (n_bins,) fraction of them that are right; NaN for empty bins
    confidence: np.ndarray  # (n_bins,) their mean confidence; NaN for empty bins


def reliability_table(
    probs: np.ndarray, labels: np.ndarray, *, n_bins: int = 15
) -> ReliabilityTable:
    """Bin the top-1 confidences: count, accuracy and mean confidence per bin.

    Bin ``i`` holds confidences in ``(edges[i], edges[i + 1]]`` (bin 0 also holds 0).

    Parameters
    ----------
    probs : np.ndarray, shape (N, K), rows sum to 1
    labels : np.ndarray, shape (N,), int in [0, K)
    n_bins : int > 0

    Returns
    -------
    ReliabilityTable

    Examples
    --------
    >>> table = reliability_table(np.array([[0.9, 0.1], [0.3, 0.7]]), np.array([0, 0]), n_bins=5)
    >>> table.count.tolist(), table.accuracy[[3, 4]].tolist()
    ([0, 0, 0, 1, 1], [0.0, 1.0])
    """
    p, y = _check(probs, labels)
    conf = p.max(axis=1)  # (N,)
    right = (p.argmax(axis=1) == y).astype(np.float64)  # (N,)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)  # (N,)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(which, weights=right, minlength=n_bins) / count
        confidence = np.bincount(which, weights=conf, minlength=n_bins) / count
    return ReliabilityTable(edges, count, accuracy, confidence)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, *, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean of ``|accuracy - confidence|`` over top-1 confidence bins.

    Parameters
    ----------
    probs : np.ndarray, shape (N, K), rows sum to 1
    labels : np.ndarray, shape (N,), int in [0, K)
    n_bins : int > 0
        Equal-width bins on [0, 1] (15, as in Guo et al., 2017).

    Returns
    -------
    float in [0, 1]; 0 when every bin's accuracy equals its mean confidence.

    Examples
    --------
    >>> probs = np.array([[0.9, 0.1]] * 10)  # 90 % sure, always class 0 ...
    >>> round(expected_calibration_error(probs, np.array([0] * 5 + [1] * 5)), 2)  # ... half right
    0.4
    """
    table = reliability_table(probs, labels, n_bins=n_bins)
    full = table.count > 0
    gap = np.abs(table.accuracy[full] - table.confidence[full])
    return float(np.sum(table.count[full] * gap) / table.count.sum())


def plot_reliability(
    before_probs: np.ndarray,
    after_probs: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    *,
    n_bins: int = 15,
) -> Path:
    """Write a reliability diagram (accuracy per confidence bin) before and after calibration.

    Parameters
    ----------
    before_probs, after_probs : np.ndarray, shape (N, K)
        Probabilities of the same predictions, e.g. at T = 1 and at the fitted T.
    labels : np.ndarray, shape (N,), int in [0, K)
    path : path-like
        Output image (format from the suffix, e.g. ``.png``); written atomically.
    n_bins : int > 0

    Returns
    -------
    Path, the written image

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = np.array([[0.8, 0.2], [0.4, 0.6]])
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "rel.png"
    >>> plot_reliability(p, p, np.array([0, 0]), out, n_bins=5).stat().st_size > 0
    True
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without switching the process-wide pyplot backend
    for ax, probs, title in zip(
        fig.subplots(1, 2, sharey=True),
        (before_probs, after_probs),
        ("before", "after"),
        strict=True,
    ):
        table = reliability_table(probs, labels, n_bins=n_bins)
        ece = expected_calibration_error(probs, labels, n_bins=n_bins)
        centres = (table.edges[:-1] + table.edges[1:]) / 2
        width = 1.0 / n_bins
        ax.bar(centres, np.nan_to_num(table.accuracy), width=width, edgecolor="k", label="accuracy")
        ax.bar(
            centres,
            np.nan_to_num(table.confidence - table.accuracy),
            bottom=np.nan_to_num(table.accuracy),
            width=width,
            color="tab:red",
            alpha=0.3,
            label="gap",
        )
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set(title=f"{title} (ECE {ece:.3f})", xlabel="confidence", xlim=(0, 1), ylim=(0, 1))
    fig.axes[0].set_ylabel("accuracy")
    fig.axes[0].legend(loc="upper left")
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=100)
    return atomic_write_bytes(path, buf.getvalue())


def decide(
    probs: dict[str, float] | np.ndarray,
    labels: Sequence[str] | None = None,
    *,
    margin: float = 0.15,
) -> tuple[str, tuple[str, str] | None]:
    """The top class, and the top two when they are too close to call.

    Rule: with ``p1 >= p2`` the two largest probabilities, the answer is uncertain when
    ``p1 - p2 < margin`` (absolute probability points, not a ratio); ties go to the class
    listed first.

    Parameters
    ----------
    probs : dict[str, float] or np.ndarray, shape (K,)
        Class probabilities; with an array, ``labels`` names its entries.
    labels : sequence of K str, or None
        Class names for an array ``probs``; ignored (may be None) for a dict.
    margin : float in [0, 1]
        0 never reports uncertainty.

    Returns
    -------
    (top, None) or (top, (top, second))
        The second item reads as "uncertain between top and second".

    Examples
    --------
    >>> decide({"angry": 0.5, "happy": 0.4, "sad": 0.1})
    ('angry', ('angry', 'happy'))
    >>> decide(np.array([0.1, 0.8, 0.1]), ["angry", "happy", "sad"])
    ('happy', None)
    """
    if isinstance(probs, dict):
        names, values = list(probs), np.array(list(probs.values()), dtype=np.float64)
    else:
        values = np.asarray(probs, dtype=np.float64).reshape(-1)  # (K,)
        if labels is None or len(labels) != len(values):
            raise ValueError(f"need {len(values)} labels for the probabilities, got {labels!r}")
        names = list(labels)
    if len(values) == 0:
        raise ValueError("no probabilities to decide between")
    order = np.argsort(-values, kind="stable")  # descending; ties keep the listed order
    top = names[order[0]]
    if len(values) > 1 and values[order[0]] - values[order[1]] < margin:
        return top, (top, names[order[1]])
    return top, None
