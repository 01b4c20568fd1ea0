"""Conditional GAN that paints from the shared 128-d embedding.

The generator is a small BigGAN: the noise ``z`` is split into one chunk per up-block
plus one for the 4x4 seed; each residual up-block is modulated by conditional batch
norm whose gain and bias are linear in ``[shared(c), z_chunk]`` (gain = 1 + W_g y,
bias = W_b y).  The discriminator is a residual SNGAN/BigGAN one with spectral norm on
every layer and projection conditioning (logit = w.h + <W_p c, h>).

>>> from sound2sight.config import GANConfig
>>> cfg = GANConfig(g_ch=8, d_ch=8)
>>> G, D = Generator(cfg), Discriminator(cfg)
>>> x = G(torch.randn(2, cfg.z_dim), torch.randn(2, cfg.cond_dim))
>>> x.shape, D(x, torch.randn(2, cfg.cond_dim)).shape
(torch.Size([2, 3, 64, 64]), torch.Size([2]))
"""

from __future__ import annotations

import copy
import logging
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from sound2sight.config import GANConfig

__all__ = [
    "ConditionalBatchNorm2d",
    "Generator",
    "Discriminator",
    "ConditionBank",
    "ema_update",
    "make_ema",
    "load_generator",
    "generate",
]

logger = logging.getLogger(__name__)

# Channel multipliers of the base width, from the 4x4 seed to the output side.
_G_MULTS = {64: (8, 8, 4, 2, 1), 128: (8, 8, 4, 4, 2, 1)}
# Discriminator block outputs; every block halves the side except the last.
_D_MULTS = {64: (1, 2, 4, 8, 8), 128: (1, 2, 4, 8, 8, 8)}


def _check_resolution(cfg: GANConfig) -> None:
    if cfg.resolution not in _G_MULTS:
        raise ValueError(f"gan.resolution={cfg.resolution}: expected one of {sorted(_G_MULTS)}")


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose affine gain and bias are predicted from a condition vector.

    >>> cbn = ConditionalBatchNorm2d(4, cond_dim=3)
    >>> cbn(torch.randn(2, 4, 5, 5), torch.randn(2, 3)).shape
    torch.Size([2, 4, 5, 5])
    """

    def __init__(self, num_features: int, *, cond_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Linear(cond_dim, num_features, bias=False)
        self.bias = nn.Linear(cond_dim, num_features, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(y)  # (B, C)
        bias = self.bias(y)  # (B, C)
        return self.bn(x) * gain[:, :, None, None] + bias[:, :, None, None]


class _GBlock(nn.Module):
    """CBN-ReLU-up-conv-CBN-ReLU-conv, plus an upsampled 1x1 shortcut; doubles the side."""

    def __init__(self, c_in: int, c_out: int, *, cond_dim: int) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(c_in, cond_dim=cond_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn2 = ConditionalBatchNorm2d(c_out, cond_dim=cond_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2)  # (B, c_in, 2H, 2W)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))  # (B, c_out, 2H, 2W)
        return h + F.interpolate(self.skip(x), scale_factor=2)  # 1x1 conv commutes with nearest up


class Generator(nn.Module):
    """``(z, c)`` -> image in [-1, 1] of side ``cfg.resolution``.

    Parameters
    ----------
    cfg : GANConfig
        ``z_dim``, ``cond_dim``, ``g_ch`` and ``resolution`` (64 or 128) are used.

    >>> G = Generator(GANConfig(resolution=128, g_ch=4))
    >>> G(torch.randn(1, 128), torch.randn(1, 128)).shape
    torch.Size([1, 3, 128, 128])
    """

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        _check_resolution(cfg)
        self.cfg = cfg
        chans = [cfg.g_ch * m for m in _G_MULTS[cfg.resolution]]
        n_blocks = len(chans) - 1
        self.z_chunk = cfg.z_dim // (n_blocks + 1)
        self.z_seed = cfg.z_dim - n_blocks * self.z_chunk  # the seed takes the remainder
        cond = cfg.cond_dim + self.z_chunk  # each block sees [shared(c), its z chunk]
        self.shared = nn.Linear(cfg.cond_dim, cfg.cond_dim)
        self.seed = nn.Linear(self.z_seed, chans[0] * 16)
        self.blocks = nn.ModuleList(
            _GBlock(a, b, cond_dim=cond) for a, b in zip(chans[:-1], chans[1:], strict=True)
        )
        self.out_bn = nn.BatchNorm2d(chans[-1])
        self.out_conv = nn.Conv2d(chans[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(z, [self.z_seed] + [self.z_chunk] * len(self.blocks), dim=1)
        s = self.shared(c)  # (B, cond_dim)
        h = self.seed(chunks[0]).view(z.shape[0], -1, 4, 4)  # (B, C0, 4, 4)
        for block, zc in zip(self.blocks, chunks[1:], strict=True):
            h = block(h, torch.cat([s, zc], dim=1))  # side doubles each block
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))  # (B, 3, R, R)


class _DBlock(nn.Module):
    """(ReLU)-SNconv-ReLU-SNconv-(avgpool), plus an SN 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, *, down: bool, preact: bool) -> None:
        super().__init__()
        self.conv1 = spectral_norm(nn.Conv2d(c_in, c_out, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = spectral_norm(nn.Conv2d(c_in, c_out, 1))
        self.down, self.preact = down, preact

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preact else x
        h = self.conv2(F.relu(self.conv1(h)))  # (B, c_out, H, W)
        s = x
        if self.preact:  # shortcut: conv then pool (pool first for the optimised block)
            s = self.skip(s)
            s = F.avg_pool2d(s, 2) if self.down else s
        else:
            s = self.skip(F.avg_pool2d(s, 2) if self.down else s)
        h = F.avg_pool2d(h, 2) if self.down else h  # (B, c_out, H/2, W/2)
        return h + s


class Discriminator(nn.Module):
    """``(x, c)`` -> one logit per image, with projection conditioning.

    >>> D = Discriminator(GANConfig(d_ch=4))
    >>> D(torch.randn(3, 3, 64, 64), torch.randn(3, 128)).shape
    torch.Size([3])
    """

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        _check_resolution(cfg)
        self.cfg = cfg
        chans = [cfg.d_ch * m for m in _D_MULTS[cfg.resolution]]
        blocks, c_in = [], 3
        for i, c_out in enumerate(chans):
            blocks.append(_DBlock(c_in, c_out, down=i < len(chans) - 1, preact=i > 0))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.linear = spectral_norm(nn.Linear(c_in, 1))
        self.embed = spectral_norm(nn.Linear(cfg.cond_dim, c_in, bias=False))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # (B, C): sum-pooled 4x4 features
        return self.linear(h).squeeze(1) + (self.embed(c) * h).sum(dim=1)  # (B,)


class ConditionBank:
    """Condition vectors grouped by emotion; draws one per requested label.

    Parameters
    ----------
    embeddings : array (N, D)
        Shared-space vectors (audio embeddings for ``condition='audio'``).
    labels : array (N,) of int
        Emotion index of each row.

    >>> bank = ConditionBank(np.eye(4, dtype=np.float32), np.array([0, 0, 1, 2]))
    >>> bank.sample(torch.tensor([1, 2, 0]), generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 4])
    """

    def __init__(self, embeddings: np.ndarray, labels: np.ndarray) -> None:
        self.embeddings = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        if self.embeddings.ndim != 2 or len(self.embeddings) != len(self.labels):
            raise ValueError("ConditionBank: embeddings must be (N, D) with N labels")
        self.index = {
            int(k): torch.nonzero(self.labels == k).squeeze(1) for k in self.labels.unique()
        }

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def sample(
        self, labels: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One random row of the matching emotion per label: ``(B,)`` -> ``(B, D)``."""
        out = torch.empty(len(labels), self.dim)
        for k in labels.unique().tolist():
            if k not in self.index:
                raise KeyError(f"ConditionBank has no condition for emotion index {k}")
            where = torch.nonzero(labels.cpu() == k).squeeze(1)
            pool = self.index[k]
            pick = torch.randint(len(pool), (len(where),), generator=generator)
            out[where] = self.embeddings[pool[pick]]
        return out


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, *, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` for parameters; buffers are copied."""
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm.detach(), 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)


def make_ema(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` for sampling."""
    return copy.deepcopy(model).requires_grad_(False)


def load_generator(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    weights: str = "G_ema",
    state: dict | None = None,
) -> tuple[Generator, GANConfig]:
    """The EMA generator of a GAN checkpoint, in eval mode, with its config.

    Parameters
    ----------
    path : path-like
        ``best.pt`` or ``last.pt`` written by :func:`sound2sight.painting.train.train_gan`.
    weights : {"G_ema", "G"}
        The EMA weights (what every sampler uses) or the raw generator's (for ablations).
    state : dict, optional
        The checkpoint already read from ``path`` by the caller (saves a second read).
    """
    from sound2sight.config import config_from_dict
    from sound2sight.io import safe_torch_load

    if state is None:
        state = safe_torch_load(path)
    if "G_ema" not in state or "config" not in state:
        raise ValueError(f"{path}: not a GAN checkpoint (no G_ema/config)")
    cfg = config_from_dict(state["config"]).gan
    G = Generator(cfg)
    if weights not in ("G_ema", "G"):
        raise ValueError(f"weights={weights!r}: expected 'G_ema' or 'G'")
    G.load_state_dict(state[weights])
    return G.to(device).eval().requires_grad_(False), cfg


@torch.no_grad()
def generate(
    G: Generator, c: torch.Tensor, *, generator: torch.Generator, truncation: float = 0.0
) -> np.ndarray:
    """Paint one image per condition row: ``(B, cond_dim)`` -> uint8 ``(B, H, W, 3)``.

    Parameters
    ----------
    G : Generator
        Usually the EMA generator from :func:`load_generator` (eval mode).
    c : Tensor (B, cond_dim)
        Shared-space embeddings.
    generator : torch.Generator
        Source of the noise (CPU generator), so calls are reproducible.
    truncation : float >= 0
        When > 0, noise entries beyond this magnitude are redrawn (truncation trick).

    >>> G = Generator(GANConfig(g_ch=4)).eval()
    >>> generate(G, torch.zeros(2, 128), generator=torch.Generator().manual_seed(0)).shape
    (2, 64, 64, 3)
    """
    device = next(G.parameters()).device
    z = torch.randn(len(c), G.cfg.z_dim, generator=generator)
    if truncation > 0:
        while (bad := z.abs() > truncation).any():
            z[bad] = torch.randn(int(bad.sum()), generator=generator)
    x = G(z.to(device), c.to(device, torch.float32))  # (B, 3, R, R) in [-1, 1]
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()  # (B, R, R, 3)
