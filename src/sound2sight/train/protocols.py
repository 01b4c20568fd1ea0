"""Evaluation protocols for the speech-emotion classifier.

SI-5 (the headline)
    For each speaker fold k: train on the other folds (with a speaker-disjoint validation
    share of *their* speakers for early stopping), predict fold k.  Accuracy and macro-F1
    are computed once over the pooled out-of-fold predictions of every clip, plus per corpus.
seed (speaker-LEAKING)
    One random stratified 80/20 split of clips.  The same speaker appears on both sides, so
    the number is inflated; it exists only to compare with published figures and is always
    labelled ``leaking``.

Outputs per protocol folder: one run folder per fold (``fold{k}/classifier/...``),
``oof_predictions.csv`` and ``summary.json``.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from sound2sight.config import Config
from sound2sight.datasets.base import AudioItem, check_speaker_disjoint, split_by_speaker
from sound2sight.io import atomic_write_json, atomic_write_text
from sound2sight.labels import EMOTIONS
from sound2sight.metrics import classification_report
from sound2sight.voice.train import load_inputs, train_classifier

__all__ = ["fold_split", "run_si5", "run_seed_protocol", "leaking_split"]

log = logging.getLogger(__name__)


def fold_split(items: list[AudioItem], *, test_fold: int, cfg: Config) -> list[AudioItem]:
    """Copies of ``items`` with ``split`` set: test = ``test_fold``, val = a seeded share
    (``cfg.data.val_fraction``) of the remaining speakers, train = the rest.

    >>> its = [AudioItem(f"{s}{i}.wav", "sad", "sad", s, "c", fold=f)
    ...        for f, s in enumerate("abcde") for i in range(2)]
    >>> sorted({it.split for it in fold_split(its, test_fold=4, cfg=Config())})
    ['test', 'train', 'val']
    """
    out = split_by_speaker(
        copy.deepcopy(items), test_fold=test_fold, val_fraction=cfg.data.val_fraction, seed=cfg.seed
    )
    check_speaker_disjoint(out)
    return out


def leaking_split(
    items: list[AudioItem], *, seed: int, test_size: float = 0.2, val_size: float = 0.1
) -> list[AudioItem]:
    """Random stratified train/val/test split of clips (speakers LEAK across splits)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(items))
    labels = [it.label for it in items]
    rest, test = train_test_split(idx, test_size=test_size, stratify=labels, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_size, stratify=[labels[i] for i in rest], random_state=seed
    )
    out = copy.deepcopy(items)
    for name, part in (("train", train), ("val", val), ("test", test)):
        for i in part:
            out[i].split = name
    return out


def _read_predictions(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _pooled(rows: list[dict]) -> dict:
    y = [EMOTIONS.index(r["label"]) for r in rows]
    p = [EMOTIONS.index(r["pred"]) for r in rows]
    return classification_report(y, p, labels=EMOTIONS, groups=[r["corpus"] for r in rows])


def _write_rows(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    lines = [",".join(rows[0])] + [",".join(str(v) for v in r.values()) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def run_si5(
    cfg: Config,
    out_dir: str | os.PathLike,
    *,
    items: list[AudioItem],
    folds: list[int] | tuple[int, ...] = (0, 1, 2, 3, 4),
    mels: np.ndarray | None = None,
    resume: bool = True,
) -> dict:
    """Speaker-independent cross-validation; pooled out-of-fold metrics.

    Parameters
    ----------
    items : list of AudioItem
        Every clip with its speaker ``fold`` set (``assign_folds``).
    folds : sequence of int
        Folds to hold out (all five for the headline number).
    mels : ndarray (N, n_mels, T) | None
        Log-Mels aligned with ``items``; loaded from the cache when ``None``.
    resume : bool
        A fold whose ``metrics.json`` exists is read back, not retrained.

    Returns
    -------
    dict
        ``pooled`` (classification report with per-corpus accuracy), ``per_fold``,
        ``seconds_per_fold``, ``epochs`` (epochs run per fold).
    """
    out_dir = Path(out_dir)
    if mels is None:
        items, mels = load_inputs(items, cfg)
    if any(it.fold < 0 for it in items):
        raise ValueError("every item needs a speaker fold for SI-5 (see assign_folds)")
    rows, per_fold, seconds, epochs = [], {}, [], []
    for k in folds:
        run = out_dir / f"fold{k}"
        done = run / "classifier" / "metrics.json"
        if resume and done.is_file():
            metrics = json.loads(done.read_text())
            log.info("SI-5 fold %d: reusing %s", k, done)
        else:
            t0 = time.perf_counter()
            log.info("SI-5 fold %d: training %s", k, cfg.classifier.arch)
            metrics = train_classifier(
                cfg,
                run,
                items=fold_split(items, test_fold=k, cfg=cfg),
                mels=mels,
                resume=resume,
                progress=False,
            )
            metrics["seconds"] = time.perf_counter() - t0
        seconds.append(metrics["seconds"])
        epochs.append(metrics["epochs_run"])
        per_fold[k] = {
            "accuracy": metrics["test"]["accuracy"],
            "macro_f1": metrics["test"]["macro_f1"],
            "best_epoch": metrics["best_epoch"],
        }
        rows.extend(_read_predictions(run / "classifier" / "test_predictions.csv"))
        log.info(
            "SI-5 fold %d: acc %.4f macro-F1 %.4f (%.0f s)",
            k,
            per_fold[k]["accuracy"],
            per_fold[k]["macro_f1"],
            metrics["seconds"],
        )
    summary = {
        "protocol": "SI-5 (speaker-independent, pooled out-of-fold)",
        "arch": cfg.classifier.arch,
        "folds": list(folds),
        "pooled": _pooled(rows),
        "per_fold": per_fold,
        "seconds_per_fold": float(np.mean(seconds)),
        "epochs": epochs,
    }
    _write_rows(out_dir / "oof_predictions.csv", rows)
    atomic_write_json(out_dir / "summary.json", summary)
    log.info(
        "SI-5 pooled over folds %s: acc %.4f macro-F1 %.4f",
        list(folds),
        summary["pooled"]["accuracy"],
        summary["pooled"]["macro_f1"],
    )
    return summary


def run_seed_protocol(
    cfg: Config,
    out_dir: str | os.PathLike,
    *,
    items: list[AudioItem],
    mels: np.ndarray | None = None,
    resume: bool = True,
) -> dict:
    """Random stratified 80/20 split (10 % of the 80 for early stopping); LEAKS speakers.

    Returns
    -------
    dict
        ``protocol`` (says ``leaking``), ``test`` (classification report), ``seconds``.
    """
    out_dir = Path(out_dir)
    if mels is None:
        items, mels = load_inputs(items, cfg)
    t0 = time.perf_counter()
    metrics = train_classifier(
        cfg,
        out_dir,
        items=leaking_split(items, seed=cfg.seed),
        mels=mels,
        resume=resume,
        progress=False,
    )
    summary = {
        "protocol": "seed: random stratified 80/20 split, speaker-LEAKING",
        "leaking": True,
        "arch": cfg.classifier.arch,
        "test": metrics["test"],
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_json(out_dir / "summary.json", summary)
    log.info(
        "seed protocol (LEAKING): acc %.4f macro-F1 %.4f",
        summary["test"]["accuracy"],
        summary["test"]["macro_f1"],
    )
    return summary
