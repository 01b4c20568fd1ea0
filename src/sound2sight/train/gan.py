"""The GAN stage: train a conditional GAN on the art manifest, conditioned in the shared space.

``gan.condition`` picks what a painting is paired with during training:

- ``audio`` (the seed's pairing): each painting gets the projected audio embedding of a
  random training clip of its emotion; labelled paintings only;
- ``image``: each painting gets its own projected image embedding, which admits the
  unlabelled paintings too.

Sampling (grids, checkpoint FD, evaluation, the pipeline) always conditions on projected
audio embeddings.  Writes ``gan/{best,last}.pt``, ``gan/samples/step_XXXXXX.png``,
``gan/curves.png`` and ``gan/train.log``.

>>> train_gan(load_config(), "runs/demo")["steps"]  # doctest: +SKIP
2000
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sound2sight.config import Config
from sound2sight.datasets.base import ArtItem, read_manifest
from sound2sight.diffaugment import DiffAugment
from sound2sight.gan_data import (
    audio_bank,
    image_conditions,
    load_align,
    load_art_images,
    save_grid,
)
from sound2sight.io import atomic_write_bytes
from sound2sight.labels import EMOTIONS
from sound2sight.losses import loss_hinge_dis, loss_hinge_gen
from sound2sight.models.gan import ConditionBank, Discriminator, Generator, ema_update, make_ema
from sound2sight.train.common import (
    Checkpointer,
    attach_log_file,
    resolve_device,
    seed_everything,
    stage_dir,
)

__all__ = ["train_gan"]

log = logging.getLogger(__name__)
GRID_COLS = 8  # images per emotion row in the sample grids


def _plot_curves(history: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def smooth(v: list[float]) -> tuple[np.ndarray, np.ndarray]:
        w = max(1, len(v) // 50)  # moving average over ~2% of the run
        return np.arange(w, len(v) + 1), np.convolve(v, np.ones(w) / w, mode="valid")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for key, ax in (("loss_d", 0), ("loss_g", 0), ("logit_real", 1), ("logit_fake", 1)):
        axes[ax].plot(*smooth(history[key]), label=key)
    axes[0].set_title("hinge losses")
    axes[1].set_title("D logits (mean)")
    for ax in axes:
        ax.set_xlabel("generator step")
        ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def train_gan(
    cfg: Config, run_dir: str | Path, *, resume: bool = True, device: str | None = None
) -> dict:
    """Train (or resume) the conditional GAN; return training cost and the best FD-EffNet.

    Parameters
    ----------
    cfg : Config
        ``cfg.gan`` configures the stage; ``cfg.seed`` seeds it.
    run_dir : path-like
        Holds ``data/art_manifest.csv`` and ``align/``; ``gan/`` is written.
    resume : bool
        Continue from ``gan/last.pt`` when it exists.
    device : str | None
        ``cpu``, ``cuda``, ``cuda:N`` or ``auto``; default ``cfg.device``.
    """
    run_dir = Path(run_dir)
    out = stage_dir(run_dir, "gan", cfg)
    handler = attach_log_file(out / "train.log")
    try:
        return _train(cfg, run_dir, out, resume=resume, device=device or cfg.device)
    finally:
        logging.getLogger("sound2sight").removeHandler(handler)
        handler.close()


def _training_set(cfg: Config, run_dir: Path, joint):
    """Images ``(N, 3, R, R)`` uint8, labels ``(N,)`` (-1 unlabelled) and per-image conditions."""
    g = cfg.gan
    if g.condition not in ("audio", "image"):
        raise ValueError(f"gan.condition={g.condition!r}: expected 'audio' or 'image'")
    items = read_manifest(run_dir / "data" / "art_manifest.csv", ArtItem)
    items = [it for it in items if it.split == "train" and (it.label or g.condition == "image")]
    if not any(it.label for it in items):
        raise ValueError("no labelled training paintings in the art manifest")
    images, keep = load_art_images(
        [it.path for it in items], size=g.resolution, workers=max(1, cfg.image.num_workers)
    )
    items = [items[i] for i in keep]
    labels = torch.tensor([EMOTIONS.index(it.label) if it.label else -1 for it in items])
    conds = (
        image_conditions(cfg, run_dir, joint, [it.path for it in items])
        if g.condition == "image"
        else None
    )
    log.info(
        "GAN training set: %d paintings (%d labelled), condition=%s",
        len(items),
        int((labels >= 0).sum()),
        g.condition,
    )
    return items, images, labels, conds


def _train(cfg: Config, run_dir: Path, out: Path, *, resume: bool, device: str) -> dict:
    g = cfg.gan
    gen = seed_everything(cfg.seed)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = resolve_device(device)
    joint, aud = load_align(run_dir)
    train_bank = audio_bank(joint, aud, splits=("train",))
    has_val = (aud["splits"] == "val").any()
    val_bank = audio_bank(joint, aud, splits=("val",)) if has_val else train_bank
    items, images, labels, conds = _training_set(cfg, run_dir, joint)
    by_class = {
        c: torch.nonzero(labels == c).squeeze(1) for c in labels.unique().tolist() if c >= 0
    }
    G, D = Generator(g).to(dev), Discriminator(g).to(dev)
    G_ema = make_ema(G)
    betas = (0.0, 0.999)  # BigGAN/SNGAN Adam betas
    opt_g = torch.optim.Adam(G.parameters(), lr=g.lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=g.lr_d, betas=betas)
    aug = DiffAugment(g.diffaugment)
    fixed_gen = torch.Generator().manual_seed(cfg.seed + 1)
    fixed_labels = torch.arange(len(EMOTIONS)).repeat_interleave(GRID_COLS)
    fixed_z = torch.randn(len(fixed_labels), g.z_dim, generator=fixed_gen)
    fixed_c = train_bank.sample(fixed_labels, generator=fixed_gen)
    hist = {k: [] for k in ("loss_d", "loss_g", "logit_real", "logit_fake")}
    step, best_fd, best_step, wall = 0, float("inf"), -1, 0.0
    ckpt = Checkpointer(out, cfg)
    state = ckpt.load_last() if resume else None
    if state is not None:
        ckpt.restore(state, G=G, G_ema=G_ema, D=D, opt_g=opt_g, opt_d=opt_d)
        gen.set_state(state["rng"])
        fixed_z, fixed_c = state["fixed_z"], state["fixed_c"]
        step, best_fd, best_step = state["step"], state["best_fd"], state["best_step"]
        wall, hist = state["wall_seconds"], {k: list(v) for k, v in state["history"].items()}
        log.info("resuming GAN from step %d", step)
    scorer = _FDScorer(cfg, images, labels, items, val_bank, dev) if g.fd_samples > 0 else None

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if g.condition == "audio" and g.balanced:
            cls = torch.tensor(sorted(by_class))[torch.randint(len(by_class), (n,), generator=gen)]
            idx = torch.stack(
                [
                    by_class[int(k)][torch.randint(len(by_class[int(k)]), (1,), generator=gen)][0]
                    for k in cls
                ]
            )
        elif g.condition == "audio":
            pool = torch.nonzero(labels >= 0).squeeze(1)
            idx = pool[torch.randint(len(pool), (n,), generator=gen)]
        else:
            idx = torch.randint(len(images), (n,), generator=gen)
        c = train_bank.sample(labels[idx], generator=gen) if conds is None else conds[idx]
        return idx, c.to(dev)

    def real(idx: torch.Tensor) -> torch.Tensor:
        x = images[idx].to(dev).float() / 127.5 - 1.0  # (B, 3, R, R) in [-1, 1]
        flip = (torch.rand(len(idx), generator=gen) < 0.5).to(dev)
        return torch.where(flip[:, None, None, None], x.flip(-1), x)

    def noise(n: int) -> torch.Tensor:
        return torch.randn(n, g.z_dim, generator=gen).to(dev)

    def save(is_best: bool) -> None:
        ckpt.save(
            {
                "G": G.state_dict(),
                "G_ema": G_ema.state_dict(),
                "D": D.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "step": step,
                "rng": gen.get_state(),
                "fixed_z": fixed_z,
                "fixed_c": fixed_c,
                "best_fd": best_fd,
                "best_step": best_step,
                "wall_seconds": wall,
                "history": hist,
                "device": str(dev),
            },
            is_best=is_best,
        )

    B = g.batch_size
    bar = tqdm(total=g.steps, initial=step, desc="gan", unit="step", disable=None)
    t0 = time.perf_counter()
    while step < g.steps:
        G.train()
        for _ in range(g.d_steps):
            idx, c = batch(B)
            with torch.no_grad():
                fake = G(noise(B), c)  # (B, 3, R, R)
            d_real, d_fake = D(aug(real(idx), generator=gen), c), D(aug(fake, generator=gen), c)
            loss_d = loss_hinge_dis(d_real, d_fake)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        _, c = batch(B)
        loss_g = loss_hinge_gen(D(aug(G(noise(B), c), generator=gen), c))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        ema_update(G_ema, G, decay=min(g.ema, (1 + step) / (10 + step)))  # warm-up, then cfg.ema
        step += 1
        for k, v in (
            ("loss_d", loss_d),
            ("loss_g", loss_g),
            ("logit_real", d_real.mean()),
            ("logit_fake", d_fake.mean()),
        ):
            hist[k].append(float(v.detach()))
        bar.update(1)
        bar.set_postfix(d=f"{hist['loss_d'][-1]:.3f}", g=f"{hist['loss_g'][-1]:.3f}")
        done = step == g.steps
        if step % g.sample_every == 0 or done:
            G_ema.eval()
            with torch.no_grad():
                x = G_ema(fixed_z.to(dev), fixed_c.to(dev))  # (3*cols, 3, R, R)
            grid = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            save_grid(grid, out / "samples" / f"step_{step:06d}.png", cols=GRID_COLS)
        if step % g.ckpt_every == 0 or done:
            wall += time.perf_counter() - t0
            t0 = time.perf_counter()
            fd = scorer(G_ema) if scorer is not None else float("nan")
            is_best = scorer is None or fd < best_fd
            if is_best:
                best_fd, best_step = (fd, step) if scorer is not None else (best_fd, step)
            log.info(
                "step %d: loss D %.4f G %.4f, FD-EffNet %.2f%s (%.1f s)",
                step,
                np.mean(hist["loss_d"][-g.ckpt_every :]),
                np.mean(hist["loss_g"][-g.ckpt_every :]),
                fd,
                " *" if is_best else "",
                wall,
            )
            save(is_best)
            _plot_curves(hist, out / "curves.png")
            t0 = time.perf_counter()  # FD scoring and plotting are not training time
    bar.close()
    return {
        "steps": step,
        "wall_seconds": round(wall, 2),
        "device": str(dev),
        "sec_per_step": round(wall / max(step, 1), 4),
        "best_step": best_step,
        "best_fd_effnet": None if best_fd == float("inf") else best_fd,
        "n_train_images": len(items),
        "condition": g.condition,
    }


class _FDScorer:
    """FD-EffNet of ``gan.fd_samples`` EMA samples (val audio conditions, fixed noise)."""

    def __init__(self, cfg: Config, images, labels, items, bank: ConditionBank, dev) -> None:
        from sound2sight.gan_metrics import cached_real_features
        from sound2sight.models.image import load_image_encoder

        self.model, _ = load_image_encoder(device=dev)
        lab = torch.nonzero(labels >= 0).squeeze(1)
        self.real = cached_real_features(
            cfg, self.model, [items[i].path for i in lab.tolist()], images[lab]
        )
        freq = torch.bincount(labels[lab], minlength=len(EMOTIONS)).float()
        g = torch.Generator().manual_seed(cfg.seed + 2)
        self.labels = torch.multinomial(freq / freq.sum(), cfg.gan.fd_samples, True, generator=g)
        self.c = bank.sample(self.labels, generator=g)
        self.seed = cfg.seed + 3

    def __call__(self, G) -> float:
        from sound2sight.gan_metrics import effnet_features, frechet_distance
        from sound2sight.models.gan import generate

        G.eval()
        imgs = generate(G, self.c, generator=torch.Generator().manual_seed(self.seed))
        return frechet_distance(effnet_features(self.model, imgs), self.real)
