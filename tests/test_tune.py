"""Optuna tuning on tiny data: trials run, the study persists, the test fold stays out."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from sound2sight.config import Config
from sound2sight.datasets.base import AudioItem
from sound2sight.labels import EMOTIONS
from sound2sight.voice.tune import suggest_config, tune

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n: int = 30):
    rng = np.random.default_rng(0)
    items, mels = [], []
    for i in range(n):
        k = i % 3
        mel = rng.normal(0, 1, (16, 24)).astype(np.float32)
        mel[k * 5 : (k + 1) * 5] += 3.0
        items.append(
            AudioItem(f"/x/{i}.wav", EMOTIONS[k], EMOTIONS[k], f"s{i % 10}", "c", fold=i % 5)
        )
        mels.append(mel)
    return items, np.stack(mels)


def test_tune_runs_persists_and_excludes_test_fold(tmp_path, monkeypatch):
    import sound2sight.voice.tune as tune_mod

    seen = []
    real = tune_mod.train_classifier

    def spy(cfg, run_dir, *, items, **kw):
        seen.append({it.fold for it in items})
        return real(cfg, run_dir, items=items, **kw)

    monkeypatch.setattr(tune_mod, "train_classifier", spy)
    cfg = Config()
    cfg.classifier.arch = "resnet"  # the CNN search space, on synthetic log-Mels
    cfg.audio.n_mels, cfg.tune.epochs, cfg.train.batch_size = 16, 1, 8
    items, mels = _data()
    res = tune(cfg, tmp_path, n_trials=2, items=items, mels=mels)
    assert res["n_trials"] == 2 and res["n_complete"] + res["n_pruned"] == 2
    assert all(cfg.data.test_fold not in folds for folds in seen)
    assert (tmp_path / "tune" / "study.db").is_file()
    assert (tmp_path / "tune" / "history.png").is_file()
    saved = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert saved["best_params"].keys() >= {"lr", "dropout", "width", "depth", "arch"}
    again = tune(cfg, tmp_path, n_trials=1, items=items, mels=mels)  # continues the study
    assert again["n_trials"] == 3


def test_suggest_config_is_a_copy():
    base = Config()
    base.classifier.arch = "resnet"
    trial = optuna.trial.FixedTrial(
        {
            "arch": "crnn",
            "lr": 1e-3,
            "dropout": 0.1,
            "width": 12,
            "depth": 3,
            "freq_mask": 0,
            "time_mask": 0,
            "mixup": 0.2,
        }
    )
    cfg = suggest_config(trial, base)
    assert cfg.classifier.arch == "crnn" and not cfg.train.spec_augment
    assert base.classifier.width != 12 or base.classifier.arch != "crnn"
