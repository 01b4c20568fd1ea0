"""Frozen vs lightly tuned audio encoder under the shared-space loss, on one SI fold.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/align_tuning.py --run runs/bench-retrieval/fold0

``--run`` is a fold directory written by ``benchmarks/retrieval.py`` (it holds the
classifier, the audio manifest, ``align/audio_embeddings.npz`` and ``image/features.npz``).
Three arms train the projection heads with the stage's own loss, batches and schedule
(:func:`sound2sight.train.align.fit_epoch`) and differ only in what the audio side may change:

- ``frozen``: the classifier's embeddings are fixed inputs (what ``train_align`` ships);
- ``embedding layer``: the classifier's last layer (pooled features -> embedding) trains
  with the heads at the heads' learning rate;
- ``whole encoder``: every classifier weight trains at ``--encoder-lr-mult`` x that rate
  (inputs are the cached log-Mels).

Each arm keeps the epoch with the best validation score (mean of top-1 and mAP of the
validation speakers against the gallery, as ``train_align`` does) and reports test top-1
and mAP against every labelled painting.  Writes ``benchmarks/results/align_tuning.json``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sound2sight.config import load_config
from sound2sight.io import atomic_write_json
from sound2sight.retrieval import retrieval_metrics

log = logging.getLogger("sound2sight.benchmarks.align_tuning")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "align_tuning.json"


class _Embed(nn.Module):
    """A trainable copy of the classifier's trunk + embedding layer (log-Mels in)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.model.embed(mel)


def load_fold(run: Path, cfg) -> dict:
    """Manifest arrays, log-Mels, pooled trunk features, image features and labels of a fold."""
    from sound2sight.cache import build_mel_cache
    from sound2sight.datasets.base import AudioItem, read_manifest
    from sound2sight.labels import EMOTIONS
    from sound2sight.train.align import audio_embeddings
    from sound2sight.train.common import cache_root
    from sound2sight.train.features import load_npz
    from sound2sight.voice.classifier import load_classifier

    aud = audio_embeddings(cfg, run)
    model, audio_cfg = load_classifier(run / "classifier" / "best.pt")
    model.eval()
    items = read_manifest(run / "data" / "audio_manifest.csv", AudioItem)
    batch, cache = build_mel_cache([it.path for it in items], audio_cfg, cache_root(cfg))
    ok = [it.path for it, key in zip(items, batch.keys, strict=True) if key is not None]
    if ok != aud["paths"].tolist():
        raise SystemExit(f"{run}: cached embeddings and the manifest disagree; rerun retrieval.py")
    mels = np.asarray(batch.load(cache), dtype=np.float32)  # (N, n_mels, T)
    with torch.no_grad():
        pooled = torch.cat(
            [model.features(torch.from_numpy(mels[i : i + 256])) for i in range(0, len(mels), 256)]
        ).numpy()
    feats = load_npz(run / "image" / "features.npz")
    lab = feats["labels"] != ""

    def index(labels) -> np.ndarray:
        return np.array([EMOTIONS.index(str(x)) for x in labels], dtype=np.int64)

    return {
        "model": model,
        "splits": aud["splits"],
        "ay": index(aud["labels"]),
        "embeddings": aud["embeddings"],
        "pooled": pooled,
        "mels": mels,
        "image": feats["feats"][lab],
        "iy": index(feats["labels"][lab]),
    }


def run_arm(cfg, fold: dict, arm: str, *, epochs: int, encoder_lr_mult: float) -> dict:
    """Train heads (and the arm's encoder part) for ``epochs``; test at the best val epoch."""
    from sound2sight.train.align import fit_epoch, new_heads
    from sound2sight.train.common import seed_everything

    dev = torch.device("cpu")
    sp, ay = fold["splits"], fold["ay"]
    tr, val, te = sp == "train", sp == "val", sp == "test"
    seed_everything(cfg.seed)
    joint, opt, sched = new_heads(cfg, dev, fold["embeddings"][tr], fold["image"])
    x = fold["embeddings"]
    if arm != "frozen":
        if arm == "embedding layer":
            enc, x, mult = copy.deepcopy(fold["model"].head.embedding), fold["pooled"], 1.0
        else:
            enc, x, mult = _Embed(copy.deepcopy(fold["model"])), fold["mels"], encoder_lr_mult
        joint.audio = nn.Sequential(enc, joint.audio)
        enc_params = {id(p) for p in enc.parameters()}
        a = cfg.align
        opt = torch.optim.AdamW(
            [
                {"params": [p for p in joint.parameters() if id(p) not in enc_params]},
                {"params": list(enc.parameters()), "lr": a.lr * mult},
            ],
            lr=a.lr,
            weight_decay=a.weight_decay,
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(1, a.epochs * a.steps_per_epoch)
        )

    @torch.no_grad()
    def embed(mask):
        xs = torch.from_numpy(x[mask])
        return torch.cat([joint.embed_audio(xs[i : i + 256]) for i in range(0, len(xs), 256)])

    best: dict = {"score": -1.0}
    t0 = time.perf_counter()
    for epoch in range(epochs):
        fit_epoch(cfg, joint, opt, sched, epoch, (x[tr], ay[tr]), (fold["image"], fold["iy"]), dev)
        joint.eval()
        with torch.no_grad():
            zi = joint.embed_image(torch.from_numpy(fold["image"])).numpy()
        v = retrieval_metrics(embed(val).numpy(), ay[val], zi, fold["iy"])
        score = 0.5 * (v["top1"] + v["mAP"])
        if score > best["score"]:
            r = retrieval_metrics(embed(te).numpy(), ay[te], zi, fold["iy"])
            best = {
                "score": score,
                "epoch": epoch,
                "val_top1": v["top1"],
                "test_top1": r["top1"],
                "test_balanced_top1": r["balanced"]["top1"],
                "test_mAP": r["mAP"],
            }
        log.info("%s epoch %d: val top-1 %.3f mAP %.3f", arm, epoch, v["top1"], v["mAP"])
    best["seconds"] = round(time.perf_counter() - t0, 1)
    return best


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--run",
        type=Path,
        action="append",
        help="fold directory of benchmarks/retrieval.py (repeatable; default fold0)",
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--encoder-lr-mult", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.run = args.run or [REPO / "runs" / "bench-retrieval" / "fold0"]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    results = {}
    for run in args.run:
        cfg = load_config(run / "config.yaml")
        fold = load_fold(run, cfg)
        results[str(run)] = {
            arm: run_arm(cfg, fold, arm, epochs=args.epochs, encoder_lr_mult=args.encoder_lr_mult)
            for arm in ("frozen", "embedding layer", "whole encoder")
        }
        results[str(run)]["n_test_clips"] = int((fold["splits"] == "test").sum())
        del fold
    print(
        f"\n  {'fold':<34}{'audio side':<18}{'best ep':>8}{'top-1':>8}{'bal.':>7}{'mAP':>7}{'seconds':>9}"
    )
    for run, arms in results.items():
        for arm, r in arms.items():
            if arm == "n_test_clips":
                continue
            print(
                f"  {run:<34}{arm:<18}{r['epoch']:>8}{r['test_top1']:>8.3f}"
                f"{r['test_balanced_top1']:>7.3f}{r['test_mAP']:>7.3f}{r['seconds']:>9.0f}"
            )
    out = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": results}
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
