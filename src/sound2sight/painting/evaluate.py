"""The GAN stage's evaluation: paint from held-out voices' points, as the pipeline does, and score.

Conditions are held-out speakers' projected audio embeddings, turned into the generator's
conditions by ``gan.condition`` (by default one of the training paintings nearest each
voice; :func:`~sound2sight.painting.model.inference_conditions`); latents are decoded by
TAEF2.  ``evaluate_gan`` writes ``gan/metrics.json``, one sample grid per emotion and,
beside them, a grid of held-out real paintings per emotion.  Two judges:

- **Lite0** (the project's image encoder): FD, KID, k-NN and probe consistency against
  the *training* paintings — comparable with earlier runs, but not independent: the
  conditions come through the image head, which reads Lite0 features;
- **independent** (EfficientNet-Lite2, a different network at 260 px): FD and KID
  against the training paintings, diversity, and emotion consistency judged only by
  paintings the generator never saw — a balanced probe fit on the held-out paintings
  and a k-NN vote among a class-balanced subset of them.  The same judge scores the real
  training paintings: the real-image ceiling, measured the same way.  Beside them, the
  FD of TAEF2 *reconstructions* of the held-out paintings: the decoder's own ceiling.

It also measures whether the emotion reaches the picture (same noise, another emotion,
against same emotion, another noise; :func:`~sound2sight.painting.metrics.emotion_vs_noise`).
The metric functions live in :mod:`sound2sight.painting.metrics`.

>>> evaluate_gan(load_config(), "runs/demo")["independent"]["fd"]["generated"]  # doctest: +SKIP
141.2
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from sound2sight.config import Config
from sound2sight.labels import EMOTIONS
from sound2sight.painting.metrics import (
    balanced_reference,
    cached_real_features,
    consistency,
    diversity,
    effnet_features,
    emotion_vs_noise,
    frechet_distance,
    kid,
    probe_consistency,
)
from sound2sight.painting.model import ConditionBank, generate, inference_conditions
from sound2sight.painting.taef2 import decode_latents, encode_images

__all__ = ["evaluate_gan", "CheckpointFD"]

log = logging.getLogger(__name__)


def _fd_and_kid(
    fake: np.ndarray,
    heldout: np.ndarray,
    reference: np.ndarray,
    *,
    seed: int,
    reconstructed: np.ndarray | None = None,
):
    """FD and KID of the generated set and of as many held-out real paintings vs ``reference``
    (and of the same held-out paintings' TAEF2 reconstructions, ``reconstructed``, row-aligned)."""
    n = len(fake)
    pick = np.random.default_rng(seed).permutation(len(heldout))[:n]  # same count
    held = heldout[pick]
    m = min(500, n)  # one KID subset size for both sets, so the two compare
    fd = {
        "generated": frechet_distance(fake, reference),
        "real_heldout": frechet_distance(held, reference) if len(held) > 2 else None,
        "n": [n, len(held)],
    }
    kids = {
        "generated": kid(fake, reference, subset_size=m, seed=seed),
        "real_heldout": kid(held, reference, subset_size=m, seed=seed),
    }
    if reconstructed is not None and len(held) > 2:
        rec = reconstructed[pick]
        fd["reconstruction_heldout"] = frechet_distance(rec, reference)
        kids["reconstruction_heldout"] = kid(rec, reference, subset_size=m, seed=seed)
    return fd, kids


def _independent(cfg, dev, paths, images, y, is_train, gen_imgs, gy, fd_imgs) -> dict:
    """FD, KID, diversity and held-out consistency in EfficientNet-Lite2 space."""
    from sound2sight.models.image import load_image_encoder

    try:
        model, _ = load_image_encoder(device=dev, variant="lite2")
    except ImportError as exc:
        log.warning("independent GAN metrics skipped: %s", exc)
        return {"skipped": str(exc)}
    names = list(EMOTIONS)
    real = cached_real_features(cfg, model, paths, images)  # (N, 1280)
    gfeat, fdfeat = effnet_features(model, gen_imgs), effnet_features(model, fd_imgs)
    tr, hx, hy = real[is_train], real[~is_train], y[~is_train]
    ref = balanced_reference(hy, seed=cfg.seed)  # equal held-out paintings per emotion
    sets = {"generated": (gfeat, gy), "real_ceiling": (tr, y[is_train])}
    held_imgs = images[torch.from_numpy(~is_train)]  # (H, 3, S, S): encode -> decode
    rec = decode_latents(encode_images(held_imgs)) if len(held_imgs) else None
    rfeat = effnet_features(model, rec) if rec is not None else None
    fd, kids = _fd_and_kid(fdfeat, hx, tr, seed=cfg.seed, reconstructed=rfeat)
    return {
        "encoder": "efficientnet-lite2 (ImageNet, 260 px)",
        "fd": fd,
        "kid": kids,
        "diversity": diversity(gfeat, gy, real, y, names=names),
        "consistency_heldout": {
            "reference": f"{len(hx)} held-out paintings the generator never saw "
            f"(k-NN among {len(ref)}, {len(ref) // max(len(np.unique(hy)), 1)} per emotion)",
            "probe": probe_consistency(hx, hy, sets, names=names),
            "knn": {k: consistency(*v, hx[ref], hy[ref], names=names) for k, v in sets.items()},
        },
    }


def _emotion_reach(G, bank: ConditionBank, gallery, classes, *, draws: int, noises: int, seed: int):
    """Paintings ``(K, draws, noises, S, S, 3)``: every emotion under the same noise."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(noises, G.cfg.z_dim, generator=gen)
    dev, out = next(G.parameters()).device, []
    for k in classes:
        c = bank.sample(torch.full((draws,), k), generator=gen)  # (M, D) voices
        c = inference_conditions(c, gallery, G.cfg, generator=gen)  # as the pipeline does
        cc = c.repeat_interleave(noises, 0)  # (M*Z, D)
        pixel_noise = torch.Generator().manual_seed(seed + 1)  # the same maps for every emotion
        with torch.no_grad():
            x = G(z.repeat(draws, 1).to(dev), cc.to(dev), generator=pixel_noise)  # (M*Z, 32, s, s)
            x = decode_latents(x)  # (M*Z, S, S, 3)
        out.append(x.reshape(draws, noises, *x.shape[1:]))
    return np.stack(out)


def evaluate_gan(
    cfg: Config,
    run_dir,
    *,
    n_per_class: int = 100,
    n_fd: int = 500,
    checkpoint: str = "best",
    device: str | None = None,
    weights: str = "G_ema",
) -> dict:
    """Score the generator of ``run_dir/gan`` and write ``gan/metrics.json`` and grids.

    Images are generated from held-out (``test``, else ``val``) projected audio
    embeddings (through ``gan.condition``), ``n_per_class`` per emotion for consistency
    and diversity, plus ``n_fd`` with the training label mix for FD and KID against the
    real training paintings.

    Parameters
    ----------
    cfg : Config
        ``cfg.seed`` fixes the noise and conditions; the GAN's own config comes from the
        checkpoint.
    run_dir : path-like
        A run directory with ``data/``, ``align/`` and ``gan/{best,last}.pt``.
    n_per_class, n_fd : int > 0
        Generated images per emotion; generated images for FD/KID.
    checkpoint : {"best", "last"}
        Which checkpoint to score.
    weights : {"G_ema", "G"}
        ``G`` scores the raw generator instead (``metrics_raw.json``, ``grid_*_raw.png``).
    """
    from sound2sight.datasets.base import ArtItem, read_manifest
    from sound2sight.io import atomic_write_json, safe_torch_load
    from sound2sight.models.image import load_image_encoder
    from sound2sight.painting.data import (
        audio_bank,
        image_conditions,
        load_align,
        load_art_images,
        save_grid,
    )
    from sound2sight.painting.model import load_generator
    from sound2sight.train.common import resolve_device

    run_dir, names = Path(run_dir), list(EMOTIONS)
    dev = resolve_device(device or cfg.device)
    path = run_dir / "gan" / f"{checkpoint}.pt"
    state = safe_torch_load(path)
    G, gcfg = load_generator(path, device=dev, weights=weights, state=state)
    tag = "" if weights == "G_ema" else "_raw"
    joint, aud = load_align(run_dir)
    held = "test" if (aud["splits"] == "test").any() else "val"
    bank = audio_bank(joint, aud, splits=(held,))
    items = [it for it in read_manifest(run_dir / "data" / "art_manifest.csv", ArtItem) if it.label]
    images, keep = load_art_images(
        [it.path for it in items], size=gcfg.image_size, workers=max(1, cfg.image.num_workers)
    )
    items = [items[i] for i in keep]
    paths = [it.path for it in items]
    y = np.array([names.index(it.label) for it in items])
    is_train = np.array([it.split == "train" for it in items])
    gallery = image_conditions(
        cfg, run_dir, joint, [p for p, t in zip(paths, is_train, strict=True) if t]
    )
    model, _ = load_image_encoder(device=dev)
    real = cached_real_features(cfg, model, paths, images)  # (N, 1280)
    ref, ref_y, hx, hy = real[is_train], y[is_train], real[~is_train], y[~is_train]
    classes = [c for c in range(len(names)) if c in bank.index and (ref_y == c).any()]
    gen = torch.Generator().manual_seed(cfg.seed + 10)
    intended = torch.tensor(classes).repeat_interleave(n_per_class)

    def paint(voices: torch.Tensor) -> np.ndarray:  # (N, S, S, 3), conditioned as the pipeline
        return generate(
            G, inference_conditions(voices, gallery, gcfg, generator=gen), generator=gen
        )

    imgs = paint(bank.sample(intended, generator=gen))
    gfeat, gy = effnet_features(model, imgs), intended.numpy()
    freq = np.bincount(ref_y, minlength=len(names))[classes].astype(float)
    fd_y = torch.tensor(classes)[
        torch.multinomial(torch.tensor(freq / freq.sum()), n_fd, True, generator=gen)
    ]
    fd_imgs = paint(bank.sample(fd_y, generator=gen))
    fd_feat = effnet_features(model, fd_imgs)
    fd, kids = _fd_and_kid(fd_feat, hx, ref, seed=cfg.seed)
    rd = min(8, n_per_class)  # condition draws x noises per emotion
    reach = _emotion_reach(G, bank, gallery, classes, draws=rd, noises=rd, seed=cfg.seed + 11)
    metrics = {
        "checkpoint": str(path),
        "weights": weights,
        "step": int(state["step"]),
        "conditions": f"audio:{held} -> {gcfg.condition}"
        + (
            f" (k={gcfg.k_condition} of {len(gallery)} training paintings)"
            if gcfg.condition == "neighbours"
            else ""
        ),
        "image_size": gcfg.image_size,
        "n_per_class": n_per_class,
        "n_reference": int(len(ref)),
        "n_real_heldout": int(len(hx)),
        "training": {
            "steps": int(state["step"]),
            "wall_seconds": float(state["wall_seconds"]),
            "device": state.get("device", "?"),
            "condition": gcfg.condition,
            "ema": gcfg.ema,
            "diffaugment": gcfg.diffaugment,
            "unlabelled": gcfg.unlabelled,
            "n_train_images": state.get("n_train_images"),
            "fd_history": [[int(s), float(f)] for s, f in state.get("fd_history", [])],
        },
        "consistency": {
            "generated": consistency(gfeat, gy, ref, ref_y, names=names),
            "real_heldout": consistency(hx, hy, ref, ref_y, names=names),
        },
        "probe": probe_consistency(
            ref, ref_y, {"generated": (gfeat, gy), "real_heldout": (hx, hy)}, names=names
        ),
        "fd_effnet": fd,
        "kid": kids,
        "diversity": diversity(gfeat, gy, real, y, names=names),
        "emotion_vs_noise": emotion_vs_noise(reach),
        "independent": _independent(cfg, dev, paths, images, y, is_train, imgs, gy, fd_imgs),
    }
    out = run_dir / "gan"
    for c in classes:
        save_grid(imgs[gy == c][:32], out / f"grid_{names[c]}{tag}.png", cols=8)
        real_c = images[torch.from_numpy(~is_train & (y == c))][:32]  # held-out real paintings
        save_grid(real_c.permute(0, 2, 3, 1).numpy(), out / f"real_{names[c]}.png", cols=8)
    atomic_write_json(out / f"metrics{tag}.json", metrics)
    _log_summary(metrics)
    return metrics


def _log_summary(m: dict) -> None:
    cg, cr, fd = m["consistency"]["generated"], m["consistency"]["real_heldout"], m["fd_effnet"]
    log.info(
        "GAN (Lite0 judge): consistency k1/k5 %.3f/%.3f (real held-out %.3f/%.3f), FD %.2f "
        "(real %s), diversity ratio %.2f; emotion/noise pixel change %.2f",
        *(cg["k1"]["balanced"], cg["k5"]["balanced"], cr["k1"]["balanced"], cr["k5"]["balanced"]),
        *(fd["generated"], fd["real_heldout"], m["diversity"]["mean_ratio"]),
        m["emotion_vs_noise"]["ratio"],
    )
    ind = m["independent"]
    if "fd" in ind:
        p = ind["consistency_heldout"]["probe"]
        log.info(
            "GAN (independent Lite2 judge): FD %.2f (real %s), KID %.4f, diversity %.2f, "
            "held-out probe consistency %.3f (real ceiling %.3f)",
            ind["fd"]["generated"],
            ind["fd"]["real_heldout"],
            ind["kid"]["generated"]["mean"],
            ind["diversity"]["mean_ratio"],
            p["generated"]["balanced"],
            p["real_ceiling"]["balanced"],
        )


class CheckpointFD:
    """FD-EffNet (Lite0) of ``gan.fd_samples`` EMA paintings (val voices, fixed noise)."""

    def __init__(self, cfg: Config, run_dir, items, labels, bank: ConditionBank, gallery, dev):
        from sound2sight.models.image import load_image_encoder
        from sound2sight.painting.data import load_art_images

        self.model, _ = load_image_encoder(device=dev)
        lab = torch.nonzero(labels >= 0).squeeze(1).tolist()
        paths = [items[i].path for i in lab]
        images, keep = load_art_images(paths, size=cfg.gan.image_size)
        self.real = cached_real_features(cfg, self.model, [paths[i] for i in keep], images)
        freq = torch.bincount(labels[lab], minlength=len(EMOTIONS)).float()
        g = torch.Generator().manual_seed(cfg.seed + 2)
        self.labels = torch.multinomial(freq / freq.sum(), cfg.gan.fd_samples, True, generator=g)
        voices = bank.sample(self.labels, generator=g)
        self.c = inference_conditions(voices, gallery, cfg.gan, generator=g)
        self.seed = cfg.seed + 3

    def __call__(self, G) -> float:
        G.eval()
        imgs = generate(G, self.c, generator=torch.Generator().manual_seed(self.seed))
        return frechet_distance(effnet_features(self.model, imgs), self.real)
