"""Shared space: contrastive loss on toy modalities, the image/audio feature stages, train_align."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from sound2sight.config import AlignConfig, load_config
from sound2sight.datasets.base import ArtItem, AudioItem, write_manifest
from sound2sight.labels import EMOTIONS
from sound2sight.losses import class_centroid_gap, cross_modal_supcon, prototype_loss, supcon
from sound2sight.models.heads import JointSpace, load_joint_space
from sound2sight.retrieval import Gallery, NearestArtworks, retrieval_metrics
from sound2sight.train import align as align_mod
from sound2sight.train.align import balanced_batch, train_align
from sound2sight.train.features import audio_embeddings, extract_image_features, save_npz


def _toy_modality(counts, dim, *, seed, offset=0.0, basis_seed=0):
    """Gaussian clusters per emotion in ``dim`` dims, shifted by a modality ``offset``."""
    centres = np.random.default_rng(basis_seed).normal(0, 1, (3, dim)) * 1.5
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), counts)
    x = centres[y] + rng.normal(0, 1, (len(y), dim)) + offset
    return x.astype(np.float32), y


def test_supcon_prefers_label_consistent_embeddings():
    y = torch.tensor([0, 0, 1, 1])
    good = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    bad = good[[0, 2, 1, 3]]
    kw = {"temperature": 0.1, "exclude_self": True}
    assert supcon(good, good, y, y, **kw) < supcon(bad, bad, y, y, **kw)
    lonely = supcon(good, good, torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]), **kw)
    assert float(lonely) == 0.0  # no anchor has a positive: nothing to learn from


def test_balanced_batch_copes_with_imbalance():
    labels = np.array([0] * 3 + [1] * 500 + [2] * 40)
    idx = balanced_batch(labels, per_class=16, rng=np.random.default_rng(0))
    assert np.bincount(labels[idx]).tolist() == [16, 16, 16]


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread avoids OpenMP spinning on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_contrastive_heads_align_two_modalities(one_thread):
    torch.manual_seed(0)
    cfg = AlignConfig(dim=16, hidden=64, dropout=0.0)
    xa, ya = _toy_modality([60, 60, 60], 16, seed=1, basis_seed=1)
    xi, yi = _toy_modality([10, 120, 25], 48, seed=2, basis_seed=2, offset=4.0)  # imbalanced
    joint = JointSpace(audio_dim=16, image_dim=48, cfg=cfg)
    opt = torch.optim.Adam(joint.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    ta, ti = torch.from_numpy(xa), torch.from_numpy(xi)

    @torch.no_grad()
    def full_loss():  # floor is ~log(#positives) per anchor, not 0
        za, zi = joint(ta, ti)
        return float(
            cross_modal_supcon(za, torch.from_numpy(ya), zi, torch.from_numpy(yi), temperature=0.1)
        )

    before = full_loss()
    for _ in range(100):
        ia, ii = (balanced_batch(y, per_class=8, rng=rng) for y in (ya, yi))
        za, zi = joint(ta[ia], ti[ii])
        ya_b, yi_b = torch.from_numpy(ya[ia]), torch.from_numpy(yi[ii])
        loss = cross_modal_supcon(za, ya_b, zi, yi_b, temperature=0.1, cross_weight=1.0)
        loss = loss + class_centroid_gap(za, ya_b, zi, yi_b)
        loss = loss + prototype_loss(
            torch.cat([za, zi]), torch.cat([ya_b, yi_b]), joint.prototypes, temperature=0.1
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert full_loss() < before - 2.0
    # fresh samples from the same distributions: audio queries rank the image gallery
    qa, qya = _toy_modality([40, 40, 40], 16, seed=3, basis_seed=1)
    gi, gyi = _toy_modality([10, 120, 25], 48, seed=4, basis_seed=2, offset=4.0)
    with torch.no_grad():
        za, zi = joint(torch.from_numpy(qa), torch.from_numpy(gi))
    r = retrieval_metrics(za.numpy(), qya, zi.numpy(), gyi)
    assert r["balanced"]["top1"] > 0.9 and r["balanced"]["mAP"] > 0.85  # chance: 1/3
    back = retrieval_metrics(zi.numpy(), gyi, za.numpy(), qya)
    assert back["balanced"]["top1"] > 0.9
    # emotion, not modality, organises the space: class centroids of the two modalities coincide
    for c in range(3):
        ca, ci = za[qya == c].mean(0), zi[gyi == c].mean(0)
        assert float(torch.nn.functional.cosine_similarity(ca, ci, dim=0)) > 0.9


# ---- stage tests ---------------------------------------------------------------------------


def _images(folder, n_per=4):
    items = []
    for c, emo in enumerate(EMOTIONS):
        for i in range(n_per):
            arr = np.zeros((40, 56, 3), np.uint8)
            arr[..., c] = 40 + 35 * i
            path = folder / f"{emo}_{i}.png"
            Image.fromarray(arr).save(path)
            items.append(ArtItem(str(path), emo, emo, f"{emo}{i}", "test", "train"))
    return items


def test_extract_image_features_reports_broken_and_caches(tmp_path):
    items = _images(tmp_path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    items.append(ArtItem(str(broken), "sad", "sad", "b", "test", "test"))
    items.append(ArtItem(str(tmp_path / "angry_0.png"), "", "", "u", "test", ""))  # unlabelled
    write_manifest(items, tmp_path / "run" / "data" / "art_manifest.csv")
    cfg = load_config(overrides=["image.batch_size=8", "image.num_workers=1"])
    m = extract_image_features(cfg, tmp_path / "run")
    assert m["n_features"] == 12 and [f["path"] for f in m["failures"]] == [str(broken)]
    assert m["ceiling"]["nn1"]["balanced"] >= 0.0 and "probe" in m["ceiling"]
    with np.load(tmp_path / "run" / "image" / "features.npz") as z:
        assert z["feats"].shape == (12, 1280) and z["feats"].dtype == np.float32
        assert sorted(set(z["labels"].tolist())) == list(EMOTIONS)
        assert set(z["splits"].tolist()) == {"train"}
    assert json.loads((tmp_path / "run" / "image" / "metrics.json").read_text())["imgs_per_s"] > 0
    again = extract_image_features(cfg, tmp_path / "run")
    assert again["cache_hits"] == 12 and again["computed"] == 0


def _predict_stand_in(model, mels, *, batch_size=64):
    with torch.no_grad():
        x = torch.as_tensor(np.asarray(mels))
        return torch.softmax(model(x), 1).numpy(), model.embed(x).numpy()


def test_audio_embeddings_run_the_classifier_once(tmp_path, monkeypatch):
    from sound2sight.config import config_to_dict
    from sound2sight.io import atomic_torch_save
    from sound2sight.voice import classifier as emotion

    if importlib.util.find_spec("sound2sight.voice.train") is None:  # classifier stage absent
        monkeypatch.setitem(
            sys.modules,
            "sound2sight.voice.train",
            types.SimpleNamespace(predict=_predict_stand_in),
        )
    cfg = load_config(
        overrides=[
            "classifier.width=4",
            "classifier.depth=1",
            "classifier.embed_dim=8",
            "data.workers=1",
            "audio.duration=0.5",
        ]
    )
    model = emotion.build_classifier(cfg.classifier, n_mels=cfg.audio.n_mels)
    run = tmp_path / "run"
    atomic_torch_save(
        {"model": model.state_dict(), "config": config_to_dict(cfg)}, run / "classifier" / "best.pt"
    )
    t = np.arange(8000) / 16000
    items = []
    for i, (emo, split) in enumerate(zip(EMOTIONS * 2, ["train"] * 3 + ["test"] * 3, strict=True)):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, 0.3 * np.sin(2 * np.pi * (150 + 60 * i) * t), 16000)
        items.append(AudioItem(str(path), emo, emo, f"S:{i}", "S", 0, split))
    write_manifest(items, run / "data" / "audio_manifest.csv")
    out = audio_embeddings(cfg, run)
    assert out["embeddings"].shape == (6, 8) and out["probs"].shape == (6, 3)
    np.testing.assert_allclose(out["probs"].sum(1), 1.0, rtol=1e-5)
    assert out["splits"].tolist() == ["train"] * 3 + ["test"] * 3
    monkeypatch.setattr(emotion, "load_classifier", lambda *a, **k: pytest.fail("not cached"))
    np.testing.assert_array_equal(audio_embeddings(cfg, run)["embeddings"], out["embeddings"])


def _toy_run(tmp_path, monkeypatch):
    """A run folder with toy image features and (monkeypatched) toy audio embeddings."""
    run = tmp_path / "run"
    items = _images(tmp_path, n_per=6)
    xi, yi = _toy_modality([6, 6, 6], 1280, seed=5, basis_seed=5)
    splits = np.array(["train", "train", "train", "train", "val", "test"] * 3)
    save_npz(
        run / "image" / "features.npz",
        paths=np.array([it.path for it in items]),
        labels=np.array([EMOTIONS[c] for c in yi]),
        splits=splits,
        feats=xi,
    )
    xa, ya = _toy_modality([30, 30, 60], 32, seed=6, basis_seed=6)
    onehot = np.eye(3, dtype=np.float32)[ya]
    aud = {
        "paths": np.array([f"clip{i}.wav" for i in range(len(ya))]),
        "labels": np.array([EMOTIONS[c] for c in ya]),
        "speakers": np.array([f"S:{i % 10}" for i in range(len(ya))]),
        "splits": np.array((["train"] * 6 + ["val"] * 2 + ["test"] * 2) * 12),
        "probs": 0.8 * onehot + 0.2 / 3,
        "embeddings": xa,
    }
    monkeypatch.setattr(align_mod, "audio_embeddings", lambda cfg, run_dir: aud)
    overrides = [
        "align.epochs=4",
        "align.steps_per_epoch=4",
        "align.batch_per_class=4",
        "align.hidden=32",
        "align.map_points=24",
        "align.patience=10",
    ]
    return run, overrides


def test_train_align_writes_gallery_map_and_metrics(tmp_path, monkeypatch):
    run, overrides = _toy_run(tmp_path, monkeypatch)
    cfg = load_config(overrides=[*overrides, "align.prototype_weight=0.5"])
    m = train_align(cfg, run)
    out = run / "align"
    for name in (
        "best.pt",
        "last.pt",
        "metrics.json",
        "embedding_map.png",
        "train.log",
        "gallery.npz",
    ):
        assert (out / name).is_file(), name
    assert m["n_test_clips"] == 24 and 0.0 <= m["classifier_on_same_clips"]["accuracy"] <= 1.0
    unseen = m["unseen_art"]
    for r in (m["audio_to_image"]["gallery_all"], *unseen["audio_to_image"].values()):
        assert {"top1", "recall", "mAP", "per_class", "balanced"} <= set(r)
    assert unseen["audio_to_image"]["gallery_unseen"]["n_gallery"] == unseen["n_unseen"] > 0
    assert unseen["epochs"] == m["best_epoch"] + 1 and len(m["history"]) == 4
    assert 0.0 < m["classifier_on_same_clips"]["mAP_class_ranking"] <= 1.0
    g = Gallery.load(out / "gallery.npz")
    assert g.embeddings.shape == (18, 128) and g.thumbnails.shape == (18, 64, 64, 3)
    assert g.thumbnails.dtype == np.uint8 and g.thumbnails.max() > 0
    np.testing.assert_allclose(np.linalg.norm(g.embeddings, axis=1), 1.0, rtol=1e-5)
    assert sorted(set(g.labels.tolist())) == list(EMOTIONS)
    joint = load_joint_space(out / "best.pt")
    z = joint.embed_image(torch.from_numpy(np.load(run / "image" / "features.npz")["feats"][:1]))
    hits = NearestArtworks(g)(z[0].detach().numpy(), k=3)
    assert hits[0].path == g.paths[0] and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert Image.open(out / "embedding_map.png").size[0] > 100


def test_train_align_resumes_exactly(tmp_path, monkeypatch):
    run, overrides = _toy_run(tmp_path, monkeypatch)
    cfg = load_config(overrides=[*overrides, "align.map_points=0"])
    shutil.copytree(run, tmp_path / "ref")  # uninterrupted reference on the same inputs
    full = train_align(cfg, tmp_path / "ref")
    calls = {"n": 0}
    real = align_mod._audio_to_image

    def crash_on_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(align_mod, "_audio_to_image", crash_on_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_align(cfg, run)
    monkeypatch.setattr(align_mod, "_audio_to_image", real)
    resumed = train_align(cfg, run)
    assert "resuming align from epoch 2" in (run / "align" / "train.log").read_text()
    assert [h["loss"] for h in resumed["history"]] == pytest.approx(
        [h["loss"] for h in full["history"]]
    )
    a = torch.load(run / "align" / "best.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "ref" / "align" / "best.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k]) for k in a)
