"""TAEF2: the tiny pretrained autoencoder of the FLUX.2 latent space, the painter's renderer.

The architecture follows madebyollin/taesd (MIT, Ollin Boer Bohan; commit 5cccb12), written
here from its description: residual blocks of three 3x3 convolutions (64 channels) with ReLU,
three stride-2 convolutions down (encoder) and three nearest-neighbour 2x up-samplings
(decoder); the blocks at the lowest resolution carry a global 1x1-conv + GroupNorm(4)
branch.  Images are RGB in [0, 1]; latents are ``32 x H/8 x W/8`` (std ~0.83, range ~ +-5).
The weights (MIT, notice in ``weights/taef2/LICENSE`` and ``NOTICE``) ship in the package,
SHA-256 pinned, and load strictly with ``weights_only``.

>>> dec = load_taef2("decoder")
>>> dec(torch.zeros(1, 32, 2, 2)).shape
torch.Size([1, 3, 16, 16])
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "LATENT_CHANNELS",
    "TAEF2_SHA256",
    "taef2_encoder",
    "taef2_decoder",
    "load_taef2",
    "encode_images",
    "decode_latents",
]

LATENT_CHANNELS = 32
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights" / "taef2"
# SHA-256 of the vendored files (as in the source's SHA256SUMS).
TAEF2_SHA256 = {
    "encoder": "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
    "decoder": "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
}


def _conv(c_in: int, c_out: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


class _Clamp(nn.Module):
    """Soft clamp of the latents to about +-3 before decoding: ``tanh(x / 3) * 3``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class _Block(nn.Module):
    """``relu(conv(relu(conv(relu(conv(x))))) + x)``, with an optional global GroupNorm branch."""

    def __init__(self, ch: int = 64, *, midblock_gn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(ch, ch), nn.ReLU(), _conv(ch, ch), nn.ReLU(), _conv(ch, ch))
        self.skip = nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = None
        if midblock_gn:  # 1x1 up to 4x the channels, GroupNorm(4), ReLU, 1x1 back
            wide = 4 * ch
            self.pool = nn.Sequential(
                nn.Conv2d(ch, wide, 1, bias=False),
                nn.GroupNorm(4, wide),
                nn.ReLU(),
                nn.Conv2d(wide, ch, 1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def taef2_encoder() -> nn.Sequential:
    """RGB ``(B, 3, H, W)`` in [0, 1] -> latents ``(B, 32, H/8, W/8)`` (untrained)."""
    gn = {"midblock_gn": True}
    return nn.Sequential(
        _conv(3, 64), _Block(),
        _conv(64, 64, stride=2, bias=False), _Block(), _Block(), _Block(),
        _conv(64, 64, stride=2, bias=False), _Block(), _Block(), _Block(),
        _conv(64, 64, stride=2, bias=False), _Block(**gn), _Block(**gn), _Block(**gn),
        _conv(64, LATENT_CHANNELS),
    )  # fmt: skip


def taef2_decoder() -> nn.Sequential:
    """Latents ``(B, 32, h, w)`` -> RGB ``(B, 3, 8h, 8w)``, about [0, 1] (untrained)."""
    gn = {"midblock_gn": True}
    return nn.Sequential(
        _Clamp(), _conv(LATENT_CHANNELS, 64), nn.ReLU(),
        _Block(**gn), _Block(**gn), _Block(**gn), nn.Upsample(scale_factor=2), _conv(64, 64, bias=False),
        _Block(), _Block(), _Block(), nn.Upsample(scale_factor=2), _conv(64, 64, bias=False),
        _Block(), _Block(), _Block(), nn.Upsample(scale_factor=2), _conv(64, 64, bias=False),
        _Block(), _conv(64, 3),
    )  # fmt: skip


_LOADED: dict[tuple[str, str], nn.Module] = {}


def load_taef2(
    part: str, *, device: str | torch.device = "cpu", weights_dir: str | Path | None = None
) -> nn.Sequential:
    """The pretrained ``"encoder"`` or ``"decoder"``, frozen, in eval mode (cached per process).

    Raises
    ------
    FileNotFoundError
        The weight file is missing (its path is in the message).
    RuntimeError
        Its SHA-256 differs from the pinned one (a truncated or replaced file), naming it.
    """
    if part not in TAEF2_SHA256:
        raise ValueError(f"part={part!r}: expected 'encoder' or 'decoder'")
    path = Path(weights_dir or WEIGHTS_DIR) / f"taef2_{part}.pth"
    key = (str(path), str(device))
    if key in _LOADED:
        return _LOADED[key]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: TAEF2 {part} weights missing (reinstall sound2sight)")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != TAEF2_SHA256[part]:
        raise RuntimeError(
            f"{path}: SHA-256 {digest[:12]}... != pinned {TAEF2_SHA256[part][:12]}... "
            f"({len(data)} bytes; truncated or not the TAEF2 {part})"
        )
    import io

    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model = taef2_encoder() if part == "encoder" else taef2_decoder()
    model.load_state_dict(state, strict=True)
    model = model.to(device).eval().requires_grad_(False)
    _LOADED[key] = model
    return model


@torch.no_grad()
def encode_images(images: np.ndarray | torch.Tensor, *, batch_size: int = 16) -> torch.Tensor:
    """uint8 images ``(N, 3, S, S)`` (or ``(N, S, S, 3)`` numpy) -> float latents ``(N, 32, S/8, S/8)``."""
    enc = load_taef2("encoder")
    x = torch.from_numpy(np.array(images)) if isinstance(images, np.ndarray) else images
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images (N, 3, S, S), got shape {tuple(x.shape)}")
    if x.shape[1] != 3 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    if x.shape[-1] % 8 or x.shape[-2] % 8:
        raise ValueError(f"image side must be a multiple of 8, got {tuple(x.shape[-2:])}")
    out = [enc(x[i : i + batch_size].float() / 255.0) for i in range(0, len(x), batch_size)]
    return (
        torch.cat(out) if out else torch.zeros(0, LATENT_CHANNELS, x.shape[2] // 8, x.shape[3] // 8)
    )


@torch.no_grad()
def decode_latents(
    latents: torch.Tensor, *, batch_size: int = 8, device: str | torch.device | None = None
) -> np.ndarray:
    """Latents ``(N, 32, h, w)`` -> uint8 images ``(N, 8h, 8w, 3)``."""
    dev = torch.device(device) if device is not None else latents.device
    dec = load_taef2("decoder", device=dev)
    outs = []
    for i in range(0, len(latents), batch_size):
        x = dec(latents[i : i + batch_size].to(dev, torch.float32))  # (b, 3, H, W) ~[0, 1]
        outs.append((x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
    if not outs:
        h, w = latents.shape[-2:]
        return np.zeros((0, 8 * h, 8 * w, 3), np.uint8)
    return torch.cat(outs).numpy()
