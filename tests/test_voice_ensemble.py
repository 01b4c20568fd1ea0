"""classifier.ensemble: heads of one recipe trained with several seeds, probabilities averaged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sound2sight.config import ClassifierConfig, ConfigError, load_config
from test_speaker import _small_head_config, _speaker_shifted_features


def _heads(n: int, cfg: ClassifierConfig):
    from sound2sight.voice.model import WhisperHeadClassifier

    torch.manual_seed(0)
    heads = [WhisperHeadClassifier(cfg, groups=[(5, 384)]) for _ in range(n)]
    for i, h in enumerate(heads):
        h.temperature.fill_(0.5 + i)  # each keeps its own calibration
    return heads


def test_ensemble_probabilities_are_the_mean_of_its_heads():
    from sound2sight.voice.model import HeadEnsemble
    from sound2sight.voice.train import predict

    cfg = ClassifierConfig(ensemble=3, embed_dim=16, attn_hidden=8)
    heads = _heads(3, cfg)
    ens = HeadEnsemble(heads)
    x = np.random.default_rng(0).normal(0, 1, (7, 5, 9, 384)).astype(np.float32)
    probs, emb = predict(ens, x)
    each = [predict(h, x) for h in heads]
    np.testing.assert_allclose(probs, np.mean([p for p, _ in each], axis=0), atol=1e-6)
    np.testing.assert_allclose(emb, each[0][1], atol=1e-6)  # the shared space reads head 0
    assert not np.allclose(each[0][0], each[1][0])  # the heads do differ


def test_ensemble_builds_and_reloads_from_its_config():
    from sound2sight.voice.classifier import build_classifier
    from sound2sight.voice.model import HeadEnsemble, WhisperHeadClassifier

    cfg = ClassifierConfig(ensemble=2, embed_dim=16, attn_hidden=8)
    ens = build_classifier(cfg)
    assert isinstance(ens, HeadEnsemble) and len(ens.members) == 2
    assert isinstance(build_classifier(ClassifierConfig()), WhisperHeadClassifier)
    again = build_classifier(cfg)
    again.load_state_dict(ens.state_dict())  # strict: the same keys (members.0..., members.1...)
    x = torch.randn(2, 5, 6, 384)
    assert torch.allclose(again.eval()(x), ens.eval()(x))


def test_ensemble_config_is_checked():
    with pytest.raises(ConfigError, match="classifier.ensemble"):
        load_config(overrides=["classifier.ensemble=0"])
    with pytest.raises(ConfigError, match="only whisper heads"):
        load_config(overrides=["classifier.ensemble=3", "classifier.arch=resnet"])


@pytest.mark.usefixtures("one_thread")
def test_training_an_ensemble_trains_each_head_once_and_resumes(tmp_path):
    from sound2sight.voice.classifier import load_classifier
    from sound2sight.voice.model import HeadEnsemble
    from sound2sight.voice.train import train_classifier

    items, feats = _speaker_shifted_features()
    cfg = _small_head_config(6, speaker_norm=True, ensemble=2)
    run = tmp_path / "run"
    m = train_classifier(cfg, run, items=items, mels=feats, progress=False)
    out = run / "classifier"
    assert m["ensemble"] == 2 and [h["seed"] for h in m["members"]] == [cfg.seed, cfg.seed + 1]
    assert json.loads((out / "metrics.json").read_text())["test"] == m["test"]
    model, _ = load_classifier(out / "best.pt")
    assert isinstance(model, HeadEnsemble) and len(model.members) == 2
    a, b = (h.state_dict() for h in model.members)
    assert not torch.equal(a["head.out.weight"], b["head.out.weight"])  # two seeds
    assert torch.equal(a["population_mean"], b["population_mean"])  # one split: one statistic
    assert m["test"]["accuracy"] >= 0.8, m["test"]
    stamp = (out / "member0" / "best.pt").stat().st_mtime_ns
    again = train_classifier(cfg, run, items=items, mels=feats, progress=False)  # resume
    assert (out / "member0" / "best.pt").stat().st_mtime_ns == stamp  # kept, not retrained
    assert again["test"] == m["test"]
    from sound2sight.report import trained_on

    assert "2 whisper heads (one per seed" in trained_on(run)  # the report says what it is
