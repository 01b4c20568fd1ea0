"""Conditional GAN that paints in the latent space of the pretrained TAEF2 autoencoder.

The generator is a small BigGAN whose output is a TAEF2 latent (``32 x 16 x 16`` for a
128 px painting, ``32 x 32 x 32`` for 256 px), which :mod:`~sound2sight.painting.taef2`'s
decoder renders.  The noise ``z`` is split into one chunk per up-block plus one for the
4x4 seed (hierarchical noise); every residual up-block is modulated by conditional batch
norm whose gain and bias are linear in ``[mlp(whiten(c)), z_chunk]``.  The condition ``c``
is a point of the shared 128-d space (whitened with the training paintings' statistics, see
:class:`ConditionWhitening`): in training a real painting's own projected image
embedding (instance conditioning, IC-GAN), at inference the voice's point or the
paintings nearest it.  The discriminator is a residual SNGAN one on latents with spectral
norm on every layer and projection conditioning (logit = w.h + <W_p c, h>).

The generator also carries :class:`LatentProbe`, a tiny emotion probe on latent
statistics, so candidates can be judged before they are decoded.

>>> from sound2sight.config import GANConfig
>>> cfg = GANConfig(g_ch=8, d_ch=8)
>>> G, D = Generator(cfg), Discriminator(cfg)
>>> x = G(torch.randn(2, cfg.z_dim), torch.randn(2, cfg.cond_dim))
>>> x.shape, D(x, torch.randn(2, cfg.cond_dim)).shape
(torch.Size([2, 32, 16, 16]), torch.Size([2]))
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
from sound2sight.painting.taef2 import LATENT_CHANNELS

__all__ = [
    "ConditionalBatchNorm2d",
    "ConditionWhitening",
    "Generator",
    "Discriminator",
    "MinibatchStd",
    "LatentProbe",
    "ConditionBank",
    "latent_side",
    "neighbour_conditions",
    "inference_conditions",
    "ema_update",
    "make_ema",
    "load_generator",
    "sample_latents",
    "generate",
]

logger = logging.getLogger(__name__)

# Generator channel multipliers of the base width, from the 4x4 seed to the latent side.
_G_MULTS = {16: (4, 2, 1), 32: (8, 4, 2, 1)}
# Discriminator block outputs; every block halves the side except the last (4x4).
_D_MULTS = {16: (1, 2, 4), 32: (1, 2, 4, 4)}


def generator_mults(cfg: GANConfig) -> tuple[int, ...]:
    """Generator widths as multiples of ``gan.g_ch``, seed first (``gan.g_mults`` or the default).

    >>> generator_mults(GANConfig()), generator_mults(GANConfig(g_mults="4,2,2"))
    ((4, 2, 1), (4, 2, 2))
    """
    default = _G_MULTS[latent_side(cfg)]
    if not cfg.g_mults:
        return default
    parts = cfg.g_mults.split(",")
    if len(parts) != len(default) or not all(v.strip().isdigit() and int(v) > 0 for v in parts):
        raise ValueError(
            f"gan.g_mults={cfg.g_mults!r}: must be {len(default)} positive integers at "
            f"{cfg.image_size} px, comma-separated (the seed's width and each block's, in "
            f"multiples of gan.g_ch, e.g. {','.join(map(str, default))}), or empty for the default"
        )
    return tuple(int(v) for v in parts)


def latent_side(cfg: GANConfig) -> int:
    """Side of the latent the GAN paints: ``image_size / 8`` (16 for 128 px, 32 for 256 px)."""
    side = cfg.image_size // 8
    if side not in _G_MULTS or cfg.image_size % 8:
        raise ValueError(f"gan.image_size={cfg.image_size}: expected 128 or 256")
    return side


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


class _NoiseInjection(nn.Module):
    """Adds one map of per-pixel Gaussian noise, scaled per channel (StyleGAN; scales start
    at 0, so the block starts as without it)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(channels))

    def forward(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, _, hh, ww = h.shape
        noise = torch.randn(b, 1, hh, ww, generator=generator).to(h.device, h.dtype)
        return h + self.scale[None, :, None, None] * noise


class SelfAttention2d(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019): every position attends to the whole map (keys
    and values max-pooled 2x2, as BigGAN's form of it), the result added through a gain
    ``gamma`` that starts at 0 (the layer starts as the identity).
    ``sn`` puts spectral norm on its 1x1 convs (the discriminator's).

    >>> a = SelfAttention2d(16)
    >>> x = torch.randn(2, 16, 8, 8)
    >>> bool(torch.equal(a(x), x))  # gamma = 0 at the start
    True
    """

    def __init__(self, channels: int, *, sn: bool = False) -> None:
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        k = max(channels // 8, 1)
        self.query = wrap(nn.Conv2d(channels, k, 1, bias=False))
        self.key = wrap(nn.Conv2d(channels, k, 1, bias=False))
        self.value = wrap(nn.Conv2d(channels, max(channels // 2, 1), 1, bias=False))
        self.out = wrap(nn.Conv2d(max(channels // 2, 1), channels, 1, bias=False))
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, k)
        k = F.max_pool2d(self.key(x), 2).flatten(2)  # (B, k, HW/4): SAGAN pools keys/values
        v = F.max_pool2d(self.value(x), 2).flatten(2)  # (B, c/2, HW/4)
        attn = torch.softmax(q @ k, dim=-1)  # (B, HW, HW/4)
        o = (v @ attn.transpose(1, 2)).view(b, -1, h, w)  # (B, c/2, H, W)
        return x + self.gamma * self.out(o)


class _GBlock(nn.Module):
    """CBN-ReLU-up-conv-CBN-ReLU-conv, plus an upsampled 1x1 shortcut; doubles the side
    (with ``noise``, per-pixel noise after each conv)."""

    def __init__(self, c_in: int, c_out: int, *, cond_dim: int, noise: bool = False) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(c_in, cond_dim=cond_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn2 = ConditionalBatchNorm2d(c_out, cond_dim=cond_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)
        self.noise1 = _NoiseInjection(c_out) if noise else None
        self.noise2 = _NoiseInjection(c_out) if noise else None

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2)  # (B, c_in, 2H, 2W)
        h = self.conv1(h)
        if self.noise1 is not None:
            h = self.noise1(h, generator)
        h = self.conv2(F.relu(self.bn2(h, y)))  # (B, c_out, 2H, 2W)
        if self.noise2 is not None:
            h = self.noise2(h, generator)
        return h + F.interpolate(self.skip(x), scale_factor=2)  # 1x1 conv commutes with nearest up


class ConditionWhitening(nn.Module):
    """ZCA whitening of the shared-space conditions, fitted on the training paintings' points.

    The shared space is trained to sort paintings by emotion, so its points crowd into three
    tight regions (within an emotion, paintings' cosine similarity is ~0.95; two directions
    hold ~70 % of the variance).  What tells one painting from another lives in the small
    directions; whitening gives every direction unit variance, so the generator and the
    discriminator's projection can read the instance, not only its emotion.  Unfitted, it is
    the identity.

    >>> w = ConditionWhitening(3)
    >>> x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([10.0, 1.0, 0.3])
    >>> w.fit(x); y = w(x)
    >>> [round(v, 1) for v in y.std(0).tolist()]
    [1.0, 1.0, 1.0]
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("matrix", torch.eye(dim))

    @torch.no_grad()
    def fit(self, points: torch.Tensor, *, floor: float = 1e-4) -> None:
        x = points.double()
        mean = x.mean(0)
        cov = torch.cov((x - mean).T)
        ev, vec = torch.linalg.eigh(cov)
        ev = ev.clamp(min=floor * float(ev.max()))  # directions with no spread stay bounded
        self.mean.copy_(mean.float())
        self.matrix.copy_((vec @ torch.diag(ev.rsqrt()) @ vec.T).float())

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return (c - self.mean) @ self.matrix


class LatentProbe(nn.Module):
    """Emotion probe on a latent's per-channel mean and standard deviation (64 numbers).

    A balanced logistic regression fit on the training paintings' latents
    (:meth:`fit`); its weights are buffers, so they travel in the generator's
    state dict.  Unfitted, it gives equal probabilities.

    >>> p = LatentProbe(n_classes=3)
    >>> p(torch.randn(2, 32, 4, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(self, n_classes: int = 3, channels: int = LATENT_CHANNELS) -> None:
        super().__init__()
        d = 2 * channels
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))
        self.register_buffer("weight", torch.zeros(n_classes, d))
        self.register_buffer("bias", torch.zeros(n_classes))

    @staticmethod
    def stats(x: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` -> ``(B, 2C)``: per-channel spatial mean and std."""
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    def fit(self, latents: torch.Tensor, labels: np.ndarray, *, C: float = 0.1) -> float:
        """Fit on labelled latents ``(N, C, h, w)``; returns training balanced accuracy
        (NaN, and no fit, when the labels hold fewer than two emotions)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import balanced_accuracy_score

        if len(np.unique(labels)) < 2:  # nothing to tell apart: stays unfitted (equal odds)
            return float("nan")
        s = self.stats(latents.float()).numpy()
        mean, std = s.mean(0), s.std(0) + 1e-6
        z = (s - mean) / std
        lr = LogisticRegression(C=C, max_iter=1000, class_weight="balanced").fit(z, labels)
        w = np.zeros(tuple(self.weight.shape), np.float32)
        b = np.full(len(w), -1e4, np.float32)  # a class absent from training is never picked
        if len(lr.classes_) > 2:
            w[lr.classes_], b[lr.classes_] = lr.coef_, lr.intercept_
        else:  # binary: sklearn keeps one row, for the second class (softmax of [0, s])
            b[lr.classes_[0]] = 0.0
            w[lr.classes_[1]], b[lr.classes_[1]] = lr.coef_[0], lr.intercept_[0]
        for name, v in (("mean", mean), ("std", std), ("weight", w), ("bias", b)):
            getattr(self, name).copy_(torch.as_tensor(np.asarray(v, np.float32)))
        return float(balanced_accuracy_score(labels, lr.predict(z)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.stats(x.float()) - self.mean) / self.std
        return torch.softmax(z @ self.weight.T + self.bias, dim=1)


class Generator(nn.Module):
    """``(z, c)`` -> TAEF2 latent ``(B, 32, S/8, S/8)`` for paintings of side ``cfg.image_size``.

    >>> G = Generator(GANConfig(image_size=256, g_ch=4))
    >>> G(torch.randn(1, 128), torch.randn(1, 128)).shape
    torch.Size([1, 32, 32, 32])
    """

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chans = [cfg.g_ch * m for m in generator_mults(cfg)]
        n_blocks = len(chans) - 1
        self.z_chunk = cfg.z_dim // (n_blocks + 1)
        self.z_seed = cfg.z_dim - n_blocks * self.z_chunk  # the seed takes the remainder
        cond = cfg.cond_dim + self.z_chunk  # each block sees [mlp(c), its z chunk]
        self.whiten = ConditionWhitening(cfg.cond_dim)
        self.shared = nn.Sequential(
            nn.Linear(cfg.cond_dim, cfg.cond_dim), nn.ReLU(), nn.Linear(cfg.cond_dim, cfg.cond_dim)
        )
        self.seed = nn.Linear(self.z_seed + cfg.cond_dim, chans[0] * 16)
        self.blocks = nn.ModuleList(
            _GBlock(a, b, cond_dim=cond, noise=cfg.noise_inject)
            for a, b in zip(chans[:-1], chans[1:], strict=True)
        )
        self.attention = SelfAttention2d(chans[-2]) if cfg.attention else None
        self.out_bn = nn.BatchNorm2d(chans[-1])
        self.out_conv = nn.Conv2d(chans[-1], LATENT_CHANNELS, 3, padding=1)
        self.probe = LatentProbe()

    def forward(
        self, z: torch.Tensor, c: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``generator`` draws the per-pixel noise of ``gan.noise_inject`` (CPU generator;
        default: torch's global one); without noise injection ``z`` alone is the noise."""
        chunks = torch.split(z, [self.z_seed] + [self.z_chunk] * len(self.blocks), dim=1)
        s = self.shared(self.whiten(c))  # (B, cond_dim)
        h = self.seed(torch.cat([chunks[0], s], dim=1)).view(z.shape[0], -1, 4, 4)  # (B, C0, 4, 4)
        for i, (block, zc) in enumerate(zip(self.blocks, chunks[1:], strict=True)):
            if self.attention is not None and i == len(self.blocks) - 1:
                h = self.attention(h)  # gan.attention: before the last block (S/16 side)
            h = block(h, torch.cat([s, zc], dim=1), generator)  # side doubles each block
        return self.out_conv(F.relu(self.out_bn(h)))  # (B, 32, S/8, S/8)


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


class MinibatchStd(nn.Module):
    """Appends one channel: the feature spread of the latent's group (StyleGAN, Karras et al.).

    The batch is split into groups of ``group`` latents (fewer when the batch does not divide:
    the largest divisor of the batch up to ``group``); each group's per-feature standard deviation
    is averaged to one number, broadcast as a constant map to its members. A batch of near-copies
    shows the discriminator a small spread, so a collapsing generator is told apart from real data.

    >>> m = MinibatchStd(4)
    >>> m(torch.randn(8, 16, 4, 4)).shape
    torch.Size([8, 17, 4, 4])
    >>> float(m(torch.ones(4, 2, 3, 3))[:, -1].max()) < 1e-3  # four copies: no spread
    True
    """

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group, b) + 1) if b % d == 0)
        y = x.view(g, b // g, c, h, w)  # member j of every group along dim 0
        std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/g,)
        std = std.view(1, -1, 1, 1, 1).expand(g, -1, 1, h, w).reshape(b, 1, h, w)
        return torch.cat([x, std], dim=1)  # (B, C+1, H, W)


class Discriminator(nn.Module):
    """``(latent, c)`` -> one logit per painting, with projection conditioning.

    >>> D = Discriminator(GANConfig(d_ch=4))
    >>> D(torch.randn(3, 32, 16, 16), torch.randn(3, 128)).shape
    torch.Size([3])
    """

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chans = [cfg.d_ch * m for m in _D_MULTS[latent_side(cfg)]]
        blocks, c_in = [], LATENT_CHANNELS
        for i, c_out in enumerate(chans):
            if cfg.mbstd and i == len(chans) - 1:  # gan.mbstd: the spread, before the last block
                blocks.append(MinibatchStd())
                c_in += 1
            blocks.append(_DBlock(c_in, c_out, down=i < len(chans) - 1, preact=i > 0))
            if i == 0 and cfg.attention:  # gan.attention: after the first block (S/16 side)
                blocks.append(SelfAttention2d(c_out, sn=True))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.linear = spectral_norm(nn.Linear(c_in, 1))
        self.whiten = ConditionWhitening(cfg.cond_dim)
        self.embed = spectral_norm(nn.Linear(cfg.cond_dim, c_in, bias=False))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 32, s, s)`` -> ``(B, C)``: the sum-pooled last-block features the logit reads."""
        return F.relu(self.blocks(x)).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor, c: torch.Tensor, *, h: torch.Tensor | None = None):
        """One logit per painting ``(B,)``; ``h``: its :meth:`features`, when already taken."""
        h = self.features(x) if h is None else h  # (B, C)
        c = self.whiten(c) * self.cfg.cond_dim**-0.5  # whitened, then of norm ~1
        return self.linear(h).squeeze(1) + (self.embed(c) * h).sum(dim=1)  # (B,)


class ConditionBank:
    """Condition vectors grouped by emotion; draws one per requested label.

    Parameters
    ----------
    embeddings : array (N, D)
        Shared-space vectors (e.g. held-out voices' projected embeddings).
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


def neighbour_conditions(
    points: torch.Tensor,
    paintings: torch.Tensor,
    *,
    k: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """For each voice point, one of its ``k`` nearest painting points (cosine): ``(B, D)``.

    This is how a voice's point stands in for a painting's in an instance-conditioned
    painter: the condition is a real painting's shared-space point, chosen among the
    ones nearest the voice, so it is a condition of the kind the generator trained on.

    >>> p = torch.eye(4)
    >>> neighbour_conditions(torch.tensor([[1.0, 0.1, 0, 0]]), p, k=1)
    tensor([[1., 0., 0., 0.]])
    """
    if k <= 0:
        return points
    a = F.normalize(points.float(), dim=1)
    b = F.normalize(paintings.float(), dim=1)
    top = (a @ b.T).topk(min(k, len(b)), dim=1).indices  # (B, k)
    pick = torch.randint(top.shape[1], (len(points),), generator=generator)
    return paintings[top[torch.arange(len(points)), pick]].float()


def inference_conditions(
    points: torch.Tensor,
    gallery: torch.Tensor | None,
    cfg: GANConfig,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The generator's conditions for voice points ``(B, D)``, as ``gan.condition`` says.

    ``neighbours``: one of the ``gan.k_condition`` gallery paintings nearest each point
    (:func:`neighbour_conditions`); ``voice``: the points themselves.  Without a gallery
    the points are used.
    """
    if cfg.condition == "voice" or gallery is None or len(gallery) == 0:
        return points.float()
    return neighbour_conditions(
        points, torch.as_tensor(gallery), k=cfg.k_condition, generator=generator
    )


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
    from sound2sight.config import ConfigError, config_from_dict
    from sound2sight.io import safe_torch_load

    if state is None:
        state = safe_torch_load(path)
    if "G_ema" not in state or "config" not in state:
        raise ValueError(f"{path}: not a GAN checkpoint (no G_ema/config)")
    try:
        cfg = config_from_dict(state["config"]).gan
    except ConfigError as exc:
        raise ValueError(
            f"{path}: a GAN checkpoint of an older sound2sight (the 64 px pixel painter): "
            f"retrain the GAN stage (`sound2sight train gan --run RUN`) ({exc})"
        ) from exc
    G = Generator(cfg)
    if weights not in ("G_ema", "G"):
        raise ValueError(f"weights={weights!r}: expected 'G_ema' or 'G'")
    G.load_state_dict(state[weights])
    return G.to(device).eval().requires_grad_(False), cfg


@torch.no_grad()
def sample_latents(
    G: Generator, c: torch.Tensor, *, generator: torch.Generator, truncation: float = 0.0
) -> torch.Tensor:
    """One latent per condition row: ``(B, cond_dim)`` -> ``(B, 32, S/8, S/8)``.

    Parameters
    ----------
    G : Generator
        Usually the EMA generator from :func:`load_generator` (eval mode).
    c : Tensor (B, cond_dim)
        Shared-space points.
    generator : torch.Generator
        Source of the noise (CPU generator), so calls are reproducible.
    truncation : float >= 0
        When > 0, noise entries beyond this magnitude are redrawn (truncation trick).
    """
    device = next(G.parameters()).device
    z = torch.randn(len(c), G.cfg.z_dim, generator=generator)
    if truncation > 0:
        while (bad := z.abs() > truncation).any():
            z[bad] = torch.randn(int(bad.sum()), generator=generator)
    return G(z.to(device), c.to(device, torch.float32), generator=generator)


@torch.no_grad()
def generate(
    G: Generator, c: torch.Tensor, *, generator: torch.Generator, truncation: float = 0.0
) -> np.ndarray:
    """Paint one picture per condition row, decoded: ``(B, cond_dim)`` -> uint8 ``(B, S, S, 3)``.

    >>> G = Generator(GANConfig(g_ch=4)).eval()
    >>> generate(G, torch.zeros(2, 128), generator=torch.Generator().manual_seed(0)).shape
    (2, 128, 128, 3)
    """
    from sound2sight.painting.taef2 import decode_latents

    return decode_latents(sample_latents(G, c, generator=generator, truncation=truncation))
