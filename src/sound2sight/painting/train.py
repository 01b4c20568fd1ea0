"""The GAN stage: an instance-conditioned GAN in the TAEF2 latent space of the paintings.

Every training painting (the labelled ones and, with ``gan.unlabelled``, the unlabelled
ones) is encoded once into a TAEF2 latent (:mod:`~sound2sight.painting.latents`) and paired
with its own point in the shared 128-d space (its EfficientNet-Lite0 feature through the
image head).  The discriminator sees ``(latent, point)`` pairs; a generated latent is
conditioned on another random painting's point (IC-GAN, Casanova et al. 2021), so the
generator learns to paint *around* any painting's point, and no emotion class can
collapse to one picture.  The points are whitened with the training paintings' statistics
inside both networks (:class:`~sound2sight.painting.model.ConditionWhitening`): the shared space
crowds paintings by emotion, and the instance lives in its small directions.  Both networks see
the latents through DiffAugment (mirror, shift); TTUR (D learns 4x faster than G).
At inference the voice's point, or the paintings nearest it (``gan.condition``), stand in.

Writes ``gan/{best,last}.pt``, ``gan/samples/step_XXXXXX.png`` (decoded; one row per
emotion, conditioned as the pipeline conditions), ``gan/curves.png`` and ``gan/train.log``.

>>> train_gan(load_config(), "runs/demo")["steps"]  # doctest: +SKIP
300
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
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
    plot_curves,
    save_grid,
)
from sound2sight.painting.evaluate import CheckpointFD
from sound2sight.painting.latents import painting_latents
from sound2sight.painting.model import (
    Discriminator,
    Generator,
    ema_update,
    inference_conditions,
    make_ema,
)
from sound2sight.painting.taef2 import decode_latents
from sound2sight.train.common import (
    Checkpointer,
    attach_log_file,
    cache_root,
    resolve_device,
    seed_everything,
    stage_dir,
)

__all__ = ["train_gan", "training_paintings"]

log = logging.getLogger(__name__)
GRID_COLS = 8  # images per emotion row in the sample grids
LECAM_DECAY = 0.99  # of the running means gan.lecam compares D's logits with (Tseng et al.)
R1_EVERY = 4  # gan.r1 is applied every this many D steps, scaled up as much (lazy R1, StyleGAN2)


def lr_scale(step: int, steps: int, decay_from: int) -> float:
    """The factor on both Adam lrs at ``step``: 1, then linear to 0 at ``steps`` from ``decay_from``.

    ``decay_from`` 0 keeps the lrs constant. It is a function of the step alone, so a resumed
    run continues the same schedule.

    >>> [lr_scale(s, 100, 50) for s in (0, 49, 50, 75, 99)]
    [1.0, 1.0, 1.0, 0.5, 0.02]
    >>> lr_scale(99, 100, 0)
    1.0
    """
    if decay_from <= 0 or step < decay_from or decay_from >= steps:
        return 1.0
    return (steps - step) / (steps - decay_from)


def train_gan(
    cfg: Config, run_dir: str | Path, *, resume: bool = True, device: str | None = None
) -> dict:
    """Train (or resume) the latent GAN; return its training cost.

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


def training_paintings(cfg: Config, run_dir: Path, joint):
    """The training paintings as ``(items, latents (N, 32, s, s) float16, labels (N,), points (N, 128))``.

    ``labels`` is the emotion index, -1 for an unlabelled painting; ``points`` are the
    paintings' own projected image embeddings.
    """
    g = cfg.gan
    items = read_manifest(run_dir / "data" / "art_manifest.csv", ArtItem)
    items = [it for it in items if it.split == "train" and (it.label or g.unlabelled)]
    if not any(it.label for it in items):
        raise ValueError("no labelled training paintings in the art manifest")
    latents, keep = painting_latents(
        [it.path for it in items], size=g.image_size, cache_root=cache_root(cfg)
    )
    items = [items[i] for i in keep]
    labels = torch.tensor([EMOTIONS.index(it.label) if it.label else -1 for it in items])
    points = image_conditions(cfg, run_dir, joint, [it.path for it in items])
    log.info(
        "GAN training set: %d paintings (%d labelled) as TAEF2 latents %s",
        len(items),
        int((labels >= 0).sum()),
        tuple(latents.shape[1:]),
    )
    return items, latents, labels, points


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
    items, latents, labels, points = training_paintings(cfg, run_dir, joint)
    labelled = torch.nonzero(labels >= 0).squeeze(1)
    gallery = points[labelled]  # what the pipeline's neighbours are drawn from
    ckpt = Checkpointer(out, cfg)
    state = ckpt.load_last() if resume else None
    if state is not None and state["config"]["gan"].get("image_size") != g.image_size:
        raise ValueError(
            f"{ckpt.last} was trained at gan.image_size={state['config']['gan'].get('image_size')}"
            f", the config says {g.image_size}: set it back, or delete gan/last.pt to start over"
        )
    G, D = Generator(g), Discriminator(g)
    G.whiten.fit(points)  # the instance lives in the small directions of the shared space
    D.whiten.load_state_dict(G.whiten.state_dict())
    G, D = G.to(dev), D.to(dev)
    probe_acc = G.probe.fit(latents[labelled], labels[labelled].numpy())
    log.info("latent emotion probe (candidate picking): training balanced accuracy %.3f", probe_acc)
    G_ema = make_ema(G)
    betas = (0.0, 0.99)
    opt_g = torch.optim.Adam(G.parameters(), lr=g.lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=g.lr_d, betas=betas)
    aug = DiffAugment(g.diffaugment)
    fixed_gen = torch.Generator().manual_seed(cfg.seed + 1)
    fixed_labels = torch.arange(len(EMOTIONS)).repeat_interleave(GRID_COLS)
    fixed_z = torch.randn(len(fixed_labels), g.z_dim, generator=fixed_gen)
    fixed_c = inference_conditions(
        train_bank.sample(fixed_labels, generator=fixed_gen), gallery, g, generator=fixed_gen
    )
    hist = {k: [] for k in ("loss_d", "loss_g", "logit_real", "logit_fake")}
    lecam = torch.zeros(2, device=dev)  # running means of D's real and painted logits
    r1_hist = []  # the R1 penalties seen this sitting (for the progress lines)
    step, best_fd, best_step, wall, fd_history = 0, float("inf"), -1, 0.0, []
    if state is not None:
        ckpt.restore(state, G=G, G_ema=G_ema, D=D, opt_g=opt_g, opt_d=opt_d)
        gen.set_state(state["rng"])
        fixed_z, fixed_c = state["fixed_z"], state["fixed_c"]
        step, best_fd, best_step = state["step"], state["best_fd"], state["best_step"]
        wall, fd_history = state["wall_seconds"], list(state.get("fd_history", []))
        lecam = state.get("lecam", lecam).to(dev)
        hist = {k: list(state["history"].get(k, [])) for k in hist}
        log.info("resuming GAN from step %d", step)
    scorer = (
        CheckpointFD(cfg, run_dir, items, labels, val_bank, gallery, dev)
        if g.fd_samples > 0
        else None
    )
    N, B = len(latents), g.batch_size

    def draw(n: int) -> torch.Tensor:
        return torch.randint(N, (n,), generator=gen)

    def noise(n: int) -> torch.Tensor:
        return torch.randn(n, g.z_dim, generator=gen).to(dev)

    def d_step(r1: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx, other = draw(B), draw(B)  # real pairs; a fake gets another painting's point
        x_real, c_real = latents[idx].to(dev).float(), points[idx].to(dev)
        c_fake = points[other].to(dev)
        with torch.no_grad():
            fake = G(noise(B), c_fake, generator=gen)  # (B, 32, s, s)
        x_aug = aug(x_real, generator=gen)
        if r1:  # the penalty's gradient is taken at the latents D actually sees
            x_aug = x_aug.detach().requires_grad_(True)
        d_real = D(x_aug, c_real)
        d_fake = D(aug(fake, generator=gen), c_fake)
        loss = loss_hinge_dis(d_real, d_fake)
        if r1:  # R1: gamma/2 * |grad_x D(x_real)|^2, on real latents only
            (grad,) = torch.autograd.grad(d_real.sum(), x_aug, create_graph=True)
            penalty = grad.pow(2).flatten(1).sum(1).mean()
            r1_hist.append(float(penalty.detach()))
            loss = loss + 0.5 * g.r1 * R1_EVERY * penalty
        if g.lecam > 0:  # LeCam: real logits near the painted ones' running mean, and vice versa
            lecam[0].mul_(LECAM_DECAY).add_((1 - LECAM_DECAY) * d_real.detach().mean())
            lecam[1].mul_(LECAM_DECAY).add_((1 - LECAM_DECAY) * d_fake.detach().mean())
            reg = F.relu(d_real - lecam[1]).pow(2).mean() + F.relu(lecam[0] - d_fake).pow(2).mean()
            loss = loss + g.lecam * reg
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        return loss, d_real.mean(), d_fake.mean()

    def g_step() -> torch.Tensor:
        c = points[draw(B)].to(dev)
        h = D.features(aug(G(noise(B), c, generator=gen), generator=gen))  # (B, C)
        loss = loss_hinge_gen(D(None, c, h=h))
        if g.feature_match > 0:  # the painted batch's mean D features towards a real batch's
            with torch.no_grad():
                real = D.features(aug(latents[draw(B)].to(dev).float(), generator=gen))
            loss = loss + g.feature_match * (h.mean(0) - real.mean(0)).pow(2).mean()
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        return loss

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
                "lecam": lecam.cpu(),
                "device": str(dev),
                "n_train_images": N,
            },
            is_best=is_best,
        )

    log.info(
        "GAN: latent %s at %d px, %d paintings, %d steps of batch %d on %s",
        tuple(latents.shape[1:]),
        g.image_size,
        N,
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
        scale = lr_scale(step, g.steps, g.lr_decay_from)
        for opt, lr in ((opt_g, g.lr_g), (opt_d, g.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * scale
        for k in range(g.d_steps):  # gan.r1 on every R1_EVERY-th D step of the run
            r1 = g.r1 > 0 and (step * g.d_steps + k) % R1_EVERY == 0
            loss_d, logit_real, logit_fake = d_step(r1)
        loss_g = g_step()
        ema_update(G_ema, G, decay=g.ema if step >= g.ema_start else 0.0)  # a copy until then
        step += 1
        for k, v in (
            ("loss_d", loss_d),
            ("loss_g", loss_g),
            ("logit_real", logit_real),
            ("logit_fake", logit_fake),
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
                f", R1 |grad|^2 {np.mean(r1_hist[-50:]):.3g}" if r1_hist else "",
                rate,
                rate * (g.steps - step) / 60,
            )
        if step % g.sample_every == 0 or done:
            G_ema.eval()
            with torch.no_grad():
                fixed_noise = torch.Generator().manual_seed(cfg.seed + 2)  # gan.noise_inject
                z = G_ema(
                    fixed_z.to(dev), fixed_c.to(dev), generator=fixed_noise
                )  # (3*cols, 32, s, s)
            save_grid(decode_latents(z), out / "samples" / f"step_{step:06d}.png", cols=GRID_COLS)
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
        "n_train_images": N,
        "n_labelled": int(len(labelled)),
        "image_size": g.image_size,
        "latent_probe_train_balanced_accuracy": None
        if np.isnan(probe_acc)
        else round(probe_acc, 4),
    }
