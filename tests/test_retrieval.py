"""Retrieval metrics with known answers, the gallery file and nearest-artwork search."""

from __future__ import annotations

import numpy as np
import pytest

from sound2sight.retrieval import (
    Gallery,
    NearestArtworks,
    Neighbour,
    average_precision,
    class_ranking_map,
    knn_label_accuracy,
    real_image_ceiling,
    retrieval_metrics,
)


def _clusters(n_per: int, labels=("angry", "happy", "sad"), *, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[: len(labels)] * 5
    x = np.concatenate([c + rng.normal(0, 0.1, (n_per, dim)) for c in centres])
    return x.astype(np.float32), np.repeat(labels, n_per)


def test_perfect_ranking_scores_one():
    x, y = _clusters(5)
    r = retrieval_metrics(x, y, x, y)
    assert r["top1"] == 1.0 and r["mAP"] == pytest.approx(1.0)
    assert r["recall"] == {"1": 1.0, "5": 1.0, "10": 1.0}
    assert r["balanced"]["mAP"] == pytest.approx(1.0)
    assert set(r["per_class"]) == {"angry", "happy", "sad"}
    assert r["chance"]["top1"] == pytest.approx(1 / 3)


def test_reversed_ranking_scores_low():
    x, y = _clusters(5)
    r = retrieval_metrics(x, y, -x, y)  # every match is ranked below every non-match
    assert r["top1"] == 0.0 and r["recall"]["10"] == 0.0
    # relevant items at ranks 11..15 of 15: AP = mean(1/11, 2/12, ..., 5/15)
    expected = np.mean([k / (10 + k) for k in range(1, 6)])
    assert r["mAP"] == pytest.approx(expected)
    assert r["mAP"] < 0.35


def test_average_precision_known_values():
    rel = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], bool)
    ap = average_precision(rel)
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)
    assert ap[1] == pytest.approx(0.5)
    assert np.isnan(ap[2])


def test_balanced_variant_weights_classes_equally():
    # 9 happy queries all right, 1 sad query wrong: plain top-1 0.9, balanced 0.5
    g = np.array([[1.0, 0.0], [0.0, 1.0]])
    gl = ["happy", "sad"]
    q = np.array([[1.0, 0.1]] * 9 + [[1.0, 0.0]])
    ql = ["happy"] * 9 + ["sad"]
    r = retrieval_metrics(q, ql, g, gl, ks=(1, 2))
    assert r["top1"] == pytest.approx(0.9)
    assert r["balanced"]["top1"] == pytest.approx(0.5)
    assert r["per_class"]["sad"]["AP"] == pytest.approx(0.5)


def test_class_ranking_map_equals_retrieval_with_a_perfect_image_side():
    # gallery: tight one-hot clusters of unequal size; queries: the probabilities
    # themselves, so cosine ranks the gallery class by class in probability order
    rng = np.random.default_rng(1)
    gl = np.repeat([0, 1, 2], [4, 20, 7])
    g = np.eye(3)[gl] + rng.normal(0, 1e-3, (len(gl), 3))
    probs = rng.dirichlet([1, 1, 1], size=40)
    ql = rng.integers(0, 3, 40)
    ref = class_ranking_map(probs, ql, gl)
    assert ref == pytest.approx(retrieval_metrics(probs, ql, g, gl)["mAP"], abs=1e-9)
    right = probs.argmax(1) == ql  # right queries score AP 1, wrong ones less
    assert class_ranking_map(probs[right], ql[right], gl) == 1.0
    assert class_ranking_map(probs[~right], ql[~right], gl) < 0.6


def test_metrics_reject_mismatched_input():
    with pytest.raises(ValueError, match="length"):
        retrieval_metrics(np.eye(2), [0], np.eye(2), [0, 1])
    with pytest.raises(ValueError, match="gallery"):
        retrieval_metrics(np.eye(2), [0, 1], np.zeros((0, 2)), [])


def _gallery(n: int = 4) -> Gallery:
    angles = np.linspace(0, np.pi / 2, n)
    z = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)  # (n, 2) unit
    return Gallery(
        paths=np.array([f"img{i}.jpg" for i in range(n)]),
        labels=np.array(["angry", "happy", "sad", "sad"][:n]),
        embeddings=z,
        thumbnails=np.zeros((n, 64, 64, 3), np.uint8),
    )


def test_nearest_artworks_orders_by_cosine():
    nearest = NearestArtworks(_gallery())
    out = nearest(np.array([1.0, 0.05]), k=3)
    assert [n.path for n in out] == ["img0.jpg", "img1.jpg", "img2.jpg"]
    scores = [n.score for n in out]
    assert scores == sorted(scores, reverse=True) and -1 <= scores[-1] <= scores[0] <= 1
    assert isinstance(out[0], Neighbour)
    path, label, score = out[0]
    assert (path, label) == ("img0.jpg", "angry")


def test_nearest_artworks_batch_and_clipped_k():
    nearest = NearestArtworks(_gallery())
    batch = nearest(np.array([[1.0, 0.0], [0.0, 2.0]]), k=10)
    assert len(batch) == 2 and all(len(b) == 4 for b in batch)
    assert batch[1][0].path == "img3.jpg"
    idx, sims = nearest.search(np.array([0.0, 1.0]), k=2)
    assert idx.shape == (1, 2) and sims[0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="dims"):
        nearest(np.ones(3), k=1)


def test_gallery_roundtrip(tmp_path):
    g = _gallery()
    path = g.save(tmp_path / "gallery.npz")
    back = Gallery.load(path)
    assert back.paths.tolist() == g.paths.tolist() and back.labels.tolist() == g.labels.tolist()
    np.testing.assert_array_equal(back.embeddings, g.embeddings)
    assert back.thumbnails.dtype == np.uint8 and back.thumbnails.shape == (4, 64, 64, 3)


def test_knn_and_ceiling_known_answers():
    x, y = _clusters(12)
    loo = knn_label_accuracy(x, y, x, y, exclude_self=True)
    assert loo["accuracy"] == 1.0 and loo["balanced"] == 1.0
    ceiling = real_image_ceiling(x, y, folds=3)
    assert ceiling["nn1"]["balanced"] == 1.0 and ceiling["probe"]["balanced"] == 1.0
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(90, 16)).astype(np.float32)
    shuffled = rng.permutation(np.repeat(["a", "b", "c"], 30))
    chance = real_image_ceiling(noise, shuffled, folds=3)
    assert chance["nn1"]["balanced"] < 0.6 and chance["probe"]["balanced"] < 0.6
    assert set(chance["probe"]["per_class"]) == {"a", "b", "c"}
