"""Small speech-emotion classifiers on log-Mels ``(B, n_mels, T)``.

Every architecture takes a :class:`ClassifierConfig` whole, returns logits ``(B, n_classes)``
from ``forward`` and the penultimate embedding ``(B, embed_dim)`` from ``embed`` (what the
shared audio-image space is trained on).  All of them share one cheap stem (a stride-2
5x5 conv and a 2x2 max-pool, 4x fewer positions per axis) so a speaker-independent fold
trains in minutes on a CPU.

>>> from sound2sight.config import ClassifierConfig
>>> model = build_classifier(ClassifierConfig(arch="vgg", width=8), n_mels=64)
>>> model(torch.zeros(2, 64, 301)).shape, model.embed(torch.zeros(2, 64, 301)).shape
(torch.Size([2, 3]), torch.Size([2, 128]))
"""

from __future__ import annotations

import os

import torch
from torch import nn

from sound2sight.config import AudioConfig, ClassifierConfig, config_from_dict, voice_sections
from sound2sight.labels import EMOTIONS

__all__ = [
    "VGGClassifier",
    "ResNetClassifier",
    "CRNNClassifier",
    "ARCHITECTURES",
    "build_classifier",
    "load_classifier",
]


def _conv_bn(c_in: int, c_out: int, *, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _stem(width: int) -> nn.Sequential:
    """``(B, 1, F, T)`` -> ``(B, width, ~F/4, ~T/4)``."""
    return nn.Sequential(_conv_bn(1, width, kernel=5, stride=2), nn.MaxPool2d(2))


def _stats_pool(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, F, T)`` -> ``(B, 2C)``: mean over frequency, then mean and max over time."""
    x = x.mean(dim=2)  # (B, C, T)
    return torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)  # (B, 2C)


class _Head(nn.Module):
    """Pooled features -> embedding (penultimate) -> logits."""

    def __init__(self, n_in: int, cfg: ClassifierConfig, n_classes: int) -> None:
        super().__init__()
        self.embedding = nn.Sequential(nn.Linear(n_in, cfg.embed_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.embed_dim, n_classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.embedding(pooled)))


class _EmotionNet(nn.Module):
    """Shared plumbing: ``features`` maps ``(B, n_mels, T)`` to pooled ``(B, n_pooled)``."""

    head: _Head
    takes_mels = True  # fed log-Mels (B, n_mels, T)

    def features(self, mel: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding ``(B, embed_dim)`` (non-negative, after ReLU)."""
        return self.head.embedding(self.features(mel))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` for log-Mels ``(B, n_mels, T)``."""
        return self.head(self.features(mel))

    def logits_and_embedding(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both outputs from one pass of the trunk: ``((B, n_classes), (B, embed_dim))``."""
        emb = self.head.embedding(self.features(mel))
        return self.head.out(self.head.dropout(emb)), emb


def _channels(cfg: ClassifierConfig) -> list[int]:
    return [cfg.width * 2**i for i in range(cfg.depth)]


class VGGClassifier(_EmotionNet):
    """VGG-style stack: per stage two 3x3 conv-BN-ReLU then 2x2 max-pool; stats pooling.

    >>> m = VGGClassifier(ClassifierConfig(width=8, depth=2), n_mels=40)
    >>> m.embed(torch.zeros(3, 40, 100)).shape
    torch.Size([3, 128])
    """

    def __init__(self, cfg: ClassifierConfig, *, n_mels: int, n_classes: int = len(EMOTIONS)):
        super().__init__()
        layers: list[nn.Module] = [_stem(cfg.width)]
        c_prev = cfg.width
        for c in _channels(cfg):
            layers += [_conv_bn(c_prev, c), _conv_bn(c, c), nn.MaxPool2d(2, ceil_mode=True)]
            c_prev = c
        self.body = nn.Sequential(*layers)
        self.head = _Head(2 * c_prev, cfg, n_classes)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        return _stats_pool(self.body(mel.unsqueeze(1)))  # (B, 1, F, T) -> (B, 2C)


class _BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or strided 1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int, *, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(c_in, c_out, stride=stride)
        self.conv2 = nn.Sequential(
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
        )
        self.short = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.short(x))


class ResNetClassifier(_EmotionNet):
    """Residual CNN: one basic block per stage (stride 2 after the first); stats pooling.

    >>> m = ResNetClassifier(ClassifierConfig(width=8, depth=3, embed_dim=32), n_mels=64)
    >>> m(torch.zeros(2, 64, 301)).shape
    torch.Size([2, 3])
    """

    def __init__(self, cfg: ClassifierConfig, *, n_mels: int, n_classes: int = len(EMOTIONS)):
        super().__init__()
        blocks: list[nn.Module] = [_stem(cfg.width)]
        c_prev = cfg.width
        for i, c in enumerate(_channels(cfg)):
            blocks.append(_BasicBlock(c_prev, c, stride=1 if i == 0 else 2))
            c_prev = c
        self.body = nn.Sequential(*blocks)
        self.head = _Head(2 * c_prev, cfg, n_classes)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        return _stats_pool(self.body(mel.unsqueeze(1)))  # (B, 1, F, T) -> (B, 2C)


class CRNNClassifier(_EmotionNet):
    """Conv stages pooling mostly frequency, a bidirectional GRU over time, attention pooling.

    The first stage pools 2x2, later ones 2x1, so the GRU sees ~T/8 steps.

    >>> m = CRNNClassifier(ClassifierConfig(width=8, depth=3, embed_dim=32), n_mels=64)
    >>> m.embed(torch.zeros(2, 64, 301)).shape
    torch.Size([2, 32])
    """

    def __init__(self, cfg: ClassifierConfig, *, n_mels: int, n_classes: int = len(EMOTIONS)):
        super().__init__()
        layers: list[nn.Module] = [_stem(cfg.width)]
        c_prev = cfg.width
        for i, c in enumerate(_channels(cfg)):
            pool = (2, 2) if i == 0 else (2, 1)
            layers += [_conv_bn(c_prev, c), nn.MaxPool2d(pool, ceil_mode=True)]
            c_prev = c
        self.conv = nn.Sequential(*layers)
        with torch.no_grad():
            f_out = self.conv(torch.zeros(1, 1, n_mels, 64)).shape[2]
        hidden = max(cfg.embed_dim // 2, 8)
        self.gru = nn.GRU(c_prev * f_out, hidden, batch_first=True, bidirectional=True)
        self.attn = nn.Linear(2 * hidden, 1)
        self.head = _Head(4 * hidden, cfg, n_classes)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv(mel.unsqueeze(1))  # (B, C, F', T')
        x = x.flatten(1, 2).transpose(1, 2)  # (B, T', C * F')
        h, _ = self.gru(x)  # (B, T', 2 * hidden)
        w = torch.softmax(self.attn(h), dim=1)  # (B, T', 1)
        mean = (w * h).sum(dim=1)  # (B, 2 * hidden)
        std = ((w * (h - mean.unsqueeze(1)) ** 2).sum(dim=1) + 1e-6).sqrt()
        return torch.cat([mean, std], dim=1)  # (B, 4 * hidden) attentive stats pooling


ARCHITECTURES: dict[str, type[_EmotionNet]] = {
    "vgg": VGGClassifier,
    "resnet": ResNetClassifier,
    "crnn": CRNNClassifier,
}


def build_classifier(
    cfg: ClassifierConfig, *, n_mels: int = 0, n_classes: int = len(EMOTIONS)
) -> nn.Module:
    """The architecture named by ``cfg.arch``.

    ``whisper`` is the head over frozen Whisper features (:mod:`sound2sight.voice.model`;
    its input shape comes from ``cfg.encoder``); the CNNs take log-Mels with ``n_mels`` bands.

    >>> build_classifier(ClassifierConfig(arch="crnn", width=8), n_mels=64)(
    ...     torch.zeros(1, 64, 301)).shape
    torch.Size([1, 3])
    """
    if cfg.arch == "whisper":
        from sound2sight.voice.model import HeadEnsemble, WhisperHeadClassifier, feature_groups

        groups = feature_groups(cfg.encoder)
        heads = [
            WhisperHeadClassifier(cfg, groups=groups, n_classes=n_classes)
            for _ in range(cfg.ensemble)
        ]
        return HeadEnsemble(heads) if cfg.ensemble > 1 else heads[0]
    if cfg.arch not in ARCHITECTURES:
        raise ValueError(f"classifier.arch={cfg.arch!r} is not one of {sorted(ARCHITECTURES)}")
    net = ARCHITECTURES[cfg.arch](cfg, n_mels=n_mels, n_classes=n_classes)
    net.cfg = cfg  # the config its weights need, for exporters
    return net


def load_classifier(
    path: str | os.PathLike, *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, AudioConfig]:
    """Load a trained classifier (``best.pt``) with the front-end config its weights expect.

    Returns
    -------
    (model, AudioConfig)
        The model in eval mode; feed it ``LogMel(audio_cfg)`` features.
    """
    from sound2sight.io import safe_torch_load

    state = safe_torch_load(path)
    if "model" not in state or "config" not in state:
        raise ValueError(f"{path}: not a classifier checkpoint (needs 'model' and 'config')")
    cfg = config_from_dict(voice_sections(state["config"]))
    n_classes = len(state.get("labels", EMOTIONS))
    model = build_classifier(cfg.classifier, n_mels=cfg.audio.n_mels, n_classes=n_classes)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg.audio
