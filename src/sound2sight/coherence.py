"""One coherent answer: the reported emotion decides; the painting and the neighbours follow.

The design (measured by ``benchmarks/agreement.py``):

1. The classifier's calibrated probabilities decide the emotion (or "uncertain between X
   and Y" when the top two are close; the top one still leads).
2. The voice's point in the shared space is kept, but if it lies nearer another emotion's
   centroid than the decided one's, it is moved towards the decided centroid just far
   enough that the decided emotion is the nearest (:func:`steer`).  The GAN is
   conditioned on that point and the nearest artworks are searched from it, so both
   follow the decision while keeping what is particular to the voice.
3. Paintings are drawn ``oversample`` times over and the ones an image-emotion probe (a
   balanced logistic regression on the gallery's EfficientNet features) finds most like
   the decided emotion are kept (:class:`PaintingJudge`); each kept painting also gets
   the gallery artworks nearest to it in image-feature space.

>>> c = np.eye(3, 8, dtype=np.float32)                    # three unit class centroids
>>> z = np.array([0.9, 0.4, 0, 0, 0, 0, 0, 0], np.float32); z /= np.linalg.norm(z)
>>> z2, alpha = steer(z, 1, c)                            # decided: class 1
>>> int(np.argmax(c @ z2)), alpha > 0
(1, True)
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_centroids", "steer", "PaintingJudge"]

STEPS = np.linspace(0.0, 1.0, 21)  # candidate shares of the way to the decided centroid


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_centroids(embeddings: np.ndarray, labels: np.ndarray, names) -> np.ndarray:
    """Unit mean embedding of each emotion in ``names``: ``(len(names), D)`` (zeros if absent)."""
    out = np.zeros((len(names), embeddings.shape[1]), np.float32)
    for i, n in enumerate(names):
        sel = labels == n
        if sel.any():
            out[i] = _unit(embeddings[sel].mean(0))
    return out


def steer(z: np.ndarray, decided: int, centroids: np.ndarray, *, margin: float = 0.02):
    """Move unit ``z`` towards ``centroids[decided]`` until that centroid is the nearest by
    ``margin`` in cosine; return ``(z', share of the way moved in [0, 1])``."""
    for a in STEPS:
        zz = _unit((1 - a) * z + a * centroids[decided])
        sims = centroids @ zz
        others = np.delete(sims, decided)
        if others.size == 0 or sims[decided] >= others.max() + margin:
            return zz.astype(np.float32), float(a)
    return centroids[decided].astype(np.float32), 1.0


class PaintingJudge:
    """Image-emotion probe and image-space neighbours over the gallery's features.

    Parameters
    ----------
    features : (G, 1280) EfficientNet-Lite0 features of the gallery paintings
    labels : (G,) their emotion labels (strings)
    names : the emotion vocabulary, in the classifier's order
    """

    def __init__(self, features: np.ndarray, labels: np.ndarray, names, *, encoder=None) -> None:
        from sklearn.linear_model import LogisticRegression

        self.names = list(names)
        f = np.asarray(features, np.float32)
        self.mean, self.std = f.mean(0), f.std(0) + 1e-6
        y = np.array([self.names.index(str(v)) for v in labels])
        self.probe = LogisticRegression(C=0.1, max_iter=500, class_weight="balanced")
        self.probe.fit((f - self.mean) / self.std, y)
        self.gallery_unit = _unit(f)
        self._encoder = encoder

    def encoder(self):
        if self._encoder is None:
            from sound2sight.models.image import load_image_encoder

            self._encoder = load_image_encoder()[0]
        return self._encoder

    def features(self, images: list[np.ndarray]) -> np.ndarray:
        """EfficientNet-Lite0 features ``(n, 1280)`` of generated uint8 images."""
        from sound2sight.painting.metrics import effnet_features

        return effnet_features(self.encoder(), np.stack(images))

    def emotion_probs(self, feats: np.ndarray) -> np.ndarray:
        """Probe probabilities ``(n, len(names))`` (columns in ``names`` order)."""
        p = self.probe.predict_proba((feats - self.mean) / self.std)
        out = np.zeros((len(feats), len(self.names)))
        out[:, self.probe.classes_] = p
        return out

    def nearest(self, feats: np.ndarray, *, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and cosine similarities ``(n, k)`` of the nearest gallery paintings."""
        sims = _unit(feats) @ self.gallery_unit.T  # (n, G)
        idx = np.argsort(-sims, axis=1)[:, :k]
        return idx, np.take_along_axis(sims, idx, axis=1)
