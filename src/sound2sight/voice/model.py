"""The voice model over frozen Whisper encoders: features, and the head trained on them.

:class:`VoiceEncoder` maps waveforms to *voice features*: every layer's hidden states of
one or two frozen Whisper encoders, averaged over ``feature_pool`` frames in time,
``(B, layers, T, channels)``, zero past each clip's end (two encoders sit side by side on
the channel axis).  They are cached per clip (:mod:`sound2sight.voice.cache`), so the head
trains in minutes on a CPU.

:class:`WhisperHeadClassifier` is the head: learned softmax weights over the layers (each
layer standardised first) -> attentive statistics pooling over the valid frames -> the
penultimate embedding (what the shared space is trained on) -> logits.

>>> from sound2sight.config import ClassifierConfig
>>> head = WhisperHeadClassifier(ClassifierConfig(embed_dim=16), groups=[(3, 32)])
>>> x = torch.randn(2, 3, 10, 32); x[1, :, 6:] = 0          # clip 1 ends after 6 frames
>>> head(x).shape, head.embed(x).shape
(torch.Size([2, 3]), torch.Size([2, 16]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sound2sight.config import ClassifierConfig
from sound2sight.labels import EMOTIONS

__all__ = [
    "VoiceEncoder",
    "WhisperHeadClassifier",
    "encoder_names",
    "feature_groups",
    "pool_frames",
    "select_layers",
]


def encoder_names(spec: str) -> list[str]:
    """``classifier.encoder`` -> the encoders it names (``both`` = tiny.en + base).

    >>> encoder_names("both"), encoder_names("base")
    (['tiny.en', 'base'], ['base'])
    """
    return ["tiny.en", "base"] if spec == "both" else [spec]


def feature_groups(spec: str) -> list[tuple[int, int]]:
    """``(layers + 1, width)`` of each encoder named by ``spec``, without loading weights
    for the packaged ones.

    >>> feature_groups("both")
    [(5, 384), (7, 512)]
    """
    from sound2sight.voice.whisper import WEIGHTS, load_whisper

    out = []
    for name in encoder_names(spec):
        if name in WEIGHTS:
            c = WEIGHTS[name].config
        else:
            c = load_whisper(name)[0].cfg
        out.append((c.layers + 1, c.width))
    return out


def select_layers(spec: str, n: int) -> list[int]:
    """Layer indices (0 = conv embedding, ``n - 1`` = last block) named by ``classifier.layers``.

    ``middle`` is every block but the first and the last (where probing studies find most
    of the emotion in speech encoders).

    >>> select_layers("all", 5), select_layers("last", 5), select_layers("middle", 7)
    ([0, 1, 2, 3, 4], [4], [2, 3, 4, 5])
    >>> select_layers("2,3", 5)
    [2, 3]
    """
    if spec == "all":
        return list(range(n))
    if spec == "last":
        return [n - 1]
    if spec == "middle":
        return list(range(2, n - 1)) if n > 3 else [n - 1]
    idx = [int(s) for s in spec.split(",") if s.strip()]
    if not idx or any(not 0 <= i < n for i in idx):
        raise ValueError(f"classifier.layers={spec!r}: indices must lie in 0..{n - 1}")
    return idx


class _AttentiveStats(nn.Module):
    """``(B, T, C)`` + mask ``(B, T)`` -> attention-weighted mean and std ``(B, 2C)``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(channels, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, T)
        w = torch.softmax(logits, dim=1).unsqueeze(-1)  # (B, T, 1)
        mean = (w * x).sum(1)  # (B, C)
        var = (w * x.square()).sum(1) - mean.square()
        return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=1)  # (B, 2C)


class _MeanStats(nn.Module):
    """``(B, T, C)`` + mask -> mean and std over the valid frames ``(B, 2C)``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        n = m.sum(1).clamp_min(1.0)
        mean = (m * x).sum(1) / n
        var = (m * x.square()).sum(1) / n - mean.square()
        return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=1)


class _Head(nn.Module):
    def __init__(self, n_in: int, cfg: ClassifierConfig, n_classes: int) -> None:
        super().__init__()
        self.embedding = nn.Sequential(
            nn.BatchNorm1d(n_in, affine=False),  # standardise the pooled statistics
            nn.Dropout(cfg.dropout),
            nn.Linear(n_in, cfg.embed_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.embed_dim, n_classes)


def _absent_prior(module, state_dict, prefix, *args) -> None:
    """A speaker-normalised head saved before it learnt a ShrinkPrior loads with zeros."""
    for name in ("prior_emotion", "prior_lexical"):
        if prefix + "population_mean" in state_dict and prefix + name not in state_dict:
            state_dict[prefix + name] = torch.zeros_like(state_dict[prefix + "population_mean"])


class WhisperHeadClassifier(nn.Module):
    """Voice features ``(B, L, T, C)`` -> logits ``(B, n_classes)``; ``embed`` -> ``(B, embed_dim)``.

    ``groups`` lists ``(layers, channels)`` of each encoder in the channel axis.  Frames
    that are exactly zero in every channel of layer 0 are padding (layer 0 carries the
    positional table, so a real frame is never all zero).
    """

    takes_mels = False  # fed cached voice features, not log-Mels

    def __init__(
        self,
        cfg: ClassifierConfig,
        *,
        groups: list[tuple[int, int]],
        n_classes: int = len(EMOTIONS),
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.groups = [(int(n), int(c)) for n, c in groups]
        self.layer_idx = [select_layers(cfg.layers, n) for n, _ in self.groups]
        self.layer_logits = nn.ParameterList(
            nn.Parameter(torch.zeros(len(idx))) for idx in self.layer_idx
        )
        pool = {"attentive": _AttentiveStats, "mean": _MeanStats}[cfg.pooling]
        channels = sum(c for _, c in self.groups)
        self.pool = pool(channels, cfg.attn_hidden)
        self.head = _Head(2 * channels, cfg, n_classes)
        # softmax temperature fitted on validation speakers after training (1 = uncalibrated)
        self.register_buffer("temperature", torch.ones(()))
        if cfg.speaker_norm:  # inputs are speaker-standardised; these stand in for a speaker
            shape = (max(n for n, _ in self.groups), channels)  # statistics of training frames
            self.register_buffer("population_mean", torch.zeros(shape))
            self.register_buffer("population_std", torch.ones(shape))
            # how one training speaker's clips scatter (ShrinkPrior): how far a calibration
            # trusts a few recordings; zeros = unknown (a checkpoint saved before it existed)
            self.register_buffer("prior_emotion", torch.zeros(shape))
            self.register_buffer("prior_lexical", torch.zeros(shape))
            self._register_load_state_dict_pre_hook(_absent_prior, with_module=True)

    def population_stats(self):
        """The training frames' :class:`~sound2sight.voice.speaker.SpeakerStats` (speaker_norm)."""
        from sound2sight.voice.speaker import SpeakerStats

        mean, std = self.population_mean.cpu().numpy(), self.population_std.cpu().numpy()
        return SpeakerStats(mean, std, 0, 0)

    def shrink_prior(self):
        """The :class:`~sound2sight.voice.speaker.ShrinkPrior` learnt with the head, or None."""
        from sound2sight.voice.speaker import ShrinkPrior

        lexical = getattr(self, "prior_lexical", None)  # absent: trained without speaker_norm
        if lexical is None or not bool((lexical > 0).any()):
            return None
        return ShrinkPrior(self.prior_emotion.cpu().numpy(), self.prior_lexical.cpu().numpy())

    def layer_weights(self) -> list[torch.Tensor]:
        """Softmax weight of each selected layer, one tensor per encoder."""
        return [torch.softmax(w, dim=0) for w in self.layer_logits]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        mask = x[:, 0].abs().amax(dim=-1) > 0  # (B, T): valid frames
        mixed, off = [], 0
        for (_, c), idx, w in zip(self.groups, self.layer_idx, self.layer_weights(), strict=True):
            h = x[:, idx, :, off : off + c]  # (B, L_g, T, c)
            h = F.layer_norm(h, (c,))  # each layer's frames standardised
            mixed.append(torch.einsum("bltc,l->btc", h, w))  # (B, T, c)
            off += c
        h = torch.cat(mixed, dim=-1)  # (B, T, C)
        if self.cfg.utterance_norm:  # each clip relative to its own mean (and spread)
            m = mask[..., None].float()
            n = m.sum(1, keepdim=True).clamp_min(1.0)
            mean = (h * m).sum(1, keepdim=True) / n
            h = h - mean
            if self.cfg.utterance_norm == "meanstd":
                h = h / ((h.square() * m).sum(1, keepdim=True) / n).sqrt().clamp_min(1e-3)
            h = h * m
        return self.pool(h, mask)  # (B, 2C)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding ``(B, embed_dim)`` (non-negative, after ReLU)."""
        return self.head.embedding(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_and_embedding(x)[0]

    def logits_and_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both outputs of one pass; the logits as :meth:`forward` gives them (dropout included
        when training), the embedding before that dropout."""
        emb = self.embed(x)
        return self.head.out(self.head.dropout(emb)), emb


class HeadEnsemble(nn.Module):
    """Whisper heads of one recipe trained with different seeds on one split
    (``classifier.ensemble``): their calibrated probabilities averaged.

    One seed of the shipped recipe reads RAVDESS anywhere from 0.44 to 0.66 and TESS from
    0.37 to 0.55 (``benchmarks/voice_seeds.py``): which cues a head leans on beyond CREMA-D is
    a lottery; the average of five is at least as good as the mean seed on every corpus.
    Each member keeps its own softmax temperature; ``logits_and_embedding`` returns the log
    of the members' mean probability (the ensemble's own ``temperature`` stays 1), so a
    softmax of it is that mean.  The embedding (what the shared space reads) is the first
    member's.  The members were trained on one split, so they hold the same speaker
    statistics: ``population_stats`` and ``shrink_prior`` are the first member's.

    >>> from sound2sight.config import ClassifierConfig
    >>> cfg = ClassifierConfig(ensemble=2, attn_hidden=8, embed_dim=16)
    >>> heads = [WhisperHeadClassifier(cfg, groups=[(5, 8)]) for _ in range(2)]
    >>> logits, emb = HeadEnsemble(heads).eval().logits_and_embedding(torch.randn(3, 5, 10, 8))
    >>> logits.shape, emb.shape, bool(torch.allclose(logits.exp().sum(1), torch.ones(3)))
    (torch.Size([3, 3]), torch.Size([3, 16]), True)
    """

    takes_mels = False

    def __init__(self, members: list[WhisperHeadClassifier]) -> None:
        super().__init__()
        if not members:
            raise ValueError("HeadEnsemble needs at least one head")
        self.members = nn.ModuleList(members)
        self.cfg = members[0].cfg
        self.register_buffer("temperature", torch.ones(()))  # the members carry theirs

    def population_stats(self):
        return self.members[0].population_stats()

    def shrink_prior(self):
        return self.members[0].shrink_prior()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.members[0].embed(x)

    def logits_and_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs, first = 0.0, None
        for m in self.members:
            logits, emb = m.logits_and_embedding(x)
            probs = probs + torch.softmax(logits / m.temperature, dim=-1)
            first = emb if first is None else first
        return (probs / len(self.members)).clamp_min(1e-12).log(), first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_and_embedding(x)[0]


class VoiceEncoder(nn.Module):
    """Frozen Whisper encoder(s): waveforms -> voice features ``(B, L, T, C)``.

    Parameters
    ----------
    encoders : list of (WhisperEncoder, WhisperLogMel)
        Side by side on the channel axis; layers of a shallower encoder are zero-padded.
    feature_pool : int > 0
        Encoder frames (20 ms each) averaged into one feature frame.
    """

    def __init__(self, encoders, *, feature_pool: int, provenance: list[dict] | None = None):
        super().__init__()
        self.encoders = nn.ModuleList(e for e, _ in encoders)
        self.front = nn.ModuleList(f for _, f in encoders)
        self.feature_pool = feature_pool
        self.provenance = provenance or []

    @classmethod
    def load(cls, spec: str, *, feature_pool: int, device: str = "cpu") -> VoiceEncoder:
        from sound2sight.voice.whisper import load_whisper

        loaded = [load_whisper(n, device=device) for n in encoder_names(spec)]
        return cls(
            [(e, f) for e, f, _ in loaded],
            feature_pool=feature_pool,
            provenance=[p for _, _, p in loaded],
        )

    @property
    def groups(self) -> list[tuple[int, int]]:
        return [(e.cfg.layers + 1, e.cfg.width) for e in self.encoders]

    def quantised(self) -> VoiceEncoder:
        """A copy with dynamic int8 linear layers (int8 weights, activations quantised on
        the fly; CPU).  Its provenance is marked, so its features get their own cache."""
        import copy
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's deprecation notice
            q = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(self).cpu(), {nn.Linear}, dtype=torch.qint8
            )
        q.provenance = [dict(p, sha256=p["sha256"] + "+dynamic-int8") for p in self.provenance]
        return q

    @torch.inference_mode()
    def forward(self, wave: torch.Tensor, n_samples: torch.Tensor | None = None) -> torch.Tensor:
        """``wave (B, n)`` zero-padded, ``n_samples (B,)`` valid samples -> ``(B, L, T', C)``."""
        from sound2sight.voice.whisper import encoder_frames

        if n_samples is None:
            n_samples = torch.full((wave.shape[0],), wave.shape[1])
        lengths = torch.tensor([encoder_frames(int(n)) for n in n_samples])  # (B,)
        n_layers = max(n for n, _ in self.groups)
        parts = []
        for enc, front in zip(self.encoders, self.front, strict=True):
            states = enc(front(wave), lengths)  # list of (B, T, c)
            h = torch.stack(states, dim=1)  # (B, L_e, T, c)
            if h.shape[1] < n_layers:
                h = F.pad(h, (0, 0, 0, 0, 0, n_layers - h.shape[1]))
            parts.append(h)
        h = torch.cat(parts, dim=-1)  # (B, L, T, C)
        keep = torch.arange(h.shape[2])[None, :] < lengths[:, None]  # (B, T)
        return pool_frames(h * keep[:, None, :, None], keep, self.feature_pool)


def pool_frames(h: torch.Tensor, keep: torch.Tensor, p: int) -> torch.Tensor:
    """``h`` ``(B, L, T, C)``, zero where ``keep`` ``(B, T)`` is false, averaged over bins of
    ``p`` frames (valid frames only) -> ``(B, L, ceil(T / p), C)``; an empty bin stays zero.

    >>> h = torch.arange(5.0).view(1, 1, 5, 1); keep = torch.tensor([[1, 1, 1, 0, 0]]).bool()
    >>> pool_frames(h * keep[:, None, :, None], keep, 2).flatten().tolist()
    [0.5, 2.0, 0.0]
    """
    if p <= 1:
        return h
    t = h.shape[2]
    h = F.pad(h, (0, 0, 0, (-t) % p))
    b, n_l, tp, c = h.shape
    s = h.view(b, n_l, tp // p, p, c).sum(3)  # (B, L, T', C)
    k = F.pad(keep.float(), (0, (-t) % p)).view(b, tp // p, p).sum(2)  # valid frames per bin
    return s / k.clamp_min(1.0)[:, None, :, None]
