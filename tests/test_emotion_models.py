"""Emotion classifier architectures, the checkpoint loader, and the pure metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sound2sight.config import ClassifierConfig, Config, config_to_dict
from sound2sight.io import atomic_torch_save
from sound2sight.metrics import (
    accuracy,
    classification_report,
    confusion,
    group_accuracy,
    macro_f1,
    per_class_recall,
    plot_confusion,
)
from sound2sight.voice.classifier import ARCHITECTURES, build_classifier, load_classifier

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("n_mels,frames", [(64, 301), (40, 97)])
def test_shapes_and_embed_dims(arch, n_mels, frames):
    torch.manual_seed(0)
    cfg = ClassifierConfig(arch=arch, width=8, depth=3, embed_dim=24)
    model = build_classifier(cfg, n_mels=n_mels).eval()
    mel = torch.randn(3, n_mels, frames)
    logits, emb = model(mel), model.embed(mel)
    assert logits.shape == (3, 3)
    assert emb.shape == (3, 24)
    assert torch.allclose(model.head.out(emb), logits, atol=1e-5)  # embed is the penultimate layer
    assert (emb >= 0).all()


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_variable_length_and_gradients(arch):
    model = build_classifier(ClassifierConfig(arch=arch, width=8), n_mels=64)
    for frames in (120, 301):
        model.zero_grad()
        model(torch.randn(2, 64, frames)).sum().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_default_models_are_small():
    for arch in ARCHITECTURES:
        model = build_classifier(ClassifierConfig(arch=arch), n_mels=64)
        assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_unknown_arch_names_the_choices():
    with pytest.raises(ValueError, match="resnet"):
        build_classifier(ClassifierConfig(arch="transformer"), n_mels=64)


def test_load_classifier_round_trip(tmp_path):
    cfg = Config()
    cfg.classifier.arch, cfg.classifier.width, cfg.audio.n_mels = "crnn", 8, 40
    model = build_classifier(cfg.classifier, n_mels=40).eval()
    atomic_torch_save(
        {"model": model.state_dict(), "config": config_to_dict(cfg)}, tmp_path / "best.pt"
    )
    loaded, audio_cfg = load_classifier(tmp_path / "best.pt")
    assert audio_cfg.n_mels == 40 and not loaded.training
    x = torch.randn(2, 40, 100)
    assert torch.allclose(loaded(x), model(x))


def test_load_classifier_rejects_other_checkpoints(tmp_path):
    atomic_torch_save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a classifier checkpoint"):
        load_classifier(tmp_path / "x.pt")


# ---------------------------------------------------------------- metrics: known answers
def test_metrics_known_answers():
    y = [0, 0, 1, 1, 2, 2, 2, 2]
    p = [0, 1, 1, 1, 2, 2, 0, 2]
    assert accuracy(y, p) == 0.75
    assert confusion(y, p, n_classes=3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 3]]
    assert per_class_recall(y, p, n_classes=3) == [0.5, 1.0, 0.75]
    # F1: class0 P=.5 R=.5 -> .5; class1 P=2/3 R=1 -> .8; class2 P=1 R=.75 -> 6/7
    assert macro_f1(y, p, n_classes=3) == pytest.approx((0.5 + 0.8 + 6 / 7) / 3)
    from sklearn.metrics import f1_score

    assert macro_f1(y, p, n_classes=3) == pytest.approx(f1_score(y, p, average="macro"))
    assert group_accuracy(y, p, list("aabbccdd")) == {"a": 0.5, "b": 1.0, "c": 1.0, "d": 0.5}


def test_perfect_and_empty():
    assert macro_f1([2, 2], [2, 2], n_classes=3) == 1.0
    assert np.isnan(accuracy([], []))
    assert np.isnan(per_class_recall([0], [0], n_classes=2)[1])


def test_report_and_figure(tmp_path):
    rep = classification_report(
        [0, 1, 2, 2], [0, 1, 2, 0], labels=["angry", "happy", "sad"], groups=["x", "x", "y", "y"]
    )
    assert rep["recall"] == {"angry": 1.0, "happy": 1.0, "sad": 0.5}
    assert rep["per_corpus_accuracy"] == {"x": 1.0, "y": 0.5}
    png = plot_confusion(rep["confusion"], labels=rep["labels"], path=tmp_path / "cm.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
