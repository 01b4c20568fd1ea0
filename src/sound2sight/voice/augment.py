"""Training-time augmentation of log-Mel batches (pure functions of a numpy ``Generator``).

Which of these help speaker-independent accuracy was measured in ``benchmarks/ser.py``;
the ones that helped are on by default in :class:`~sound2sight.config.TrainConfig`.
"""

from __future__ import annotations

import numpy as np
import torch

from sound2sight.config import TrainConfig

__all__ = ["augment"]


def augment(
    x: torch.Tensor, cfg: TrainConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """Training-time augmentation of a batch of log-Mels ``(B, n_mels, T)``.

    In order: random time crop (``crop_frames``), spectral tilt (``gain_db``), SpecAugment
    (one frequency and two time masks, set to 0, the clip mean), mixup.

    Returns
    -------
    (x, perm, lam)
        ``perm`` is the mixup partner permutation (``None`` without mixup); the loss is
        ``lam * CE(y) + (1 - lam) * CE(y[perm])``.

    >>> out, perm, lam = augment(torch.ones(4, 16, 50), TrainConfig(crop_frames=40),
    ...                          np.random.default_rng(0))
    >>> out.shape, perm, lam
    (torch.Size([4, 16, 40]), None, 1.0)
    """
    b, f, t = x.shape
    if 0 < cfg.crop_frames < t:
        start = torch.from_numpy(rng.integers(0, t - cfg.crop_frames + 1, size=b))
        idx = start[:, None] + torch.arange(cfg.crop_frames)  # (B, crop)
        x = x.gather(2, idx[:, None, :].expand(b, f, cfg.crop_frames))  # (B, F, crop)
        t = cfg.crop_frames
    if cfg.gain_db > 0:
        slope = torch.from_numpy(rng.uniform(-1, 1, size=(b, 1, 1))).float() * cfg.gain_db / 10
        x = x + slope * torch.linspace(-1, 1, f)[None, :, None]  # (B, F, T)
    if cfg.spec_augment:
        keep = torch.ones(b, f, t)
        fw = rng.integers(0, cfg.freq_mask + 1, size=b)
        f0 = rng.integers(0, np.maximum(f - fw, 0) + 1)
        bands = torch.arange(f)[None, :]  # (1, F)
        fm = (bands >= torch.from_numpy(f0)[:, None]) & (bands < torch.from_numpy(f0 + fw)[:, None])
        keep = keep * (~fm)[:, :, None]  # (B, F, T)
        frames = torch.arange(t)[None, :]  # (1, T)
        for _ in range(2):
            tw = rng.integers(0, min(cfg.time_mask, t // 4) + 1, size=b)
            t0 = rng.integers(0, np.maximum(t - tw, 0) + 1)
            tm = (frames >= torch.from_numpy(t0)[:, None]) & (
                frames < torch.from_numpy(t0 + tw)[:, None]
            )
            keep = keep * (~tm)[:, None, :]
        x = x * keep
    if cfg.mixup > 0 and b > 1:
        lam = float(rng.beta(cfg.mixup, cfg.mixup))
        lam = max(lam, 1 - lam)  # the first label stays dominant
        perm = torch.from_numpy(rng.permutation(b))
        return lam * x + (1 - lam) * x[perm], perm, lam
    return x, None, 1.0
