"""GAN metrics in EfficientNet-Lite0 feature space (the stage's evaluation: :mod:`sound2sight.painting.evaluate`).

Generated and real images go through the same frozen EfficientNet-Lite0 at 224 px;
real paintings are first resized to the GAN's resolution so both sides carry the same
blur.  Metrics:

- **emotion consistency**: a k-NN vote (cosine, k = 1 and 5) among real labelled
  paintings names an emotion for each generated image; the share that matches the
  intended emotion, per class and class-balanced.  The same on held-out real paintings
  is the ceiling the data allows, and a balanced logistic-regression probe trained on
  real features is applied to both;
- **FD-EffNet**: Fréchet distance between Gaussian fits of the 1280-d features (this is
  not FID, which is defined on Inception-v3 features);
- **KID**: unbiased MMD² with the cubic polynomial kernel, averaged over subsets;
- **diversity**: mean pairwise feature distance inside each class, generated vs real.

>>> rng = np.random.default_rng(0)
>>> x, y = rng.normal(size=(500, 8)), rng.normal(size=(500, 8))  # one distribution, two samples
>>> round(frechet_distance(x, x), 6), round(kid(x, y)["mean"], 2)
(0.0, 0.0)
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "frechet_distance",
    "kid",
    "knn_vote",
    "consistency",
    "mean_pairwise_distance",
    "diversity",
    "probe_consistency",
    "effnet_features",
    "folded",
    "cached_real_features",
    "emotion_vs_noise",
    "balanced_reference",
]

log = logging.getLogger(__name__)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|mu_a - mu_b|² + tr(S_a + S_b - 2 (S_a S_b)^½)`` between two feature sets (N, F).

    ``tr (S_a S_b)^½`` is computed exactly without a matrix square root: it is the sum
    of the singular values of ``A Bᵀ / sqrt((n_a - 1)(n_b - 1))`` (centred sets ``A``,
    ``B``) when a set is smaller than the feature size, else the sum of the square roots
    of the eigenvalues of ``S_a^½ S_b S_a^½``.

    >>> rng = np.random.default_rng(0)
    >>> round(frechet_distance(rng.normal(0, 1, (4000, 2)), rng.normal(1, 1, (4000, 2))), 1)
    2.0
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    A, B = a - mu_a, b - mu_b  # (n_a, F), (n_b, F)
    na, nb, d = len(a), len(b), a.shape[1]
    tr_a, tr_b = (A**2).sum() / (na - 1), (B**2).sum() / (nb - 1)
    if min(na, nb) <= d:
        tr_sqrt = np.linalg.svd(A @ B.T, compute_uv=False).sum() / np.sqrt((na - 1) * (nb - 1))
    else:
        w, v = np.linalg.eigh(A.T @ A / (na - 1))
        root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # S_a^½
        m = root_a @ (B.T @ B / (nb - 1)) @ root_a
        tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    fd = ((mu_a - mu_b) ** 2).sum() + tr_a + tr_b - 2 * tr_sqrt
    return float(max(fd, 0.0))


def kid(
    a: np.ndarray, b: np.ndarray, *, subsets: int = 50, subset_size: int = 500, seed: int = 0
) -> dict:
    """Kernel Inception-style distance in any feature space: unbiased MMD², kernel (x.y/d + 1)³.

    Returns ``{"mean", "std", "subset_size", "subsets"}``; ``subset_size`` is capped by the
    smaller set.  Subsets are drawn independently from each set, so ``kid(x, x)`` is
    slightly negative (shared rows inflate the cross term); two samples of one
    distribution give ≈ 0.

    >>> rng = np.random.default_rng(1)
    >>> kid(rng.normal(0, 1, (300, 4)), rng.normal(2, 1, (300, 4)))["mean"] > 1
    True
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        return {"mean": float("nan"), "std": float("nan"), "subset_size": m, "subsets": 0}
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        vals.append(off - 2 * kxy.mean())
    return {
        "mean": float(np.mean(vals)),
        "std": float(np.std(vals)),
        "subset_size": m,
        "subsets": subsets,
    }


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_vote(
    queries: np.ndarray,
    reference: np.ndarray,
    reference_labels: np.ndarray,
    *,
    k: int,
    exclude_self: bool = False,
) -> np.ndarray:
    """Majority label of each query's ``k`` nearest references (cosine); ties go to the nearer.

    >>> ref = np.array([[1.0, 0], [0.9, 0.1], [0, 1]])
    >>> knn_vote(np.array([[1.0, 0.05]]), ref, np.array([0, 0, 1]), k=3).tolist()
    [0]
    """
    q, r = _unit(queries), _unit(reference)
    labels = np.asarray(reference_labels, dtype=np.int64)
    n_cls = int(labels.max()) + 1
    out = np.empty(len(q), dtype=np.int64)
    for s in range(0, len(q), 1024):
        sims = q[s : s + 1024] @ r.T  # (c, R)
        if exclude_self:
            sims[np.arange(len(sims)), s + np.arange(len(sims))] = -np.inf
        top = np.argsort(-sims, axis=1)[:, :k]  # (c, k), nearest first
        votes = np.zeros((len(top), n_cls))
        for rank in range(top.shape[1]):  # a small rank bonus breaks ties toward the nearer
            np.add.at(votes, (np.arange(len(top)), labels[top[:, rank]]), 1.0 + 1e-3 / (rank + 1))
        out[s : s + 1024] = votes.argmax(1)
    return out


def _share(intended: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict:
    per = {
        names[c]: float((predicted[intended == c] == c).mean())
        for c in range(len(names))
        if (intended == c).any()
    }
    return {
        "per_class": per,
        "balanced": float(np.mean(list(per.values()))),
        "accuracy": float((predicted == intended).mean()),
        "n": int(len(intended)),
    }


def consistency(
    feats: np.ndarray,
    intended: np.ndarray,
    reference: np.ndarray,
    reference_labels: np.ndarray,
    *,
    names: Sequence[str],
    ks: Sequence[int] = (1, 5),
    exclude_self: bool = False,
) -> dict:
    """Share of images whose k-NN vote among real paintings is the intended emotion.

    >>> ref = np.array([[1.0, 0], [0, 1]]); y = np.array([0, 1])
    >>> consistency(ref + 0.01, y, ref, y, names=["a", "b"])["k1"]["balanced"]
    1.0
    """
    intended = np.asarray(intended, np.int64)
    return {
        f"k{k}": _share(
            intended,
            knn_vote(feats, reference, reference_labels, k=k, exclude_self=exclude_self),
            names,
        )
        for k in ks
    }


def probe_consistency(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    names: Sequence[str],
    c: float = 0.01,
) -> dict:
    """A balanced logistic-regression probe fit on real features, scored on each named set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(
        StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    )
    probe.fit(train_feats, train_labels)
    return {k: _share(np.asarray(y), probe.predict(x), names) for k, (x, y) in sets.items()}


def mean_pairwise_distance(x: np.ndarray, *, max_n: int = 1000, seed: int = 0) -> float:
    """Mean Euclidean distance over distinct pairs of rows (a seeded subsample above ``max_n``).

    >>> mean_pairwise_distance(np.array([[0.0, 0], [3, 4]]))
    5.0
    """
    x = np.asarray(x, np.float64)
    if len(x) > max_n:
        x = x[np.random.default_rng(seed).choice(len(x), max_n, replace=False)]
    if len(x) < 2:
        return float("nan")
    sq = (x**2).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0))  # (N, N)
    return float(d.sum() / (len(x) * (len(x) - 1)))


def diversity(
    gen: np.ndarray,
    gen_labels: np.ndarray,
    real: np.ndarray,
    real_labels: np.ndarray,
    *,
    names: Sequence[str],
) -> dict:
    """Intra-class mean pairwise distance of generated vs real features, and their ratio."""
    out = {}
    for c, name in enumerate(names):
        g, r = gen[gen_labels == c], real[real_labels == c]
        if len(g) > 1 and len(r) > 1:
            dg, dr = mean_pairwise_distance(g), mean_pairwise_distance(r)
            out[name] = {"generated": dg, "real": dr, "ratio": dg / dr}
    ratios = [v["ratio"] for v in out.values()]
    return {"per_class": out, "mean_ratio": float(np.mean(ratios)) if ratios else float("nan")}


_FOLDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # encoder -> its folded copy


def folded(model):
    """The BatchNorm-folded, channels-last copy of a frozen EfficientNet-Lite ``model``
    (about 1.35x faster), made on first use and kept for the model's lifetime; any other
    module is returned as it is.  The model must not be trained afterwards."""
    from sound2sight.models.image import EfficientNetLite0, _fuse_batchnorm

    if not isinstance(model, EfficientNetLite0) or isinstance(model._bn0, torch.nn.Identity):
        return model  # not a Lite encoder, or folded already
    if model not in _FOLDED:
        _FOLDED[model] = _fuse_batchnorm(model).to(memory_format=torch.channels_last)
    return _FOLDED[model]


@torch.no_grad()
def effnet_features(
    model, images: torch.Tensor | np.ndarray, *, batch_size: int = 64, size: int | None = None
) -> np.ndarray:
    """EfficientNet-Lite features of uint8 images ``(N, H, W, 3)`` or ``(N, 3, H, W)``.

    Images are bilinearly resized to ``size`` (default: the encoder's own, 224 px for
    Lite0, 260 px for Lite2) and normalised as its weights expect; returns ``(N, 1280)``.
    The network runs BatchNorm-folded (:func:`folded`, once per model).
    """
    size = size or model.config.image_size
    x = torch.as_tensor(images)
    if x.ndim == 4 and x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)  # (N, 3, H, W)
    cfg = model.config
    model = folded(model)
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(x), batch_size):
        b = x[s : s + batch_size].to(device).float()  # (b, 3, H, W) in 0..255
        if b.shape[-1] != size:
            b = F.interpolate(b, size=(size, size), mode="bilinear", align_corners=False)
        b = ((b - cfg.pixel_mean) / cfg.pixel_std).contiguous(memory_format=torch.channels_last)
        out.append(model.forward_features(b).float().cpu())  # (b, 1280)
    return torch.cat(out).numpy() if out else np.zeros((0, cfg.feature_dim), np.float32)


def cached_real_features(cfg, model, paths: Sequence[str], images: torch.Tensor) -> np.ndarray:
    """Features of real paintings already squashed to the GAN's side (uint8 ``(N, 3, R, R)``).

    Cached by file hash, side and encoder, so training and evaluation share one extraction.
    """
    from sound2sight.cache import FeatureCache, file_sha256
    from sound2sight.train.common import cache_root

    name = "effnet" if model.config.image_size == 224 else f"lite-{model.config.image_size}"
    cache = FeatureCache(cache_root(cfg), namespace=f"gan-{name}-{images.shape[-1]}px")
    keys = [file_sha256(p) for p in paths]
    rows = [cache.get(k) for k in keys]
    todo = [i for i, r in enumerate(rows) if r is None]
    if todo:
        log.info("EfficientNet features of %d real paintings at %d px", len(todo), images.shape[-1])
        feats = effnet_features(model, images[todo])
        for i, f in zip(todo, feats, strict=True):
            cache.put(keys[i], f)
            rows[i] = f
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 1280), np.float32)


def emotion_vs_noise(images: np.ndarray) -> dict:
    """How far the emotion moves a painting, against how far the noise does.

    ``images`` is uint8 ``(K, M, Z, H, W, 3)``: ``K`` emotions x ``M`` condition draws x
    ``Z`` noise vectors, where draw ``m`` of every emotion shares noise ``z``.  Returns the
    mean per-pixel absolute difference (grey levels) between two emotions at the same
    draw and noise, between two noises at the same condition, and their ratio.

    >>> x = np.zeros((2, 1, 2, 1, 1, 3), np.uint8); x[1] += 10; x[:, :, 1] += 20
    >>> emotion_vs_noise(x)["ratio"]
    0.5
    """
    x = np.asarray(images, np.float32)
    k, _, z = x.shape[:3]
    emo = [np.abs(x[a] - x[b]).mean() for a in range(k) for b in range(a + 1, k)]
    noi = [np.abs(x[:, :, i] - x[:, :, j]).mean() for i in range(z) for j in range(i + 1, z)]
    e, n = float(np.mean(emo)), float(np.mean(noi))
    return {"emotion": e, "noise": n, "ratio": e / n if n > 0 else float("nan")}


def balanced_reference(labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Indices of an equal number of rows per class (the rarest class's count), seeded.

    >>> y = np.array([0, 0, 0, 1, 2, 2])
    >>> np.bincount(y[balanced_reference(y)]).tolist()
    [1, 1, 1]
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(seed)
    keep = [rng.choice(np.flatnonzero(labels == c), counts.min(), replace=False) for c in classes]
    return np.sort(np.concatenate(keep))
