"""Projection heads into the shared audio–image space.

Each modality gets one small MLP that maps its frozen features (the classifier's
penultimate embedding, or EfficientNet's 1280-d pooled features) to a unit vector in
``AlignConfig.dim`` dimensions.  Inputs are standardised with statistics stored as
buffers, so a checkpoint carries everything the head needs.

>>> from sound2sight.config import AlignConfig
>>> joint = JointSpace(audio_dim=128, image_dim=1280, cfg=AlignConfig())
>>> joint.embed_audio(torch.randn(5, 128)).shape, joint.embed_image(torch.randn(2, 1280)).shape
(torch.Size([5, 128]), torch.Size([2, 128]))
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.nn.functional as F
from torch import nn

from sound2sight.config import AlignConfig
from sound2sight.labels import EMOTIONS

__all__ = ["ProjectionHead", "JointSpace", "load_joint_space"]


class ProjectionHead(nn.Module):
    """Standardise -> dropout -> Linear -> GELU -> dropout -> Linear -> L2 normalise.

    Parameters
    ----------
    in_dim : int > 0
        Input feature size.
    cfg : AlignConfig
        Uses ``hidden``, ``dim`` and ``dropout``.

    >>> head = ProjectionHead(1280, AlignConfig(dim=16))
    >>> z = head(torch.randn(3, 1280)); z.shape, bool(torch.allclose(z.norm(dim=1), torch.ones(3)))
    (torch.Size([3, 16]), True)
    """

    def __init__(
        self,
        in_dim: int,
        cfg: AlignConfig,
        *,
        hidden: int | None = None,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        hidden = cfg.hidden if hidden is None else hidden
        p = cfg.dropout if dropout is None else dropout
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        if hidden > 0:
            layers = [
                nn.Linear(in_dim, hidden),
                nn.GELU(),
                nn.Dropout(p),
                nn.Linear(hidden, cfg.dim),
            ]
        else:  # a linear map keeps the frozen encoder's own geometry
            layers = [nn.Linear(in_dim, cfg.dim)]
        self.net = nn.Sequential(nn.Dropout(p), *layers)

    @torch.no_grad()
    def set_input_stats(self, x: torch.Tensor) -> None:
        """Store the mean and std of training inputs ``(N, in_dim)`` for standardisation."""
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim)`` features -> ``(B, dim)`` unit vectors."""
        return F.normalize(self.net((x - self.mean) / self.std), dim=1)


class JointSpace(nn.Module):
    """An audio head and an image head that share one unit sphere, plus class anchors.

    The anchors (``prototypes``, one per emotion) are trained only when
    ``AlignConfig.prototype_weight > 0``; inference never uses them.

    Parameters
    ----------
    audio_dim : int > 0
        Size of the classifier embedding.
    image_dim : int > 0
        Size of the image features (1280 for EfficientNet-Lite0).
    cfg : AlignConfig
        Head sizes.
    n_classes : int > 0
        Number of emotions.

    >>> JointSpace(audio_dim=8, image_dim=12, cfg=AlignConfig(dim=4)).prototypes.shape
    torch.Size([3, 4])
    """

    def __init__(
        self, *, audio_dim: int, image_dim: int, cfg: AlignConfig, n_classes: int = len(EMOTIONS)
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.audio_dim, self.image_dim, self.n_classes = audio_dim, image_dim, n_classes
        self.audio = ProjectionHead(
            audio_dim, cfg, hidden=cfg.audio_hidden, dropout=cfg.audio_dropout
        )
        self.image = ProjectionHead(image_dim, cfg)
        self.prototypes = nn.Parameter(F.normalize(torch.randn(n_classes, cfg.dim), dim=1))

    def embed_audio(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier embeddings ``(B, audio_dim)`` -> shared space ``(B, dim)``."""
        return self.audio(x)

    def embed_image(self, x: torch.Tensor) -> torch.Tensor:
        """Image features ``(B, image_dim)`` -> shared space ``(B, dim)``."""
        return self.image(x)

    def forward(
        self, audio: torch.Tensor, image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both modalities at once: ``((Ba, dim), (Bi, dim))``."""
        return self.embed_audio(audio), self.embed_image(image)

    def checkpoint_meta(self) -> dict:
        """What :func:`load_joint_space` needs besides the state dict."""
        return {
            "audio_dim": self.audio_dim,
            "image_dim": self.image_dim,
            "n_classes": self.n_classes,
            "align": dataclasses.asdict(self.cfg),
        }


def load_joint_space(path: str | os.PathLike, *, device: str = "cpu") -> JointSpace:
    """Rebuild the eval-mode :class:`JointSpace` saved by ``train_align`` (``align/best.pt``).

    >>> load_joint_space("runs/demo/align/best.pt").embed_audio(torch.zeros(1, 128)).shape  # doctest: +SKIP
    torch.Size([1, 128])
    """
    from sound2sight.config import config_from_dict
    from sound2sight.io import safe_torch_load

    ckpt = safe_torch_load(path, map_location="cpu")
    if not isinstance(ckpt, dict) or "joint" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path}: not a shared-space checkpoint (needs 'joint' and 'model')")
    meta = ckpt["joint"]
    cfg = config_from_dict({"align": meta["align"]}).align
    joint = JointSpace(
        audio_dim=int(meta["audio_dim"]),
        image_dim=int(meta["image_dim"]),
        cfg=cfg,
        n_classes=int(meta["n_classes"]),
    )
    joint.load_state_dict(ckpt["model"])
    return joint.to(device).eval()
