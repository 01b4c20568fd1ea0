"""Differentiable augmentation (Zhao et al., 2020, "DiffAugment") for data-efficient GANs.

The same random transforms are applied to real and generated images before the
discriminator; every operation is differentiable in the pixels, so the generator is
trained through them.  The painter applies them to TAEF2 latents (``flip,translation``:
mirror, then shift by up to 2 latent cells at 128 px).  Policies: ``flip`` (left-right
mirror, p = 1/2), ``color`` (brightness, saturation, contrast; for pixels),
``translation`` (shift by up to 1/8 of the side, zero fill) and ``cutout`` (one square of
half the side zeroed).

>>> aug = DiffAugment("color,translation,cutout")
>>> aug(torch.zeros(2, 3, 16, 16), generator=torch.Generator().manual_seed(0)).shape
torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["DiffAugment", "POLICIES"]


def _rand(n: int, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """``n`` uniform [0, 1) draws on ``like``'s device and dtype, shape ``(n, 1, 1, 1)``."""
    r = torch.rand(n, 1, 1, 1, generator=generator)
    return r.to(like.device, like.dtype)


def _brightness(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    return x + (_rand(len(x), g, x) - 0.5)


def _saturation(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    return (x - mean) * (_rand(len(x), g, x) * 2) + mean


def _contrast(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * (_rand(len(x), g, x) + 0.5) + mean


def _color(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    return _contrast(_saturation(_brightness(x, g), g), g)


def _translation(x: torch.Tensor, g: torch.Generator | None, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by an integer offset in [-ratio*side, ratio*side], zero fill."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b, 1, 1), generator=g).to(x.device)
    dx = torch.randint(-sx, sx + 1, (b, 1, 1), generator=g).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    src_y = (rows - dy + 1).clamp(0, h + 1)  # (B, H, 1) index into the 1-px zero-padded image
    src_x = (cols - dx + 1).clamp(0, w + 1)  # (B, 1, W)
    padded = F.pad(x, [1, 1, 1, 1])  # (B, C, H+2, W+2), border is zero
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, src_y, src_x]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)  # (B, C, H, W)


def _cutout(x: torch.Tensor, g: torch.Generator | None, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of side ``ratio * side`` at a random centre in each image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=g).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=g).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside_y = (rows >= cy - ch // 2) & (rows < cy - ch // 2 + ch)  # (B, H, 1)
    inside_x = (cols >= cx - cw // 2) & (cols < cx - cw // 2 + cw)  # (B, 1, W)
    keep = ~(inside_y & inside_x)  # (B, H, W)
    return x * keep.unsqueeze(1).to(x.dtype)


def _flip(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """Mirror each sample left-right with probability 1/2."""
    flip = (torch.rand(len(x), generator=g) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


POLICIES = {"color": _color, "translation": _translation, "cutout": _cutout, "flip": _flip}


class DiffAugment:
    """Apply a comma-separated policy (order as given); an empty policy is the identity.

    Parameters
    ----------
    policy : str
        E.g. ``"color,translation,cutout"``; unknown names raise ``ValueError``.

    >>> DiffAugment("")(torch.ones(1, 3, 4, 4)).sum().item()
    48.0
    """

    def __init__(self, policy: str = "color,translation,cutout") -> None:
        self.names = [p.strip() for p in policy.split(",") if p.strip()]
        unknown = [p for p in self.names if p not in POLICIES]
        if unknown:
            raise ValueError(
                f"unknown DiffAugment policy {unknown[0]!r}; choose from {sorted(POLICIES)}"
            )

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Augment a batch ``(B, C, H, W)``; shape is kept, gradients flow to ``x``."""
        for name in self.names:
            x = POLICIES[name](x, generator)
        return x.contiguous()
