"""Classifier training loop, resume, augmentation and protocols on tiny learnable data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sound2sight.config import Config, TrainConfig
from sound2sight.datasets.base import AudioItem, check_speaker_disjoint
from sound2sight.labels import EMOTIONS
from sound2sight.train.protocols import fold_split, leaking_split, run_seed_protocol, run_si5
from sound2sight.voice.augment import augment
from sound2sight.voice.classifier import load_classifier
from sound2sight.voice.train import class_weights, predict, train_classifier

N_MELS, FRAMES = 24, 40


pytestmark = pytest.mark.usefixtures("one_thread")


def band_data(n_per_class: int = 24, *, seed: int = 0, n_speakers: int = 10):
    """Mels where class k has extra energy in band block k (a known, learnable answer)."""
    rng = np.random.default_rng(seed)
    items, mels = [], []
    for i in range(n_per_class * len(EMOTIONS)):
        k = i % len(EMOTIONS)
        mel = rng.normal(0, 1, (N_MELS, FRAMES)).astype(np.float32)
        mel[k * 8 : (k + 1) * 8] += 3.0
        spk = i % n_speakers
        items.append(
            AudioItem(
                f"/x/{i}.wav",
                EMOTIONS[k],
                EMOTIONS[k],
                f"c:{spk}",
                "A" if spk % 2 else "B",
                fold=spk % 5,
            )
        )
        mels.append(mel)
    return items, np.stack(mels)  # (N, N_MELS, FRAMES)


def tiny_cfg(**train) -> Config:
    cfg = Config()
    cfg.classifier.arch = "resnet"  # these tests train the log-Mel CNNs on synthetic Mels
    cfg.classifier.width, cfg.classifier.depth, cfg.classifier.embed_dim = 8, 2, 16
    cfg.audio.n_mels = N_MELS
    cfg.train.batch_size, cfg.train.lr, cfg.train.time_mask = 8, 1e-2, 5
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def test_train_learns_writes_everything_and_loads(tmp_path):
    items, mels = band_data()
    items = fold_split(items, test_fold=0, cfg=Config())
    metrics = train_classifier(tiny_cfg(epochs=2), tmp_path, items=items, mels=mels, progress=False)
    out = tmp_path / "classifier"
    for name in (
        "best.pt",
        "last.pt",
        "metrics.json",
        "train.log",
        "confusion.png",
        "curves.png",
        "test_predictions.csv",
    ):
        assert (out / name).is_file(), name
    assert (tmp_path / "config.yaml").is_file()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["accuracy"] == metrics["test"]["accuracy"] > 0.6  # chance is 1/3
    assert set(saved["test"]["per_corpus_accuracy"]) <= {"A", "B"}
    assert set(saved["test"]["recall"]) == set(EMOTIONS)
    model, audio_cfg = load_classifier(out / "best.pt")
    assert audio_cfg.n_mels == N_MELS
    probs, emb = predict(model, mels[:5], batch_size=2)
    assert probs.shape == (5, 3) and emb.shape == (5, 16)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)


class _Killed(Exception):
    pass


def _kill_after_first(epoch: int, val_f1: float) -> None:
    if epoch == 1:
        raise _Killed


def test_resume_continues_epoch_count_and_matches(tmp_path):
    items, mels = band_data(12)
    items = fold_split(items, test_fold=0, cfg=Config())
    cfg = tiny_cfg(epochs=2, patience=99)
    kw = dict(items=items, mels=mels, progress=False)
    with pytest.raises(_Killed):  # the process "dies" right after epoch 1 was checkpointed
        train_classifier(cfg, tmp_path / "a", report=_kill_after_first, **kw)
    state = torch.load(tmp_path / "a" / "classifier" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and isinstance(state["rng"]["torch"], torch.Tensor)
    resumed = train_classifier(cfg, tmp_path / "a", **kw)
    assert resumed["epochs_run"] == 2
    log = (tmp_path / "a" / "classifier" / "train.log").read_text()
    assert "resumed from" in log and "epoch 2/2" in log
    straight = train_classifier(cfg, tmp_path / "b", **kw)
    last_a = torch.load(tmp_path / "a" / "classifier" / "last.pt", weights_only=True)
    last_b = torch.load(tmp_path / "b" / "classifier" / "last.pt", weights_only=True)
    assert last_a["history"][1]["train_loss"] == pytest.approx(last_b["history"][1]["train_loss"])
    assert resumed["test"]["accuracy"] == pytest.approx(straight["test"]["accuracy"])


def test_early_stopping_respects_patience(tmp_path):
    items, mels = band_data(6)
    items = fold_split(items, test_fold=0, cfg=Config())
    m = train_classifier(
        tiny_cfg(epochs=6, patience=1, lr=0.0), tmp_path, items=items, mels=mels, progress=False
    )
    assert m["epochs_run"] < 6


def test_class_weights_sad_twice():
    w = class_weights(np.array([0, 1, 2, 2]), n_classes=3)
    assert w[0] == pytest.approx(2 * w[2])
    assert float(w.mean()) == pytest.approx(1.0)


def test_augment_is_seeded_and_masks():
    x = torch.ones(8, 24, 40)
    cfg = TrainConfig(freq_mask=6, time_mask=10, mixup=0.4, gain_db=5.0, crop_frames=30)
    a, perm, lam = augment(x, cfg, np.random.default_rng(1))
    b, _, _ = augment(x, cfg, np.random.default_rng(1))
    assert torch.equal(a, b) and a.shape == (8, 24, 30)
    assert perm is not None and 0.5 <= lam <= 1.0
    off = TrainConfig(spec_augment=False)
    assert torch.equal(augment(x, off, np.random.default_rng(0))[0], x)


def test_protocols(tmp_path):
    items, mels = band_data(10)
    for k in range(5):
        split = fold_split(items, test_fold=k, cfg=Config())
        check_speaker_disjoint(split)
        assert {it.fold for it in split if it.split == "test"} == {k}
    cfg = tiny_cfg(epochs=1)
    res = run_si5(cfg, tmp_path / "si5", items=items, mels=mels, folds=[0, 1])
    assert res["pooled"]["n"] == sum(it.fold in (0, 1) for it in items)
    assert (tmp_path / "si5" / "oof_predictions.csv").is_file()
    again = run_si5(cfg, tmp_path / "si5", items=items, mels=mels, folds=[0, 1])  # reuses folds
    assert again["pooled"] == res["pooled"]
    leak = leaking_split(items, seed=0)
    assert sum(it.split == "test" for it in leak) == pytest.approx(0.2 * len(items), abs=1)
    seed = run_seed_protocol(cfg, tmp_path / "seed", items=items, mels=mels)
    assert seed["leaking"] is True and seed["test"]["n"] == 6
