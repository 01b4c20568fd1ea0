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

import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sound2sight.config import Config
from sound2sight.datasets.base import ArtItem, read_manifest
from sound2sight.labels import EMOTIONS
from sound2sight.losses import loss_hinge_dis, loss_hinge_gen
from sound2sight.painting.augment import DiffAugment
from sound2sight.painting.data import (
    audio_bank,
    image_conditions,
    load_align,
    load_art_images,
    plot_curves,
    save_grid,
)
from sound2sight.painting.evaluate import CheckpointFD
from sound2sight.painting.model import Discriminator, Generator, ema_update, make_ema
from sound2sight.painting.projected import (
    FeatureNet,
    ProjectedDiscriminator,
    fit_guide,
    projected_hinge,
)
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


def _build_discriminator(cfg: Config, dev: torch.device, state: dict | None):
    """``gan.discriminator``: the projected one on frozen Lite0 features, or the pixel ResNet."""
    g = cfg.gan
    if state is not None:  # a resume must rebuild the discriminator it saved
        saved = state["config"]["gan"].get("discriminator", "resnet")
        if saved != g.discriminator:
            raise ValueError(
                f"gan/last.pt was trained with gan.discriminator={saved!r}, the config says "
                f"{g.discriminator!r}: set it back, or delete gan/last.pt to start over"
            )
    if g.discriminator == "resnet":
        return Discriminator(g).to(dev), None
    from sound2sight.models.image import load_image_encoder

    lite0, _ = load_image_encoder(device=dev)
    features = FeatureNet(lite0, size=g.d_input_size).to(dev)
    return ProjectedDiscriminator(g, features).to(dev), features


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
    ckpt = Checkpointer(out, cfg)
    state = ckpt.load_last() if resume else None
    G, (D, features) = Generator(g).to(dev), _build_discriminator(cfg, dev, state)
    G_ema = make_ema(G)
    projected = features is not None
    betas = (0.0, 0.99) if projected else (0.0, 0.999)  # Projected GAN's / BigGAN's Adam betas
    opt_g = torch.optim.Adam(G.parameters(), lr=g.lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.trainable() if projected else D.parameters(), lr=g.lr_d, betas=betas)
    aug = DiffAugment(g.diffaugment)
    fixed_gen = torch.Generator().manual_seed(cfg.seed + 1)
    fixed_labels = torch.arange(len(EMOTIONS)).repeat_interleave(GRID_COLS)
    fixed_z = torch.randn(len(fixed_labels), g.z_dim, generator=fixed_gen)
    fixed_c = train_bank.sample(fixed_labels, generator=fixed_gen)
    hist = {k: [] for k in ("loss_d", "loss_g", "logit_real", "logit_fake", "guide_ce")}
    step, best_fd, best_step, wall, fd_history = 0, float("inf"), -1, 0.0, []
    if state is not None:
        ckpt.restore(state, G=G, G_ema=G_ema, D=D, opt_g=opt_g, opt_d=opt_d)
        gen.set_state(state["rng"])
        fixed_z, fixed_c = state["fixed_z"], state["fixed_c"]
        step, best_fd, best_step = state["step"], state["best_fd"], state["best_step"]
        wall, fd_history = state["wall_seconds"], list(state.get("fd_history", []))
        hist = {k: list(state["history"].get(k, [])) for k in hist}
        log.info("resuming GAN from step %d", step)
    guide = None
    if g.guidance > 0:
        if not projected:
            raise ValueError(
                "gan.guidance needs gan.discriminator=projected (it reads its features); "
                "with the resnet discriminator set gan.guidance=0"
            )
        guide = fit_guide(
            features,
            images,
            labels,
            aug,
            torch.Generator().manual_seed(cfg.seed),
            dev,
            negatives=g.guide_negatives,
        )
    scorer = CheckpointFD(cfg, images, labels, items, val_bank, dev) if g.fd_samples > 0 else None

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

    def d_step() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx, c = batch(B)
        with torch.no_grad():
            fake = G(noise(B), c)  # (B, 3, R, R)
            x_real, x_fake = aug(real(idx), generator=gen), aug(fake, generator=gen)
            if projected:  # the frozen features need no gradient in D's step
                x_real, x_fake = features(x_real), features(x_fake)
        if projected:
            d_real, d_fake = D(None, c, maps=x_real), D(None, c, maps=x_fake)
            loss = projected_hinge(d_real, d_fake)
            d_real, d_fake = (
                torch.cat([t.flatten() for t in d_real]),
                torch.cat([t.flatten() for t in d_fake]),
            )
        else:
            d_real, d_fake = D(x_real, c), D(x_fake, c)
            loss = loss_hinge_dis(d_real, d_fake)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        return loss, d_real.mean(), d_fake.mean()

    def g_step() -> tuple[torch.Tensor, torch.Tensor]:
        idx, c = batch(B)
        x = aug(G(noise(B), c), generator=gen)
        ce = torch.zeros((), device=dev)
        if projected:
            maps, pooled = features(x, pooled=True)
            loss = projected_hinge(None, D(None, c, maps=maps))
            y = labels[idx].to(dev)
            if guide is not None and (y >= 0).any():  # unlabelled paintings (-1) get no guidance
                ce = torch.nn.functional.cross_entropy(guide(pooled), y, ignore_index=-1)
                loss = loss + g.guidance * ce
        else:
            loss = loss_hinge_gen(D(x, c))
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        return loss, ce

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
                "fd_history": fd_history,
                "device": str(dev),
            },
            is_best=is_best,
        )

    B = g.batch_size
    log.info(
        "GAN: %s discriminator%s, %d steps of batch %d on %s",
        g.discriminator,
        f", emotion guidance {g.guidance:g}" if guide is not None else "",
        g.steps,
        B,
        dev,
    )
    bar = tqdm(total=g.steps, initial=step, desc="gan", unit="step", disable=None)
    t0 = t_log = time.perf_counter()
    start_step = step
    while step < g.steps:
        G.train()
        D.train()
        for _ in range(g.d_steps):
            loss_d, logit_real, logit_fake = d_step()
        loss_g, ce = g_step()
        ema_update(G_ema, G, decay=min(g.ema, (1 + step) / (10 + step)))  # warm-up, then cfg.ema
        step += 1
        for k, v in (
            ("loss_d", loss_d),
            ("loss_g", loss_g),
            ("logit_real", logit_real),
            ("logit_fake", logit_fake),
            ("guide_ce", ce),
        ):
            hist[k].append(float(v.detach()))
        bar.update(1)
        bar.set_postfix(d=f"{hist['loss_d'][-1]:.3f}", g=f"{hist['loss_g'][-1]:.3f}")
        done = step == g.steps
        if step % g.log_every == 0 and not done:  # progress for logs that are not a terminal
            rate = (time.perf_counter() - t_log) / max(step - start_step, 1)
            log.info(
                "step %d/%d: loss D %.3f G %.3f%s, %.2f s/step, ~%.0f min left",
                step,
                g.steps,
                np.mean(hist["loss_d"][-g.log_every :]),
                np.mean(hist["loss_g"][-g.log_every :]),
                f", guide CE {np.mean(hist['guide_ce'][-g.log_every :]):.3f}" if guide else "",
                rate,
                rate * (g.steps - step) / 60,
            )
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
            if scorer is not None:
                fd_history.append((step, fd))
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
            plot_curves(hist, fd_history, out / "curves.png")
            t0 = time.perf_counter()  # FD scoring and plotting are not training time
    bar.close()
    return {
        "steps": step,
        "wall_seconds": round(wall, 2),
        "device": str(dev),
        "sec_per_step": round(wall / max(step, 1), 4),
        "best_step": best_step,
        "best_fd_effnet": None if best_fd == float("inf") else best_fd,
        "fd_history": [[int(s), float(f)] for s, f in fd_history],
        "n_train_images": len(items),
        "condition": g.condition,
        "discriminator": g.discriminator,
        "guidance": g.guidance,
    }
