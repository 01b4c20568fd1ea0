"""Audio front end: decode, downmix, resample, trim silence, RMS-normalise, pad/crop, log-Mel.

The same :class:`LogMel` module runs when the cache is built and when a voice is
painted, so train and serve time see identical numbers.

>>> import numpy as np
>>> cfg = AudioConfig()
>>> wave = preprocess_waveform(np.random.default_rng(0).normal(0, 0.1, 20000), cfg, name="noise")
>>> wave.shape
(48000,)
>>> LogMel(cfg)(torch.from_numpy(wave)[None]).shape
torch.Size([1, 64, 301])
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from sound2sight.config import AudioConfig

__all__ = [
    "AudioError",
    "load_audio",
    "decode_audio",
    "trim_silence",
    "fix_length",
    "preprocess_waveform",
    "LogMel",
    "AUDIO_EXTENSIONS",
]

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".aiff", ".aif", ".au")


class AudioError(ValueError):
    """An audio input that cannot be used; the message names the file and the problem."""


def decode_audio(
    data: bytes, *, name: str, sample_rate: int, max_seconds: float = 600.0
) -> np.ndarray:
    """Decode encoded audio bytes (wav/flac/mp3/ogg/...) to mono float32 at ``sample_rate``.

    Parameters
    ----------
    data : bytes
        The encoded file contents.
    name : str
        Used in error messages (usually the path).
    sample_rate : int > 0
        Output rate in Hz.
    max_seconds : float > 0
        Longer inputs are refused before they are decoded.

    Returns
    -------
    np.ndarray, shape (n_samples,), float32
    """
    if not data:
        raise AudioError(f"{name}: empty file (0 bytes)")
    try:
        with sf.SoundFile(io.BytesIO(data)) as fh:
            seconds = fh.frames / max(fh.samplerate, 1)
            if seconds > max_seconds:
                raise AudioError(
                    f"{name}: {seconds:.0f} s long, over the {max_seconds:.0f} s limit"
                )
            wave = fh.read(dtype="float32", always_2d=True)
            sr = fh.samplerate
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{name}: cannot decode audio ({exc})") from exc
    if wave.shape[0] == 0:
        raise AudioError(f"{name}: zero-length audio (no samples)")
    wave = wave.mean(axis=1)  # (n_samples,) downmix
    if not np.isfinite(wave).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    if sr != sample_rate:
        import soxr

        wave = soxr.resample(wave, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(wave, dtype=np.float32)


def load_audio(
    path: str | os.PathLike, *, sample_rate: int = 16000, max_seconds: float = 600.0
) -> np.ndarray:
    """Read an audio file to mono float32 at ``sample_rate`` (see :func:`decode_audio`)."""
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, expected an audio file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return decode_audio(data, name=str(path), sample_rate=sample_rate, max_seconds=max_seconds)


def _frame_rms(wave: np.ndarray, frame: int, hop: int) -> np.ndarray:
    n = max(1, 1 + (len(wave) - frame) // hop) if len(wave) >= frame else 1
    padded = np.pad(wave, (0, max(0, (n - 1) * hop + frame - len(wave))))
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop][:n]  # (n, frame)
    return np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))


def trim_silence(
    wave: np.ndarray, *, top_db: float = 30.0, frame: int = 1024, hop: int = 256
) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``top_db`` below the loudest frame.

    >>> w = np.concatenate([np.zeros(8000), np.ones(4000) * 0.5, np.zeros(8000)])
    >>> len(trim_silence(w)) < 6000
    True
    """
    rms = _frame_rms(wave, frame, hop)
    peak = rms.max()
    if peak <= 0:
        return wave[:0]
    loud = np.flatnonzero(20 * np.log10(np.maximum(rms, 1e-12) / peak) > -top_db)
    start = loud[0] * hop
    stop = min(len(wave), loud[-1] * hop + frame)
    return wave[start:stop]


def fix_length(wave: np.ndarray, n_samples: int) -> np.ndarray:
    """Centre-crop or zero-pad (both sides equally) to exactly ``n_samples``.

    >>> fix_length(np.ones(5), 9).tolist()
    [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    >>> fix_length(np.arange(10.0), 4).tolist()
    [3.0, 4.0, 5.0, 6.0]
    """
    n = len(wave)
    if n >= n_samples:
        start = (n - n_samples) // 2
        return wave[start : start + n_samples]
    left = (n_samples - n) // 2
    return np.pad(wave, (left, n_samples - n - left))


def preprocess_waveform(wave: np.ndarray, cfg: AudioConfig, *, name: str = "audio") -> np.ndarray:
    """Silence check, trim, RMS-normalise and pad/crop a mono waveform at ``cfg.sample_rate``.

    Raises
    ------
    AudioError
        ``no speech detected`` when the whole clip is below ``cfg.silence_rms``.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size == 0:
        raise AudioError(f"{name}: zero-length audio (no samples)")
    if float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) < cfg.silence_rms:
        raise AudioError(f"{name}: no speech detected (the recording is silent)")
    voiced = trim_silence(wave, top_db=cfg.top_db)
    rms = float(np.sqrt(np.mean(voiced.astype(np.float64) ** 2)))
    voiced = voiced * (cfg.target_rms / max(rms, 1e-8))
    voiced = np.clip(voiced, -1.0, 1.0)
    return fix_length(voiced, int(round(cfg.duration * cfg.sample_rate))).astype(np.float32)


class LogMel(nn.Module):
    """Waveforms ``(B, n_samples)`` -> normalised log-Mel ``(B, n_mels, frames)``.

    Power STFT (Hann window) through librosa's Slaney Mel filterbank, ``10 log10``,
    then each clip is standardised by its own mean and standard deviation.

    >>> LogMel(AudioConfig(n_mels=40))(torch.zeros(2, 16000)).shape
    torch.Size([2, 40, 101])
    """

    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        import librosa

        self.cfg = cfg
        fb = librosa.filters.mel(
            sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax
        )  # (n_mels, n_fft // 2 + 1)
        self.register_buffer("fb", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            wave,
            n_fft=self.cfg.n_fft,
            hop_length=self.cfg.hop_length,
            win_length=self.cfg.win_length,
            window=self.window,
            center=True,
            return_complex=True,
        )  # (B, n_fft // 2 + 1, frames)
        power = spec.real**2 + spec.imag**2
        mel = torch.matmul(self.fb, power)  # (B, n_mels, frames)
        logmel = 10.0 * torch.log10(mel.clamp_min(1e-10))
        mean = logmel.mean(dim=(1, 2), keepdim=True)
        std = logmel.std(dim=(1, 2), keepdim=True)
        return (logmel - mean) / (std + 1e-5)
