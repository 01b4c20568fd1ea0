"""Train the speech-emotion classifier on cached log-Mels; single process or DDP.

Reads ``run_dir/data/audio_manifest.csv`` (rows with ``split`` train/val/test), trains on
``train``, early-stops on the speaker-disjoint ``val`` macro-F1, and evaluates ``best.pt``
on ``test``.  Writes to ``run_dir/classifier/``: ``best.pt``, ``last.pt`` (resumed from),
``metrics.json``, ``test_predictions.csv``, ``confusion.png``, ``curves.png``, ``train.log``.

Command line (``WORLD_SIZE`` from torchrun switches on DistributedDataParallel, gloo on CPU)::

    python -m sound2sight.voice.train --run runs/x --set train.epochs=10
    torchrun --nproc_per_node=2 -m sound2sight.voice.train --run-dir runs/x
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, TensorDataset
from tqdm.auto import tqdm

from sound2sight.cache import build_mel_cache
from sound2sight.config import Config, load_config
from sound2sight.datasets.base import AudioItem, read_manifest
from sound2sight.io import atomic_torch_save, atomic_write_json, atomic_write_text
from sound2sight.labels import EMOTIONS
from sound2sight.metrics import classification_report, macro_f1, plot_confusion, plot_history
from sound2sight.train.common import (
    Checkpointer,
    attach_log_file,
    cache_root,
    resolve_device,
    seed_everything,
    stage_dir,
)
from sound2sight.voice.augment import augment
from sound2sight.voice.classifier import build_classifier

__all__ = ["train_classifier", "predict", "load_mels", "load_inputs", "class_weights", "main"]

log = logging.getLogger(__name__)


def load_mels(items: list[AudioItem], cfg: Config) -> tuple[list[AudioItem], np.ndarray]:
    """Cached log-Mels of ``items`` (computed on a miss); rows whose audio failed are dropped.

    Returns
    -------
    (items_ok, mels)
        ``mels`` has shape ``(len(items_ok), n_mels, frames)``, float32.
    """
    batch, cache = build_mel_cache(
        [it.path for it in items], cfg.audio, cache_root(cfg), workers=cfg.data.workers or None
    )
    ok = [it for it, k in zip(items, batch.keys, strict=True) if k is not None]
    log.info(
        "log-Mels: %d clips (%d cache hits, %d computed, %d failed) in %.1f s",
        len(ok),
        batch.hits,
        batch.misses,
        len(batch.failures),
        batch.seconds,
    )
    return ok, batch.load(cache)


def load_inputs(
    items: list[AudioItem], cfg: Config, *, progress: bool = True
) -> tuple[list[AudioItem], np.ndarray]:
    """What ``cfg.classifier.arch`` trains on: cached voice features (``whisper``,
    ``(N, layers, frames, channels)`` float16) or cached log-Mels (CNNs)."""
    if cfg.classifier.arch == "whisper":
        from sound2sight.voice.cache import load_voice_features

        return load_voice_features(items, cfg, progress=progress)
    return load_mels(items, cfg)


def class_weights(y: np.ndarray, *, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights with mean 1 (absent classes get weight 0).

    >>> class_weights(np.array([0, 1, 2, 2]), n_classes=3).tolist()
    [1.2000000476837158, 1.2000000476837158, 0.6000000238418579]
    """
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)


@torch.no_grad()
def predict(
    model: torch.nn.Module, mels: np.ndarray | torch.Tensor, *, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities ``(N, n_classes)`` and embeddings ``(N, embed_dim)``.

    >>> from sound2sight.config import ClassifierConfig
    >>> m = build_classifier(ClassifierConfig(arch="resnet", width=8, embed_dim=16), n_mels=32)
    >>> p, e = predict(m, np.zeros((5, 32, 80), np.float32), batch_size=2)
    >>> p.shape, e.shape
    ((5, 3), (5, 16))
    """
    model = getattr(model, "module", model)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    probs, embs = [], []
    for i in range(0, len(mels), batch_size):
        x = torch.as_tensor(np.asarray(mels[i : i + batch_size]), dtype=torch.float32).to(device)
        logits, emb = model.logits_and_embedding(x)  # (b, n_classes), (b, embed_dim)
        t = getattr(model, "temperature", None)  # fitted on validation speakers, else 1
        logits = logits / (t if t is not None else 1.0)
        probs.append(torch.softmax(logits, dim=1).cpu())
        embs.append(emb.cpu())
    model.train(was_training)
    if not probs:
        return np.zeros((0, len(EMOTIONS)), np.float32), np.zeros((0, 0), np.float32)
    return torch.cat(probs).numpy(), torch.cat(embs).numpy()


def _write_predictions(path: Path, items: list[AudioItem], probs: np.ndarray) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "corpus", "speaker", "label", "pred", *[f"p_{e}" for e in EMOTIONS]])
    for it, p in zip(items, probs, strict=True):
        w.writerow(
            [
                it.path,
                it.corpus,
                it.speaker,
                it.label,
                EMOTIONS[int(p.argmax())],
                *[f"{v:.5f}" for v in p],
            ]
        )
    atomic_write_text(path, buf.getvalue())


def _drop_frames(x: torch.Tensor, tcfg, rng: np.random.Generator) -> torch.Tensor:
    """Voice features ``(B, L, T, C)``: zero one random run of up to ``time_mask // 4``
    frames per clip (time masking after the encoder; a zeroed frame counts as padding).

    Never masks a clip's first frame, so no clip loses every frame.
    """
    width = tcfg.time_mask // 4 if tcfg.spec_augment else 0
    if width <= 0 or x.shape[2] < 3:
        return x
    x = x.clone()
    for i in range(x.shape[0]):
        w = int(rng.integers(0, width + 1))
        start = int(rng.integers(1, max(x.shape[2] - w, 2)))
        x[i, :, start : start + w] = 0
    return x


@torch.no_grad()
def _logits(model: torch.nn.Module, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    out = [
        model(torch.as_tensor(np.asarray(x[i : i + batch_size]), dtype=torch.float32).to(device))
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, len(EMOTIONS)), np.float32)


def _calibrate(model, x: np.ndarray, y: np.ndarray, va: np.ndarray, te: np.ndarray) -> dict:
    """Fit the softmax temperature on the validation speakers; ECE before/after on both."""
    from sound2sight.voice.calibration import expected_calibration_error, fit_temperature, softmax

    model.temperature.fill_(1.0)
    lv = _logits(model, x[va])
    t = fit_temperature(lv, y[va])
    out = {"temperature": t}
    for name, idx in (("val", va), ("test", te)):
        if len(idx) == 0:
            continue
        logits = lv if name == "val" else _logits(model, x[idx])
        out[f"ece_{name}_before"] = expected_calibration_error(softmax(logits), y[idx])
        out[f"ece_{name}_after"] = expected_calibration_error(
            softmax(logits, temperature=t), y[idx]
        )
    model.temperature.fill_(t)
    log.info("calibration: temperature %.3f, %s", t, {k: round(v, 4) for k, v in out.items()})
    return out


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np_state[1].astype(np.int64))}


def train_classifier(
    cfg: Config,
    run_dir: str | os.PathLike,
    *,
    items: list[AudioItem] | None = None,
    mels: np.ndarray | None = None,
    resume: bool = True,
    progress: bool = True,
    report=None,
) -> dict:
    """Train, early-stop on validation macro-F1, evaluate the best epoch on the test split.

    Parameters
    ----------
    cfg : Config
        ``classifier``, ``train``, ``audio`` and ``seed`` are used.
    run_dir : path-like
        Outputs go to ``run_dir/classifier/``.
    items : list of AudioItem | None
        Rows with ``split`` set; default: ``run_dir/data/audio_manifest.csv``.
    mels : ndarray (N, n_mels, T) | None
        Log-Mels aligned with ``items`` (skips the cache lookup).
    resume : bool
        Continue from ``last.pt`` when present.
    report : callable (epoch, val_macro_f1) -> None | None
        Called after each epoch (Optuna pruning raises from inside it).

    Returns
    -------
    dict
        What ``metrics.json`` holds: ``test`` (classification report), ``val`` best,
        ``best_epoch``, ``epochs_run``, ``seconds``.
    """
    rank, world = _dist_info()
    is_main = rank == 0
    out = stage_dir(run_dir, "classifier", cfg if is_main else None)
    handler = attach_log_file(out / "train.log") if is_main else None
    try:
        if cfg.classifier.ensemble > 1:
            if world > 1:
                raise ValueError(
                    f"classifier.ensemble={cfg.classifier.ensemble}: the heads are trained one "
                    "after another; run without torchrun"
                )
            return _train_ensemble(cfg, Path(run_dir), out, items, mels, resume, progress, report)
        return _train(
            cfg, Path(run_dir), out, items, mels, resume, progress and is_main, report, rank, world
        )
    finally:
        if handler is not None:
            logging.getLogger("sound2sight").removeHandler(handler)
            handler.close()


def _score_test(model, x, y_all, te, items, out: Path, *, name: str) -> dict:
    """The classification report on the test rows ``te`` (per corpus too); writes
    ``test_predictions.csv`` and ``confusion.png`` (titled ``name``) into ``out``."""
    probs, _ = predict(model, x[te])
    test_items = [items[i] for i in te]
    report = classification_report(
        y_all[te], probs.argmax(1), labels=EMOTIONS, groups=[it.corpus for it in test_items]
    )
    _write_predictions(out / "test_predictions.csv", test_items, probs)
    plot_confusion(
        report["confusion"],
        labels=EMOTIONS,
        path=out / "confusion.png",
        title=f"{name}: test acc {report['accuracy']:.3f}",
    )
    return report


def _train_ensemble(cfg, run_dir, out, items, mels, resume, progress, report) -> dict:
    """``classifier.ensemble`` heads trained one after another with seeds ``seed``,
    ``seed + 1``, ... on one split, each in ``out/member<k>/`` (on resume a finished head is
    kept as it is), then the :class:`~sound2sight.voice.model.HeadEnsemble` written as
    ``out/best.pt`` and scored on the validation and test speakers like a single head."""
    import copy
    import json

    from sound2sight.voice.classifier import load_classifier
    from sound2sight.voice.model import HeadEnsemble

    t_start = time.perf_counter()
    if items is None:
        items = read_manifest(run_dir / "data" / "audio_manifest.csv", AudioItem)
    if mels is None:
        items, mels = load_inputs(items, cfg, progress=progress)
    n = cfg.classifier.ensemble
    heads, runs = [], []
    for k in range(n):
        mcfg = copy.deepcopy(cfg)
        mcfg.classifier.ensemble, mcfg.seed = 1, cfg.seed + k
        mout = out / f"member{k}"
        if resume and (mout / "metrics.json").is_file() and (mout / "best.pt").is_file():
            log.info("ensemble: head %d of %d (seed %d) already trained", k + 1, n, mcfg.seed)
            m = json.loads((mout / "metrics.json").read_text(encoding="utf-8"))
        else:
            log.info("ensemble: training head %d of %d (seed %d)", k + 1, n, mcfg.seed)
            mout.mkdir(parents=True, exist_ok=True)
            first_report = report if k == 0 else None  # Optuna prunes on the first head
            m = _train(mcfg, run_dir, mout, items, mels, resume, progress, first_report, 0, 1)
        runs.append(m)
        heads.append(load_classifier(mout / "best.pt")[0])
    model = HeadEnsemble(heads).eval()
    y_all = np.array([EMOTIONS.index(it.label) for it in items])
    split = np.array([it.split for it in items])
    va, te = (np.flatnonzero(split == s) for s in ("val", "test"))
    x = mels
    if cfg.classifier.speaker_norm:  # as each head was scored: test speakers' own statistics
        from sound2sight.voice.speaker import standardise_by_speaker

        x = standardise_by_speaker(mels, [it.speaker for it in items])
    Checkpointer(out, cfg).save(
        {"model": model.state_dict(), "epoch": 0, "labels": list(EMOTIONS)}, is_best=True
    )
    metrics = {
        "arch": cfg.classifier.arch,
        "ensemble": n,
        "members": [
            {
                "seed": cfg.seed + k,
                "best_epoch": m["best_epoch"],
                "val": m["val"],
                "test_accuracy": (m.get("test") or {}).get("accuracy"),
            }
            for k, m in enumerate(runs)
        ],
        "best_epoch": [m["best_epoch"] for m in runs],
        "epochs_run": sum(m["epochs_run"] for m in runs),
        "train_clips": runs[0]["train_clips"],
        "seconds": time.perf_counter() - t_start,
        "world_size": 1,
        "val": None,
        "test": None,
        "calibration": [m["calibration"] for m in runs],
    }
    if len(va):
        probs, _ = predict(model, x[va])
        metrics["val"] = {
            "val_macro_f1": macro_f1(y_all[va], probs.argmax(1), n_classes=len(EMOTIONS)),
            "val_accuracy": float((probs.argmax(1) == y_all[va]).mean()),
        }
    if len(te):
        name = f"{n} {cfg.classifier.arch} heads"
        metrics["test"] = _score_test(model, x, y_all, te, items, out, name=name)
        log.info(
            "ensemble of %d: test accuracy %.4f macro-F1 %.4f (heads: %s)",
            n,
            metrics["test"]["accuracy"],
            metrics["test"]["macro_f1"],
            ", ".join(f"{r['test']['accuracy']:.3f}" for r in runs if r.get("test")),
        )
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


def _train(cfg, run_dir, out, items, mels, resume, progress, report, rank, world) -> dict:
    t_start = time.perf_counter()
    is_main = rank == 0
    gen = seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    if items is None:
        items = read_manifest(run_dir / "data" / "audio_manifest.csv", AudioItem)
    whisper = cfg.classifier.arch == "whisper"
    if mels is None:
        items, mels = load_inputs(items, cfg, progress=progress)
    y_all = np.array([EMOTIONS.index(it.label) for it in items])
    split = np.array([it.split for it in items])
    tr, va, te = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
    if len(tr) == 0:
        raise ValueError("no rows with split == 'train' to train on")
    population = None  # speaker_norm: statistics of all training frames (the uncalibrated case)
    calib_views = None  # classifier.calibration_augment: clips read as a calibration would
    if whisper and cfg.classifier.speaker_norm:  # transductive: test speakers' own statistics
        from sound2sight.voice.speaker import shrink_prior, speaker_stats, standardise_by_speaker

        population = speaker_stats(mels[tr])
        speakers = [it.speaker for it in items]  # corpus-prefixed ids
        try:  # how far a later calibration may trust a few recordings of one speaker
            prior = shrink_prior(mels[tr], y_all[tr], [speakers[i] for i in tr])
        except ValueError as err:  # too few clips: calibrations use plain statistics
            prior = None
            log.warning("no shrinkage prior for calibration: %s", err)
        if cfg.classifier.calibration_augment > 0:  # the raw training clips, for their views
            from sound2sight.voice.speaker import CalibrationViews

            calib_views = CalibrationViews(
                mels[tr],
                [speakers[i] for i in tr],
                population,
                share=cfg.classifier.calibration_augment,
            )
        mels = standardise_by_speaker(mels, speakers)
        log.info("features standardised per speaker (%d speakers)", len(set(speakers)))
    log.info(
        "arch=%s train=%d val=%d test=%d world=%d",
        cfg.classifier.arch,
        len(tr),
        len(va),
        len(te),
        world,
    )
    x_tr = torch.as_tensor(mels[tr])  # float16 voice features stay compact until a batch
    y_tr = torch.as_tensor(y_all[tr])
    views = [x_tr]  # + altered-waveform views of the training clips (classifier.wave_augment)
    if whisper and cfg.classifier.wave_augment:
        from sound2sight.voice.cache import training_views

        views += training_views(
            [items[i] for i in tr],
            x_tr,
            cfg,
            progress=progress,
            speaker_norm=population is not None,
        )
    model = build_classifier(cfg.classifier, n_mels=0 if whisper else mels.shape[1]).to(device)
    if population is not None:
        model.population_mean.copy_(torch.from_numpy(population.mean))
        model.population_std.copy_(torch.from_numpy(population.std))
        if prior is not None:
            model.prior_emotion.copy_(torch.from_numpy(prior.emotion))
            model.prior_lexical.copy_(torch.from_numpy(prior.lexical))
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.train.epochs, 1))
    weight = (
        class_weights(y_all[tr], n_classes=len(EMOTIONS))
        if cfg.train.class_weighted
        else torch.ones(len(EMOTIONS))
    ).to(device)
    ckpt = Checkpointer(out, cfg)
    start, best, bad, history = 0, -1.0, 0, []
    state = ckpt.load_last() if resume else None
    if state is not None:
        ckpt.restore(state, model=model, optimizer=opt, scheduler=sched)
        start, best, bad, history = (
            state["epoch"],
            state["best_metric"],
            state["bad_epochs"],
            state["history"],
        )
        torch.set_rng_state(state["rng"]["torch"])
        log.info("resumed from %s at epoch %d (best val macro-F1 %.4f)", ckpt.last, start, best)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    data = TensorDataset(torch.arange(len(tr)), y_tr)  # rows of x_tr (or of one of its views)
    for epoch in range(start, cfg.train.epochs):
        if bad >= cfg.train.patience:
            log.info("early stop: %d epochs without val macro-F1 gain", bad)
            break
        t0 = time.perf_counter()
        if world > 1:
            sampler = DistributedSampler(data, num_replicas=world, rank=rank, seed=cfg.seed)
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(data, generator=torch.Generator().manual_seed(cfg.seed + epoch))
        loader = DataLoader(
            data,
            batch_size=cfg.train.batch_size,
            sampler=sampler,
            num_workers=cfg.train.num_workers,
            generator=gen,
            drop_last=len(data) > cfg.train.batch_size,
        )
        rng = np.random.default_rng([cfg.seed, epoch, rank])
        net.train()
        total, n = 0.0, 0
        for ib, yb in tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, disable=not progress):
            view = int(rng.integers(len(views))) if len(views) > 1 else 0  # one per batch
            xb = views[view][ib].float()
            if calib_views is not None:
                xb = calib_views.apply(xb, ib.numpy(), rng)
            if model.takes_mels:  # SpecAugment / mixup act on log-Mels
                xb, perm, lam = augment(xb, cfg.train, rng)
            else:
                xb, perm, lam = _drop_frames(xb, cfg.train, rng), None, 1.0
            xb, yb = xb.to(device), yb.to(device)
            logits = net(xb)
            loss = F.cross_entropy(logits, yb, weight=weight)
            if perm is not None:
                loss = lam * loss + (1 - lam) * F.cross_entropy(
                    logits, yb[perm.to(device)], weight=weight
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + float(loss.detach()) * len(yb), n + len(yb)
        sched.step()
        rec = {"epoch": epoch + 1, "train_loss": total / max(n, 1), "lr": opt.param_groups[0]["lr"]}
        if len(va):
            probs, _ = predict(model, mels[va])
            p_va = torch.from_numpy(probs).clamp_min(1e-8).log()
            rec["val_loss"] = float(
                F.nll_loss(p_va, torch.as_tensor(y_all[va]), weight=weight.cpu())
            )
            rec["val_macro_f1"] = macro_f1(y_all[va], probs.argmax(1), n_classes=len(EMOTIONS))
            rec["val_accuracy"] = float((probs.argmax(1) == y_all[va]).mean())
        else:  # no validation speakers: the last epoch is the best
            rec.update(val_loss=float("nan"), val_macro_f1=float(epoch), val_accuracy=float("nan"))
        if world > 1:  # BN statistics differ slightly per rank: rank 0 decides for all
            shared = torch.tensor([rec["val_macro_f1"]], dtype=torch.float64)
            dist.broadcast(shared, src=0)
            rec["val_macro_f1"] = float(shared)
        rec["seconds"] = time.perf_counter() - t0
        history.append(rec)
        improved = rec["val_macro_f1"] > best
        best, bad = (rec["val_macro_f1"], 0) if improved else (best, bad + 1)
        log.info(
            "epoch %d/%d loss %.4f val loss %.4f val macro-F1 %.4f acc %.4f (%.0f s)%s",
            epoch + 1,
            cfg.train.epochs,
            rec["train_loss"],
            rec["val_loss"],
            rec["val_macro_f1"],
            rec["val_accuracy"],
            rec["seconds"],
            " *" if improved else "",
        )
        if is_main:
            ckpt.save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "epoch": epoch + 1,
                    "best_metric": best,
                    "bad_epochs": bad,
                    "history": history,
                    "rng": _rng_state(),
                    "labels": list(EMOTIONS),
                },
                is_best=improved,
            )
        if report is not None:
            report(epoch + 1, rec["val_macro_f1"])
    if world > 1:
        dist.barrier()
    best_state = ckpt.load_best()
    model.load_state_dict(best_state["model"])
    calibration = None
    if hasattr(model, "temperature") and len(va) and is_main:  # temperature on val speakers
        calibration = _calibrate(model, mels, y_all, va, te)
        best_state["model"] = model.state_dict()
        atomic_torch_save(best_state, ckpt.best)
    metrics = {
        "arch": cfg.classifier.arch,
        "best_epoch": int(best_state["epoch"]),
        "epochs_run": len(history),
        "val": next((h for h in history if h["epoch"] == best_state["epoch"]), None),
        "train_clips": len(tr),
        "seconds": time.perf_counter() - t_start,
        "world_size": world,
        "test": None,
        "calibration": calibration,
    }
    if len(te) and is_main:
        metrics["test"] = _score_test(model, mels, y_all, te, items, out, name=cfg.classifier.arch)
        log.info(
            "test accuracy %.4f macro-F1 %.4f per corpus %s",
            metrics["test"]["accuracy"],
            metrics["test"]["macro_f1"],
            metrics["test"]["per_corpus_accuracy"],
        )
    if is_main:
        plot_history(history, out / "curves.png")
        atomic_write_json(out / "metrics.json", metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """``python -m sound2sight.voice.train --run DIR [--config YAML] [--set k=v ...]``."""
    ap = argparse.ArgumentParser(description="Train the speech-emotion classifier.")
    ap.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        required=True,
        type=Path,
        help="run directory (spell it --run-dir under torchrun, whose own "
        "--run-path makes --run ambiguous)",
    )
    ap.add_argument("--config", type=Path, default=None, help="YAML of differences")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--no-resume", action="store_true", help="ignore last.pt")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    path = args.config or (
        args.run / "config.yaml" if (args.run / "config.yaml").is_file() else None
    )
    cfg = load_config(path, overrides=args.set)
    metrics = train_classifier(cfg, args.run, resume=not args.no_resume)
    if dist.is_initialized():
        dist.destroy_process_group()
    test = metrics.get("test") or {}
    log.info("done: best epoch %s, test accuracy %s", metrics["best_epoch"], test.get("accuracy"))
    return 0


if __name__ == "__main__":  # run the imported module, so loggers are named sound2sight.*
    from sound2sight.voice import train as _module

    raise SystemExit(_module.main())
