"""Per-speaker standardisation of voice features: opt-in and transductive.

A voice model trained with ``classifier.speaker_norm=true`` sees every clip's Whisper
features standardised by its *speaker's* statistics: per layer and channel, the mean and
standard deviation over all frames of all that speaker's clips.  What is left is how this
clip differs from the speaker's usual voice, which is what an emotion changes; the
speaker's timbre, microphone and room largely cancel.

It is transductive: at test time the statistics come from the test speaker's own
(unlabelled) clips, so it needs several recordings of one person.  The pipeline exposes it
as :meth:`sound2sight.pipeline.Sound2Sight.calibrate_to_speaker`.  Without a calibration a
speaker-normalised model uses the statistics of all its training frames, which the head
keeps (``population_mean`` / ``population_std``): one recording's own statistics would be
far worse, as its mean carries much of its emotion (measured in BENCHMARKS.md).

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

__all__ = ["SpeakerStats", "speaker_stats", "standardise", "standardise_by_speaker"]

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
