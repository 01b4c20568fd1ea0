"""The shared-space stage (and, re-exported, the image-feature stage it reads).

``train_align`` trains two projection heads on the frozen classifier embeddings and the
frozen EfficientNet-Lite0 features (see :mod:`sound2sight.train.features`) with a
cross-modal supervised contrastive loss over class-balanced batches, stops early on
validation retrieval top-1, and writes ``align/{best,last}.pt``, ``metrics.json``,
``embedding_map.png`` and ``gallery.npz``.

>>> train_align(load_config(), "runs/demo")["audio_to_image"]["gallery_all"]["top1"]  # doctest: +SKIP
0.93
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sound2sight.config import Config
from sound2sight.io import atomic_write_json
from sound2sight.labels import EMOTIONS
from sound2sight.losses import class_centroid_gap, cross_modal_supcon, prototype_loss
from sound2sight.metrics import plot_embedding_map
from sound2sight.models.heads import JointSpace
from sound2sight.retrieval import Gallery, class_ranking_map, retrieval_metrics
from sound2sight.train.common import (
    Checkpointer,
    attach_log_file,
    resolve_device,
    seed_everything,
    stage_dir,
)
from sound2sight.train.features import (
    audio_embeddings,
    extract_image_features,
    load_npz,
    make_thumbnails,
)

__all__ = [
    "extract_image_features",
    "balanced_batch",
    "new_heads",
    "fit_epoch",
    "train_align",
]

log = logging.getLogger(__name__)


def balanced_batch(labels: np.ndarray, *, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices with ``per_class`` draws of every class present in ``labels`` (int (N,)).

    A class with fewer items than ``per_class`` is drawn with replacement, so the
    160 angry paintings weigh as much per step as the 2,500 happy ones.

    >>> balanced_batch(np.array([0, 0, 0, 1]), per_class=2, rng=np.random.default_rng(0)).shape
    (4,)
    """
    out = []
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        out.append(rng.choice(pool, per_class, replace=len(pool) < per_class))
    return np.concatenate(out)


@torch.no_grad()
def _embed(fn, x: np.ndarray, device: torch.device) -> np.ndarray:
    return torch.cat(
        [
            fn(torch.from_numpy(c).to(device)).cpu()
            for c in np.array_split(x, max(1, len(x) // 2048))
        ]
    ).numpy()


def _index(labels: np.ndarray) -> np.ndarray:
    lookup = {e: i for i, e in enumerate(EMOTIONS)}
    return np.array([lookup[str(x)] for x in labels], dtype=np.int64)


@torch.no_grad()
def _audio_to_image(joint, dev, a_x, a_y, i_x, i_y) -> dict:
    za = _embed(joint.embed_audio, a_x, dev)
    return retrieval_metrics(za, a_y, _embed(joint.embed_image, i_x, dev), i_y)


def new_heads(cfg: Config, dev: torch.device, audio_fit: np.ndarray, image_fit: np.ndarray):
    """Fresh heads standardised on the inputs they will fit, with optimiser and schedule.

    Parameters
    ----------
    cfg : Config
        ``cfg.align`` sizes the heads and sets AdamW and the cosine schedule (over
        ``epochs * steps_per_epoch`` steps).
    dev : torch.device
        Where the heads live.
    audio_fit, image_fit : ndarray (Na, Da), (Ni, Di) float32
        Training inputs of each modality (their mean and std become the heads' buffers).

    Returns
    -------
    (JointSpace, torch.optim.AdamW, torch.optim.lr_scheduler.CosineAnnealingLR)

    >>> from sound2sight.config import load_config
    >>> j, opt, sched = new_heads(load_config(), torch.device("cpu"), np.ones((4, 8), np.float32), np.ones((5, 12), np.float32))
    >>> j.embed_audio(torch.zeros(2, 8)).shape
    torch.Size([2, 128])
    """
    a = cfg.align
    joint = JointSpace(audio_dim=audio_fit.shape[1], image_dim=image_fit.shape[1], cfg=a)
    joint.audio.set_input_stats(torch.from_numpy(audio_fit))
    joint.image.set_input_stats(torch.from_numpy(image_fit))
    joint.to(dev)
    opt = torch.optim.AdamW(joint.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(1, a.epochs * a.steps_per_epoch)
    )
    return joint, opt, sched


def fit_epoch(cfg: Config, joint, opt, sched, epoch: int, audio, image, dev) -> float:
    """One epoch of class-balanced batches under the stage's loss; returns the mean loss.

    Parameters
    ----------
    cfg : Config
        ``cfg.align``: steps, batch size per class, loss weights; ``cfg.seed`` and
        ``epoch`` seed the batch draws, so a resumed epoch repeats exactly.
    joint : JointSpace
        The heads (``joint.audio`` may be any module mapping ``audio[0]`` rows to the space).
    opt, sched : optimiser and scheduler
        Stepped once per batch.
    epoch : int >= 0
        Epoch number (seeds this epoch's batches).
    audio, image : (ndarray (Na, ...) float32, ndarray (Na,) int64), likewise for images
        Features and emotion indices of each modality.
    dev : torch.device
        Where batches go.

    >>> from sound2sight.config import load_config
    >>> cfg = load_config(overrides=["align.steps_per_epoch=2", "align.batch_per_class=2"])
    >>> x, y = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32), np.arange(6) % 3
    >>> j, opt, sched = new_heads(cfg, torch.device("cpu"), x, x)
    >>> loss = fit_epoch(cfg, j, opt, sched, 0, (x, y), (x, y), torch.device("cpu")); loss > 0
    True
    """
    a = cfg.align
    xa, ya = (torch.from_numpy(v) for v in audio)
    xi, yi = (torch.from_numpy(v) for v in image)
    rng = np.random.default_rng([cfg.seed, epoch])  # per-epoch seeds make resume exact
    torch.manual_seed(cfg.seed * 1000 + epoch)
    joint.train()
    losses = []
    for _ in tqdm(range(a.steps_per_epoch), desc=f"align {epoch}", leave=False, disable=None):
        ia = balanced_batch(audio[1], per_class=a.batch_per_class, rng=rng)
        ii = balanced_batch(image[1], per_class=a.batch_per_class, rng=rng)
        za, zi = joint(xa[ia].to(dev), xi[ii].to(dev))
        ya_b, yi_b = ya[ia].to(dev), yi[ii].to(dev)
        loss = cross_modal_supcon(
            za, ya_b, zi, yi_b, temperature=a.temperature, cross_weight=a.cross_weight
        )
        if a.gap_weight > 0:
            loss = loss + a.gap_weight * class_centroid_gap(za, ya_b, zi, yi_b)
        if a.prototype_weight > 0:
            z, y = torch.cat([za, zi]), torch.cat([ya_b, yi_b])
            loss = loss + a.prototype_weight * prototype_loss(
                z, y, joint.prototypes, temperature=a.temperature
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses))


def train_align(cfg: Config, run_dir: str | Path, *, resume: bool = True) -> dict:
    """Train the projection heads; evaluate retrieval on held-out speakers; write the gallery.

    Inputs: ``align/audio_embeddings.npz`` (from :func:`audio_embeddings`) and
    ``image/features.npz``.  The audio head trains on the ``train`` speakers, the image
    head on every labelled painting; training stops on the ``val`` speakers' retrieval
    (mean of top-1 and mAP against the paintings).  Reported numbers use the
    ``test`` speakers against every labelled painting (the gallery, which the image head
    fits) and, under ``unseen_art``, against the ``test`` paintings for heads refit
    without them.

    Returns
    -------
    dict
        What ``align/metrics.json`` holds: ``audio_to_image`` / ``image_to_audio``
        retrieval reports, ``classifier_on_same_clips`` (with ``mAP_class_ranking``, the
        mAP the classifier allows), ``unseen_art``, ``real_image_ceiling``, ``history``.
    """
    run_dir = Path(run_dir)
    out = stage_dir(run_dir, "align", cfg)
    handler = attach_log_file(out / "train.log")
    threads = torch.get_num_threads()
    # the heads' matrices are tiny: one CPU thread is ~10x faster than two on a busy machine
    torch.set_num_threads(1)
    try:
        return _train(cfg, run_dir, out, resume=resume)
    finally:
        torch.set_num_threads(threads)
        logging.getLogger("sound2sight").removeHandler(handler)
        handler.close()


def _train(cfg: Config, run_dir: Path, out: Path, *, resume: bool) -> dict:
    a = cfg.align
    seed_everything(cfg.seed)
    dev = resolve_device(cfg.device)
    aud = audio_embeddings(cfg, run_dir)
    feats = load_npz(run_dir / "image" / "features.npz")
    lab = feats["labels"] != ""
    img = {k: v[lab] for k, v in feats.items()}  # labelled paintings only
    ay, iy = _index(aud["labels"]), _index(img["labels"])
    # audio: heads learn from the train speakers, stop on the val speakers.  Art: the
    # paintings are the gallery users search, and the image head fits all of them (their
    # labels are known); _unseen_art measures how it does on paintings it never saw.
    a_tr, a_val = aud["splits"] == "train", aud["splits"] == "val"
    a_test = aud["splits"] == "test"
    if not a_test.any():
        log.warning("no test speakers in the audio manifest; reporting on val")
        a_test = a_val
    xa_tr, ya_tr = aud["embeddings"][a_tr], ay[a_tr]
    joint, opt, sched = new_heads(cfg, dev, xa_tr, img["feats"])
    ckpt = Checkpointer(out, cfg)
    start, best, best_epoch, bad, history = 0, -math.inf, -1, 0, []
    state = ckpt.load_last() if resume else None
    if state is not None:
        ckpt.restore(state, model=joint, optimizer=opt, scheduler=sched)
        start, best, best_epoch, bad = (
            state["epoch"] + 1,
            state["best"],
            state["best_epoch"],
            state["bad"],
        )
        history = list(state["history"])
        log.info("resuming align from epoch %d (best val top-1 %.4f)", start, best)
    t0 = time.perf_counter()
    for epoch in range(start, a.epochs):
        if bad >= a.patience:
            break
        loss = fit_epoch(cfg, joint, opt, sched, epoch, (xa_tr, ya_tr), (img["feats"], iy), dev)
        joint.eval()
        val_src = a_val if a_val.any() else a_tr
        a2i = _audio_to_image(joint, dev, aud["embeddings"][val_src], ay[val_src], img["feats"], iy)
        score = 0.5 * (a2i["top1"] + a2i["mAP"])  # top-1 alone is noisy on ~600 clips
        is_best = score > best
        if is_best:
            best, best_epoch, bad = score, epoch, 0
        else:
            bad += 1
        history.append(
            {
                "epoch": epoch,
                "loss": loss,
                "val_top1": a2i["top1"],
                "val_top1_balanced": a2i["balanced"]["top1"],
                "val_mAP": a2i["mAP"],
            }
        )
        log.info(
            "epoch %d loss %.4f val top-1 %.4f (balanced %.4f) mAP %.4f%s",
            epoch,
            history[-1]["loss"],
            a2i["top1"],
            a2i["balanced"]["top1"],
            a2i["mAP"],
            " *" if is_best else "",
        )
        ckpt.save(
            {
                "model": joint.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch,
                "best": best,
                "best_epoch": best_epoch,
                "bad": bad,
                "history": history,
                "joint": joint.checkpoint_meta(),
            },
            is_best=is_best,
        )
    train_seconds = time.perf_counter() - t0
    joint.load_state_dict(ckpt.load_best()["model"])
    joint.eval()
    data = {"aud": aud, "ay": ay, "img": img, "iy": iy, "a_test": a_test}
    summary = {"best_epoch": best_epoch, "train_seconds": round(train_seconds, 2)}
    return _report(cfg, run_dir, joint, dev, data, history=history, summary=summary)


def _unseen_art(cfg: Config, dev, data: dict, *, epochs: int) -> dict:
    """Refit the heads without the test paintings (same seeds and epochs) and score on them.

    The shipped image head fits every labelled painting, so the main report cannot say
    how it handles a painting it never saw; this second pair of heads can.  Its
    ``gallery_all`` row shows what mixing unseen paintings into the gallery costs.
    """
    aud, ay, img, iy, a_test = (data[k] for k in ("aud", "ay", "img", "iy", "a_test"))
    a_tr, held = aud["splits"] == "train", img["splits"] == "test"
    seed_everything(cfg.seed)
    audio, image = (aud["embeddings"][a_tr], ay[a_tr]), (img["feats"][~held], iy[~held])
    joint, opt, sched = new_heads(cfg, dev, audio[0], image[0])
    for epoch in range(epochs):
        fit_epoch(cfg, joint, opt, sched, epoch, audio, image, dev)
    joint.eval()
    za = _embed(joint.embed_audio, aud["embeddings"][a_test], dev)
    zi = _embed(joint.embed_image, img["feats"], dev)
    ya = ay[a_test]
    return {
        "n_unseen": int(held.sum()),
        "n_fit": int((~held).sum()),
        "epochs": epochs,
        "audio_to_image": {
            "gallery_unseen": retrieval_metrics(za, ya, zi[held], iy[held]),
            "gallery_all": retrieval_metrics(za, ya, zi, iy),
        },
        "image_to_audio": {"queries_unseen": retrieval_metrics(zi[held], iy[held], za, ya)},
    }


def _report(cfg, run_dir, joint, dev, data, *, history, summary) -> dict:
    """Test retrieval, classifier accuracy on the same clips, gallery and embedding map."""
    out = run_dir / "align"
    aud, ay, img, iy, a_test = (data[k] for k in ("aud", "ay", "img", "iy", "a_test"))
    za = _embed(joint.embed_audio, aud["embeddings"][a_test], dev)
    zi = _embed(joint.embed_image, img["feats"], dev)
    ya, i_held = ay[a_test], img["splits"] == "test"
    pred = aud["probs"][a_test].argmax(1)
    recall = {
        e: float((pred[ya == c] == c).mean()) for c, e in enumerate(EMOTIONS) if (ya == c).any()
    }
    metrics = {
        "n_test_clips": int(a_test.sum()),
        "n_test_speakers": len(set(aud["speakers"][a_test].tolist())),
        "n_gallery": len(zi),
        **summary,
        "classifier_on_same_clips": {
            "accuracy": float((pred == ya).mean()),
            "balanced_accuracy": float(np.mean(list(recall.values()))),
            "per_class": recall,
            # mAP if the image side sorted the paintings perfectly by class and the audio
            # side kept the classifier's ranking of emotions: what the classifier allows
            "mAP_class_ranking": class_ranking_map(aud["probs"][a_test], ya, iy),
        },
        "audio_to_image": {"gallery_all": retrieval_metrics(za, ya, zi, iy)},
        "image_to_audio": {"queries_all": retrieval_metrics(zi, iy, za, ya)},
        "history": history,
        "config": dataclasses.asdict(cfg.align),
    }
    if i_held.any() and (~i_held).any() and summary["best_epoch"] >= 0:
        metrics["unseen_art"] = _unseen_art(cfg, dev, data, epochs=summary["best_epoch"] + 1)
    image_metrics = run_dir / "image" / "metrics.json"
    if image_metrics.is_file():
        metrics["real_image_ceiling"] = json.loads(image_metrics.read_text()).get("ceiling")
    Gallery(
        img["paths"],
        img["labels"],
        zi.astype(np.float32),
        make_thumbnails(img["paths"], workers=max(1, cfg.image.num_workers)),
        img["feats"].astype(np.float16),  # for "nearest to this painting" in image space
    ).save(out / "gallery.npz")
    if cfg.align.map_points > 0:
        plot_embedding_map(
            out / "embedding_map.png",
            (za, ya),
            (zi, iy),
            labels=EMOTIONS,
            points=cfg.align.map_points,
            seed=cfg.seed,
        )
    atomic_write_json(out / "metrics.json", metrics)
    r = metrics["audio_to_image"]["gallery_all"]
    log.info(
        "test: retrieval top-1 %.4f (classifier %.4f), mAP %.4f, R@5 %.4f",
        r["top1"],
        metrics["classifier_on_same_clips"]["accuracy"],
        r["mAP"],
        r["recall"]["5"],
    )
    return metrics
