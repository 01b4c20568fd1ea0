"""Per-speaker standardisation of voice features: opt-in and transductive.

A voice model trained with ``classifier.speaker_norm=true`` sees every clip's Whisper
features standardised by its *speaker's* statistics: per layer and channel, the mean and
standard deviation over all frames of all that speaker's clips.  What is left is how this
clip differs from the speaker's usual voice, which is what an emotion changes; the
speaker's timbre, microphone and room largely cancel.

It is transductive: at test time the statistics come from the test speaker's own
(unlabelled) clips, so it needs several recordings of one person.  The pipeline exposes it
as :meth:`sound2sight.pipeline.Sound2Sight.calibrate_to_speaker` (and per call, as the web
page uses it); a few recordings are trusted only as far as :func:`calibrate` finds them
unlike what emotions alone would do (below).  Without a calibration a
speaker-normalised model standardises a recording by :func:`calibrate` of that recording
alone: the statistics of all its training frames, which the head keeps
(``population_mean`` / ``population_std``), unless the recording lies far beyond what an
emotion does to a training speaker (another microphone, room or accent).  One recording's
plain statistics would be far worse, as its mean carries much of its emotion (measured in
BENCHMARKS.md).

>>> x = np.zeros((2, 1, 3, 2), np.float16); x[:, :, :2] = [[[[1, 5], [3, 7]]]]
>>> s = speaker_stats(x)
>>> s.mean.tolist(), s.std.tolist()
([[2.0, 6.0]], [[1.0, 1.0]])
>>> standardise(x, s)[0, 0].tolist()  # the padding frame stays exactly zero
[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ShrinkPrior",
    "SpeakerStats",
    "CalibrationViews",
    "alone_stats",
    "blend_stats",
    "calibrate",
    "shrink_prior",
    "speaker_stats",
    "pooled_stats",
    "recording_stats",
    "standardise",
    "standardise_alone",
    "standardise_by_speaker",
]

MIN_STD = 1e-3  # floor for channels that do not move (and for the zero layers of "both")
MAX_Z = 1e3  # standardised values are clipped here (float16 features overflow at 65504)


@dataclass(frozen=True)
class SpeakerStats:
    """Mean and standard deviation ``(layers, channels)`` of one speaker's feature frames."""

    mean: np.ndarray
    std: np.ndarray
    n_clips: int
    n_frames: int


def _valid(x: np.ndarray) -> np.ndarray:
    """``(N, T)``: frames that are not padding (layer 0 is never all zero on a real frame)."""
    return np.abs(x[:, 0]).max(axis=-1) > 0


def speaker_stats(features: np.ndarray, *, chunk: int = 256) -> SpeakerStats:
    """Statistics of ``features`` ``(N, L, T, C)``: all valid frames of N clips of one
    speaker (or of a whole training set: sums are accumulated ``chunk`` clips at a time)."""
    x = np.asarray(features)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(
            f"speaker statistics need (clips, layers, frames, channels), got {x.shape}"
        )
    total = np.zeros((x.shape[1], x.shape[3]))  # (L, C) float64
    square, n = np.zeros_like(total), 0
    for s in range(0, len(x), chunk):
        part = x[s : s + chunk]
        frames = part.transpose(0, 2, 1, 3)[_valid(part)].astype(np.float64)  # (n_i, L, C)
        total += frames.sum(0)
        square += np.square(frames).sum(0)
        n += len(frames)
    if n < 2:
        raise ValueError("speaker statistics need at least two frames of speech")
    mean = total / n
    std = np.maximum(np.sqrt(np.maximum(square / n - np.square(mean), 0.0)), MIN_STD)
    return SpeakerStats(mean.astype(np.float32), std.astype(np.float32), len(x), n)


def standardise(features: np.ndarray, stats: SpeakerStats) -> np.ndarray:
    """``features`` ``(N, L, T, C)`` standardised by ``stats``; padding frames stay zero."""
    x = np.asarray(features)
    valid = _valid(x)[:, None, :, None]  # (N, 1, T, 1)
    z = (x.astype(np.float32) - stats.mean[None, :, None]) / stats.std[None, :, None]
    z = np.clip(z, -MAX_Z, MAX_Z)  # a channel still in the statistics but moving now: no inf
    return np.where(valid, z, 0.0).astype(x.dtype)


def standardise_by_speaker(features: np.ndarray, speakers: Sequence[str]) -> np.ndarray:
    """A standardised copy of ``features``: each clip by the statistics of its speaker's clips.

    ``speakers[i]`` names the speaker of clip ``i`` (corpus-prefixed, like ``AudioItem.speaker``).
    """
    x = np.asarray(features)
    keys = np.asarray(list(speakers))
    if len(keys) != len(x):
        raise ValueError(f"{len(keys)} speaker names for {len(x)} clips")
    out = np.empty_like(x)
    for key in np.unique(keys):
        rows = np.flatnonzero(keys == key)
        out[rows] = standardise(x[rows], speaker_stats(x[rows]))
    return out


# --- calibration that does not take a speaker's emotions for their voice -------------------
#
# A few recordings' own statistics carry the emotions the speaker happened to record: on three
# angry clips, their anger becomes their "normal" voice and reads as neutral.  ``calibrate``
# therefore trusts them only as far as they stand out from what emotions and words alone
# would move: per layer, the speaker's mean frame is pulled towards the training population's
# by the positive-part James-Stein weight ``w = max(0, 1 - sum_c noise_c / sum_c d_c^2)``,
# where ``d`` is how far the recordings' mean lies from the population's and ``noise`` what
# a speaker's own ``n`` clips scatter by (``ShrinkPrior``, measured on the training speakers):
# an emotion's offset, which does not average out when every clip has the same emotion, plus
# the words' share divided by ``n``.  A voice like the training speakers' (whose deviation is
# about the noise) stays near the population's statistics; a new microphone, room or accent
# (a deviation far beyond it) gets almost its own.  Both moments are blended with ``w``.


@dataclass(frozen=True)
class ShrinkPrior:
    """How much one speaker's clip means scatter, per layer and channel ``(L, C)``:
    ``emotion`` = the mean squared offset of an emotion's mean clip from the speaker's mean,
    ``lexical`` = the variance of clip means within one speaker and emotion."""

    emotion: np.ndarray
    lexical: np.ndarray

    def noise(self, n_clips: int) -> np.ndarray:
        """Expected squared deviation of ``n_clips`` clips' mean from the speaker's mean when
        they may all share one emotion."""
        return self.emotion.astype(np.float64) + self.lexical.astype(np.float64) / max(n_clips, 1)


def _clip_means(x: np.ndarray, *, chunk: int = 256) -> np.ndarray:
    """``(N, L, C)``: each clip's mean valid frame (``chunk`` clips at a time)."""
    return _clip_moments(x, chunk=chunk)[0]


def shrink_prior(
    features: np.ndarray, labels: Sequence[int], speakers: Sequence[str]
) -> ShrinkPrior:
    """:class:`ShrinkPrior` of labelled training clips ``(N, L, T, C)`` of several speakers
    (an emotion with fewer than two clips of a speaker is left out for that speaker).

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 1, 6, 2)).astype(np.float32)
    >>> x[::2, :, :, 0] += 3  # channel 0 moves with the emotion, channel 1 does not
    >>> p = shrink_prior(x, [0, 1] * 20, ["a"] * 20 + ["b"] * 20)
    >>> bool(p.emotion[0, 0] > 1 > 0.1 > p.emotion[0, 1])
    True
    """
    x = np.asarray(features)
    y, keys = np.asarray(labels), np.asarray(list(speakers))
    if len(y) != len(x) or len(keys) != len(x):
        raise ValueError(f"{len(y)} labels and {len(keys)} speakers for {len(x)} clips")
    means = _clip_means(x)
    emotion, lexical = [], []
    for key in np.unique(keys):
        rows = np.flatnonzero(keys == key)
        centre = means[rows].mean(0)
        for k in np.unique(y[rows]):
            m = means[rows[y[rows] == k]]
            if len(m) > 1:
                emotion.append(np.square(m.mean(0) - centre))
                lexical.append(m.var(0, ddof=1))
    if not emotion:
        raise ValueError("a shrinkage prior needs a speaker with two clips of one emotion")
    return ShrinkPrior(
        np.mean(emotion, axis=0).astype(np.float32), np.mean(lexical, axis=0).astype(np.float32)
    )


def calibrate(
    recordings: Sequence[np.ndarray | SpeakerStats],
    population: SpeakerStats,
    prior: ShrinkPrior | None,
) -> SpeakerStats:
    """One speaker's statistics from the raw features of their ``recordings`` (each
    ``(windows, L, T, C)``, or its :func:`recording_stats`), shrunk towards ``population``
    by ``prior`` (see above; None: the recordings' own statistics, as a head trained before
    the prior existed does).

    >>> pop = SpeakerStats(np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32), 0, 0)
    >>> prior = ShrinkPrior(np.full((1, 2), 0.5, np.float32), np.ones((1, 2), np.float32))
    >>> near = [np.full((1, 1, 4, 2), 0.5, np.float16)] * 3  # within the noise: population
    >>> calibrate(near, pop, prior).mean.tolist()
    [[0.0, 0.0]]
    >>> far = [np.full((1, 1, 4, 2), 8.0, np.float16)] * 3  # far beyond it: mostly its own
    >>> float(calibrate(far, pop, prior).mean[0, 0])  # w = 1 - (0.5 + 1/3) / 64
    7.8958...
    """
    if not recordings:
        raise ValueError("calibration needs at least one recording")
    own = pooled_stats(
        [r if isinstance(r, SpeakerStats) else recording_stats(r) for r in recordings]
    )
    if prior is None:
        return own
    d2 = np.square(own.mean.astype(np.float64) - population.mean)  # (L, C)
    noise = prior.noise(len(recordings))
    w = np.clip(1.0 - noise.sum(-1) / np.maximum(d2.sum(-1), 1e-12), 0.0, 1.0)[:, None]  # (L, 1)
    return blend_stats([own, population], [w, 1.0 - w], n_clips=own.n_clips, n_frames=own.n_frames)


def blend_stats(parts: Sequence[SpeakerStats], weights, *, n_clips: int, n_frames: int):
    """The mixture of ``parts``: their means and second moments weighted by ``weights``
    (one per part, each a scalar or broadcasting to ``(L, C)``; they sum to 1)."""
    w = [np.asarray(k, np.float64) for k in weights]
    means = [p.mean.astype(np.float64) for p in parts]
    mean = sum(k * m for k, m in zip(w, means, strict=True))
    second = sum(
        k * (np.square(p.std.astype(np.float64)) + np.square(m))
        for k, p, m in zip(w, parts, means, strict=True)
    )
    std = np.sqrt(np.maximum(second - np.square(mean), 0.0))
    return SpeakerStats(
        mean.astype(np.float32), np.maximum(std, MIN_STD).astype(np.float32), n_clips, n_frames
    )


def recording_stats(features: np.ndarray) -> SpeakerStats:
    """The statistics of one recording's raw features ``(windows, L, T, C)`` (all its
    windows' frames), counted as one clip: what a calibration needs of it, ~100x smaller."""
    from sound2sight.voice.cache import stack_features

    own = speaker_stats(stack_features(list(np.asarray(features))))
    return SpeakerStats(own.mean, own.std, 1, own.n_frames)


def pooled_stats(parts: Sequence[SpeakerStats]) -> SpeakerStats:
    """The statistics of all frames of ``parts`` together (frame-weighted moments); its
    ``n_clips`` is the sum of theirs.

    >>> x = np.random.default_rng(0).normal(size=(4, 1, 5, 2)).astype(np.float32)
    >>> a, b, both = speaker_stats(x[:1]), speaker_stats(x[1:]), speaker_stats(x)
    >>> p = pooled_stats([a, b])
    >>> bool(np.allclose(p.mean, both.mean, atol=1e-5) and np.allclose(p.std, both.std, atol=1e-5))
    True
    >>> p.n_clips, p.n_frames
    (4, 20)
    """
    if not parts:
        raise ValueError("no statistics to pool")
    n = np.array([p.n_frames for p in parts], np.float64)
    clips = int(sum(p.n_clips for p in parts))
    return blend_stats(parts, n / n.sum(), n_clips=clips, n_frames=int(n.sum()))


def standardise_alone(
    features: np.ndarray, population: SpeakerStats, prior: ShrinkPrior | None
) -> np.ndarray:
    """``features`` ``(N, L, T, C)`` with each clip standardised as the pipeline reads one
    recording without a calibration: by :func:`calibrate` of that clip alone (the training
    frames' statistics when there is no ``prior``)."""
    x = np.asarray(features)
    if prior is None:
        return standardise(x, population)
    out = np.empty_like(x)
    for i in range(len(x)):
        out[i] = standardise(x[i : i + 1], alone_stats(x[i : i + 1], population, prior))[0]
    return out


def alone_stats(
    recording: np.ndarray, population: SpeakerStats, prior: ShrinkPrior | None
) -> SpeakerStats:
    """The statistics one recording ``(windows, L, T, C)`` is read with when nothing else
    of its speaker is known: :func:`calibrate` of it alone, or without a ``prior`` (a head
    saved before it existed) the training frames' statistics, never the recording's own
    plain statistics (its mean carries its emotion)."""
    return population if prior is None else calibrate([recording], population, prior)


class CalibrationViews:
    """Training clips read as a calibration could read them (``classifier.calibration_augment``).

    A speaker-normalised head trains on clips standardised by all of their speaker's clips,
    but the pipeline reads a recording by :func:`calibrate` of one to a few recordings, pulled
    towards the training frames' statistics by a weight it cannot know in advance.  This draws,
    for a ``share`` of a batch's clips, what such a calibration might produce: the pooled
    statistics of the clip alone or of ``sizes`` random clips of its speaker, blended with
    ``population`` at a uniform random weight, so that the head learns to read them all.

    >>> import torch
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(6, 1, 4, 2)).astype(np.float16)
    >>> pop = speaker_stats(x)
    >>> views = CalibrationViews(x, ["a"] * 3 + ["b"] * 3, pop, share=1.0)
    >>> z = views.apply(torch.zeros(2, 1, 4, 2), np.array([0, 4]), rng)
    >>> tuple(z.shape), bool(z.abs().sum() > 0)
    ((2, 1, 4, 2), True)
    """

    def __init__(
        self,
        raw: np.ndarray,
        speakers: Sequence[str],
        population: SpeakerStats,
        *,
        share: float,
        sizes: Sequence[int] = (1, 3, 10),
    ) -> None:
        self.raw = np.asarray(raw)
        if len(speakers) != len(self.raw):
            raise ValueError(f"{len(speakers)} speaker names for {len(self.raw)} clips")
        self.share, self.sizes, self.population = float(share), tuple(sizes), population
        self.mean, self.second, self.frames = _clip_moments(self.raw)
        keys = np.asarray(list(speakers))
        self.rows = {k: np.flatnonzero(keys == k) for k in np.unique(keys)}
        self.speaker = keys

    def stats(self, i: int, rng: np.random.Generator) -> SpeakerStats:
        """One random calibration's statistics for training clip ``i``."""
        k = int(rng.choice(self.sizes))
        mine = self.rows[self.speaker[i]]
        rows = [i] if k == 1 else rng.choice(mine, size=min(k, len(mine)), replace=False)
        n = self.frames[rows].astype(np.float64)
        share = (n / max(n.sum(), 1.0))[:, None, None]
        mean = (share * self.mean[rows]).sum(0)
        second = (share * self.second[rows]).sum(0)
        std = np.sqrt(np.maximum(second - np.square(mean), 0.0))
        own = SpeakerStats(mean, np.maximum(std, MIN_STD), len(rows), int(n.sum()))
        w = float(rng.random())
        return blend_stats([own, self.population], [w, 1.0 - w], n_clips=len(rows), n_frames=0)

    def apply(self, xb, ib: np.ndarray, rng: np.random.Generator):
        """The batch ``xb`` (a float tensor of speaker-standardised rows ``ib``) with a
        ``share`` of its clips replaced by a random calibration's reading of them."""
        import torch

        out = xb.clone()
        for j, i in enumerate(np.asarray(ib)):
            if rng.random() < self.share:
                z = standardise(self.raw[i : i + 1], self.stats(int(i), rng))
                out[j] = torch.from_numpy(z[0].astype(np.float32))
        return out


def _clip_moments(x: np.ndarray, *, chunk: int = 256):
    """Each clip's mean and mean square valid frame ``(N, L, C)`` and its valid frame count."""
    mean = np.zeros((len(x), x.shape[1], x.shape[3]))
    second, frames = np.zeros_like(mean), np.zeros(len(x), np.int64)
    for s in range(0, len(x), chunk):
        part = x[s : s + chunk].astype(np.float32)
        valid = _valid(part)[:, None, :, None]
        n = np.maximum(valid.sum(2), 1)
        mean[s : s + chunk] = np.where(valid, part, 0.0).sum(2, dtype=np.float64) / n
        second[s : s + chunk] = np.where(valid, np.square(part), 0.0).sum(2, dtype=np.float64) / n
        frames[s : s + chunk] = valid[:, 0, :, 0].sum(1)
    return mean, second, frames
