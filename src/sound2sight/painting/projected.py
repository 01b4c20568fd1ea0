"""Projected discriminator and emotion guidance on frozen EfficientNet-Lite0 features.

After Sauer et al. (NeurIPS 2021, "Projected GANs Converge Faster"): the discriminator
does not learn features from pixels; it reads four feature maps of the frozen ImageNet
EfficientNet-Lite0 (strides 4, 8, 16, 32), mixes them with *random, frozen* 1x1
convolutions across channels (CCM) and with upsample-and-add across scales (CSM), and
judges each scale with its own small spectral-norm discriminator.  Every scale is
conditioned by projection (``logit = w.h + <W_p c, h>`` at every patch).  The frozen
network is a strong, fixed prior, so few images suffice, and on a CPU the discriminator
step needs no backward pass through it.

:class:`EmotionGuide` is a balanced linear probe on the same network's pooled features,
fit on the real training paintings; the generator can be pushed to make its paintings
read as their emotion to it.  It is never the judge: the evaluation uses
EfficientNet-Lite2 and held-out paintings (:mod:`sound2sight.painting.evaluate`).

>>> from sound2sight.config import GANConfig
>>> from sound2sight.models.image import EfficientNetLite0, ImageEncoderConfig
>>> feats = FeatureNet(EfficientNetLite0(ImageEncoderConfig()), size=64)
>>> D = ProjectedDiscriminator(GANConfig(d_ch=8), feats)
>>> [t.shape[-1] for t in D(torch.zeros(2, 3, 64, 64), torch.zeros(2, 128))]
[4, 4, 4, 2]
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from sound2sight.config import GANConfig
from sound2sight.labels import EMOTIONS

__all__ = [
    "FeatureNet",
    "ProjectedDiscriminator",
    "EmotionGuide",
    "fit_guide",
    "flat_canvases",
    "projected_hinge",
]

log = logging.getLogger(__name__)

# The Lite0 stages whose outputs are tapped (strides 4, 8, 16, 32; 24/40/112/320 channels).
_TAPS = (1, 2, 4, 6)


class FeatureNet(nn.Module):
    """Frozen EfficientNet-Lite0 cut into the four tapped stages, plus its pooled head.

    Parameters
    ----------
    lite0 : EfficientNetLite0
        The pretrained encoder (BatchNorm is folded into a frozen copy; the original is
        not modified).
    size : int
        Side images are bilinearly resized to before the network (the paper feeds
        224 px; the default, 64 px, the painting's own side, is the cheapest on a CPU, and
        larger sides were not measured).
    """

    def __init__(self, lite0, *, size: int) -> None:
        super().__init__()
        from sound2sight.models.image import _fuse_batchnorm, _stages

        net = _fuse_batchnorm(lite0)
        ends = np.cumsum([s[0] for s in _stages(lite0.config)])  # block index after each stage
        starts = [0, *[int(ends[t]) for t in _TAPS[:-1]]]
        self.stem = nn.Sequential(net._conv_stem, net._bn0)
        self.parts = nn.ModuleList(
            nn.Sequential(*net._blocks[a : int(ends[t])])
            for a, t in zip(starts, _TAPS, strict=True)
        )
        self.head = nn.Sequential(net._conv_head, net._bn1)
        self.channels = [_stages(lite0.config)[t][4] for t in _TAPS]  # 24, 40, 112, 320
        self.size, self.mean, self.std = size, lite0.config.pixel_mean, lite0.config.pixel_std
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FeatureNet:  # always frozen, always eval
        return super().train(False)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] ``(B, 3, R, R)`` -> the network's normalised input at ``size``."""
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return ((x + 1.0) * 127.5 - self.mean) / self.std

    def forward(self, x: torch.Tensor, *, pooled: bool = False):
        """Four feature maps (and, with ``pooled``, the 1280-d pooled head features)."""
        h = F.relu6(self.stem(self._prepare(x)))  # (B, 32, S/2, S/2)
        maps = []
        for part in self.parts:
            h = part(h)
            maps.append(h)  # (B, 24, S/4, S/4) ... (B, 320, S/32, S/32)
        if not pooled:
            return maps
        return maps, F.relu6(self.head(h)).mean(dim=(2, 3))  # (B, 1280)


class _Mixing(nn.Module):
    """Random frozen cross-channel (1x1) and cross-scale (upsample + add) mixing."""

    def __init__(self, channels: list[int], widths: list[int], *, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)

        def conv(c_in: int, c_out: int) -> nn.Conv2d:
            m = nn.Conv2d(c_in, c_out, 1, bias=False)
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(1.0 / c_in))
            return m

        self.ccm = nn.ModuleList(conv(a, b) for a, b in zip(channels, widths, strict=True))
        self.csm = nn.ModuleList(conv(b, a) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.requires_grad_(False)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [None] * len(maps)
        out[-1] = self.ccm[-1](maps[-1])
        for i in range(len(maps) - 2, -1, -1):  # deep to shallow, as a feature pyramid
            up = F.interpolate(self.csm[i](out[i + 1]), size=maps[i].shape[-2:], mode="bilinear")
            out[i] = self.ccm[i](maps[i]) + up
        return out


class _ScaleDisc(nn.Module):
    """SN conv-down blocks to at most 4x4, then a projection-conditioned logit per patch."""

    def __init__(self, c_in: int, side: int, *, width: int, cond_dim: int) -> None:
        super().__init__()
        layers, c = [], c_in
        while side > 4:
            c_out = min(2 * max(c, width), 8 * width)
            layers += [spectral_norm(nn.Conv2d(c, c_out, 4, 2, 1)), nn.LeakyReLU(0.2)]
            c, side = c_out, side // 2
        layers += [spectral_norm(nn.Conv2d(c, 8 * width, 1)), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.linear = spectral_norm(nn.Conv2d(8 * width, 1, 1))
        self.embed = spectral_norm(nn.Linear(cond_dim, 8 * width, bias=False))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.body(h)  # (B, 8w, s, s), s <= 4
        proj = (self.embed(c)[:, :, None, None] * h).sum(1)  # (B, s, s)
        return self.linear(h).squeeze(1) + proj  # (B, s, s) patch logits


class ProjectedDiscriminator(nn.Module):
    """``(x, c)`` -> one patch-logit map per feature scale (a list of ``(B, s, s)``).

    Parameters
    ----------
    cfg : GANConfig
        ``d_ch`` sets the discriminators' width, ``cond_dim`` the condition, ``resolution``
        the painting side, ``seed_mixing`` the random mixing.
    features : FeatureNet
        The frozen feature network (kept in the checkpoint so a resume is exact).
    """

    def __init__(self, cfg: GANConfig, features: FeatureNet) -> None:
        super().__init__()
        self.cfg, self.features = cfg, features
        widths = [2 * cfg.d_ch, 4 * cfg.d_ch, 8 * cfg.d_ch, 8 * cfg.d_ch]
        self.mixing = _Mixing(features.channels, widths, seed=cfg.mixing_seed)
        sides = [max(1, features.size // s) for s in (4, 8, 16, 32)]
        self.discs = nn.ModuleList(
            _ScaleDisc(w, s, width=cfg.d_ch, cond_dim=cfg.cond_dim)
            for w, s in zip(widths, sides, strict=True)
        )

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor, c: torch.Tensor, *, maps=None) -> list[torch.Tensor]:
        """Judge images ``x`` in [-1, 1] (or precomputed feature ``maps``) under conditions ``c``."""
        if maps is None:
            maps = self.features(x)
        return [d(h, c) for d, h in zip(self.discs, self.mixing(maps), strict=True)]


def projected_hinge(real: list[torch.Tensor] | None, fake: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss summed over scales: D's when ``real`` is given, else G's.

    >>> ones = [torch.ones(2, 4, 4), torch.ones(2, 2, 2)]
    >>> float(projected_hinge(ones, [-o for o in ones])), float(projected_hinge(None, ones))
    (0.0, -2.0)
    """
    from sound2sight.losses import loss_hinge_dis, loss_hinge_gen

    if real is None:
        return sum(loss_hinge_gen(f.flatten()) for f in fake)
    return sum(loss_hinge_dis(r.flatten(), f.flatten()) for r, f in zip(real, fake, strict=True))


class EmotionGuide(nn.Module):
    """A frozen, class-balanced linear probe on :class:`FeatureNet`'s pooled features.

    ``fit`` standardises the real paintings' features and trains a weighted softmax
    regression (L2 ``weight_decay``, full batch, a few hundred Adam steps); ``forward``
    returns emotion logits.

    >>> guide = EmotionGuide(4, 2).fit(torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0]]),
    ...                                torch.tensor([0, 1]), steps=50)
    >>> guide(torch.tensor([[1.0, 0, 0, 0]])).argmax(1).tolist()
    [0]
    """

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)
        self.register_buffer("mu", torch.zeros(dim))
        self.register_buffer("sd", torch.ones(dim))

    def fit(
        self,
        feats: torch.Tensor,
        labels: torch.Tensor,
        *,
        steps: int = 300,
        weight_decay: float = 1e-2,
    ) -> EmotionGuide:
        self.mu.copy_(feats.mean(0))
        self.sd.copy_(feats.std(0).clamp_min(1e-6) if len(feats) > 1 else torch.ones_like(self.sd))
        counts = torch.bincount(labels, minlength=self.linear.out_features).float()
        weight = torch.where(counts > 0, counts.sum() / counts.clamp_min(1) / len(counts), 0.0)
        opt = torch.optim.Adam(self.linear.parameters(), lr=0.05, weight_decay=weight_decay)
        x = (feats - self.mu) / self.sd
        with torch.enable_grad():
            for _ in range(steps):
                loss = F.cross_entropy(self.linear(x), labels, weight=weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return self.requires_grad_(False).eval()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.linear((feats - self.mu) / self.sd)  # (B, n_classes)


def flat_canvases(x: torch.Tensor) -> torch.Tensor:
    """Low-texture copies of paintings ``(B, 3, H, W)`` in [-1, 1]: even rows a 4 x 4 colour
    field blown up (bilinear), odd rows one mean colour — what a generator that found a
    blank-canvas shortcut paints.

    >>> y = flat_canvases(torch.rand(2, 3, 16, 16) * 2 - 1)
    >>> y.shape, bool(y[1].std(dim=(1, 2)).max() < 1e-6)
    (torch.Size([2, 3, 16, 16]), True)
    """
    h, w = x.shape[-2:]
    field = F.interpolate(F.adaptive_avg_pool2d(x, 4), size=(h, w), mode="bilinear")
    plain = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    odd = (torch.arange(len(x), device=x.device) % 2 == 1)[:, None, None, None]
    return torch.where(odd, plain, field)


@torch.no_grad()
def fit_guide(
    features: FeatureNet, images, labels, aug, gen, dev, *, negatives: bool = False
) -> EmotionGuide:
    """The emotion-guidance probe, on pooled Lite0 features of real paintings ``images``
    (uint8 ``(N, 3, H, W)``; ``labels`` -1 = unlabelled, skipped), clean and through ``aug``.

    ``negatives`` (``gan.guide_negatives``): a fourth class of :func:`flat_canvases` copies,
    so a blank canvas is *not* an emotion to the guide and G's cross-entropy towards the
    intended emotion stays high for one."""
    lab = torch.nonzero(labels >= 0).squeeze(1)
    feats, ys = [], []
    for copy in range(2):  # a clean and a DiffAugmented pass: G's paintings reach it augmented
        for s in range(0, len(lab), 64):
            x = images[lab[s : s + 64]].to(dev).float() / 127.5 - 1.0
            x = aug(x, generator=gen) if copy else x
            feats.append(features(x, pooled=True)[1].cpu())
            ys.append(labels[lab[s : s + 64]])
            if negatives:
                feats.append(features(flat_canvases(x), pooled=True)[1].cpu())
                ys.append(torch.full((len(x),), len(EMOTIONS)))
    feats, y = torch.cat(feats), torch.cat(ys)
    guide = EmotionGuide(feats.shape[1], len(EMOTIONS) + int(negatives)).fit(feats, y)
    acc = (guide(feats).argmax(1) == y).float()
    per = [float(acc[y == k].mean()) for k in y.unique().tolist()]
    log.info(
        "emotion guide: balanced accuracy %.3f on its training paintings%s",
        np.mean(per),
        f" (flat canvases: {per[-1]:.3f})" if negatives else "",
    )
    return guide.to(dev)
