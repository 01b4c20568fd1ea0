"""The GAN stage's evaluation: generate from held-out audio conditions and score.

``evaluate_gan`` writes ``gan/metrics.json`` and one sample grid per emotion; the
metrics themselves live in :mod:`sound2sight.gan_metrics`.

>>> evaluate_gan(load_config(), "runs/demo")["consistency"]["generated"]["k1"]["balanced"]  # doctest: +SKIP
0.36
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from sound2sight.gan_metrics import (
    cached_real_features,
    consistency,
    diversity,
    effnet_features,
    frechet_distance,
    kid,
    probe_consistency,
)

__all__ = ["evaluate_gan"]

log = logging.getLogger(__name__)


def evaluate_gan(
    cfg,
    run_dir,
    *,
    n_per_class: int = 100,
    n_fd: int = 500,
    checkpoint: str = "best",
    device: str | None = None,
    weights: str = "G_ema",
) -> dict:
    """Score the EMA generator of ``run_dir/gan`` and write ``gan/metrics.json`` and grids.

    Images are generated from held-out (``test``, else ``val``) projected audio
    embeddings, ``n_per_class`` per emotion for consistency and diversity, plus ``n_fd``
    with the training label mix for FD-EffNet and KID against the real training paintings.

    Parameters
    ----------
    cfg : Config
        ``cfg.seed`` fixes the noise and conditions; the GAN's own config comes from the
        checkpoint.
    run_dir : path-like
        A run directory with ``data/``, ``align/`` and ``gan/{best,last}.pt``.
    n_per_class, n_fd : int > 0
        Generated images per emotion; generated images for FD-EffNet/KID.
    checkpoint : {"best", "last"}
        Which checkpoint to score.
    weights : {"G_ema", "G"}
        ``G`` scores the raw generator instead (``metrics_raw.json``, ``grid_*_raw.png``).
    """
    from pathlib import Path

    from sound2sight.datasets.base import ArtItem, read_manifest
    from sound2sight.gan_data import audio_bank, load_align, load_art_images, save_grid
    from sound2sight.io import atomic_write_json, safe_torch_load
    from sound2sight.labels import EMOTIONS
    from sound2sight.models.gan import generate, load_generator
    from sound2sight.models.image import load_image_encoder
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
        [it.path for it in items], size=gcfg.resolution, workers=max(1, cfg.image.num_workers)
    )
    items = [items[i] for i in keep]
    y = np.array([names.index(it.label) for it in items])
    is_train = np.array([it.split == "train" for it in items])
    model, _ = load_image_encoder(device=dev)
    real = cached_real_features(cfg, model, [it.path for it in items], images)  # (N, 1280)
    ref, ref_y, hx, hy = real[is_train], y[is_train], real[~is_train], y[~is_train]
    classes = [c for c in range(len(names)) if c in bank.index and (ref_y == c).any()]
    gen = torch.Generator().manual_seed(cfg.seed + 10)
    intended = torch.tensor(classes).repeat_interleave(n_per_class)
    imgs = generate(G, bank.sample(intended, generator=gen), generator=gen)  # (N, R, R, 3)
    gfeat, gy = effnet_features(model, imgs), intended.numpy()
    freq = np.bincount(ref_y, minlength=len(names))[classes].astype(float)
    fd_y = torch.tensor(classes)[
        torch.multinomial(torch.tensor(freq / freq.sum()), n_fd, True, generator=gen)
    ]
    fd_feat = effnet_features(model, generate(G, bank.sample(fd_y, generator=gen), generator=gen))
    hx_fd = hx[np.random.default_rng(cfg.seed).permutation(len(hx))[:n_fd]]  # same count as fakes
    kid_m = min(500, n_fd)  # one KID subset size for both sets, so the two compare
    metrics = {
        "checkpoint": str(path),
        "weights": weights,
        "step": int(state["step"]),
        "conditions": f"audio:{held}",
        "resolution": gcfg.resolution,
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
        },
        "consistency": {
            "generated": consistency(gfeat, gy, ref, ref_y, names=names),
            "real_heldout": consistency(hx, hy, ref, ref_y, names=names),
        },
        "probe": probe_consistency(
            ref, ref_y, {"generated": (gfeat, gy), "real_heldout": (hx, hy)}, names=names
        ),
        "fd_effnet": {
            "generated": frechet_distance(fd_feat, ref),
            "real_heldout": frechet_distance(hx_fd, ref) if len(hx_fd) > 2 else None,
            "n": [n_fd, len(hx_fd)],
        },
        "kid": {
            "generated": kid(fd_feat, ref, subset_size=kid_m, seed=cfg.seed),
            "real_heldout": kid(hx_fd, ref, subset_size=kid_m, seed=cfg.seed),
        },
        "diversity": diversity(gfeat, gy, real, y, names=names),
    }
    out = run_dir / "gan"
    for c in classes:
        save_grid(imgs[gy == c][:32], out / f"grid_{names[c]}{tag}.png", cols=8)
    atomic_write_json(out / f"metrics{tag}.json", metrics)
    cg, cr = metrics["consistency"]["generated"], metrics["consistency"]["real_heldout"]
    fd = metrics["fd_effnet"]
    log.info(
        "GAN: consistency k1/k5 %.3f/%.3f (real held-out %.3f/%.3f), FD-EffNet %.2f (real %s), "
        "diversity ratio %.2f",
        *(cg["k1"]["balanced"], cg["k5"]["balanced"], cr["k1"]["balanced"], cr["k5"]["balanced"]),
        *(fd["generated"], fd["real_heldout"], metrics["diversity"]["mean_ratio"]),
    )
    return metrics
