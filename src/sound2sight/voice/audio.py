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
    "mel_filterbank",
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

    A truncated file (e.g. a cut-off MP3) decodes to the samples it still holds; a
    warning naming the file is logged when fewer frames arrive than its header announces.

    Returns
    -------
    np.ndarray, shape (n_samples,), float32
    """
    if not data:
        raise AudioError(f"{name}: empty file (0 bytes)")
    return _decode(io.BytesIO(data), name=name, sample_rate=sample_rate, max_seconds=max_seconds)


def _decode(source, *, name: str, sample_rate: int, max_seconds: float) -> np.ndarray:
    """Decode a file path or file-like object with libsndfile; see :func:`decode_audio`."""
    try:
        with sf.SoundFile(source) as fh:
            seconds = fh.frames / max(fh.samplerate, 1)
            if seconds > max_seconds:
                raise AudioError(
                    f"{name}: {seconds:.0f} s long, over the {max_seconds:.0f} s limit"
                )
            wave = fh.read(dtype="float32", always_2d=True)  # (n_samples, channels)
            sr = fh.samplerate
            if 0 < wave.shape[0] < fh.frames:
                log.warning("%s: truncated (%d of %d frames)", name, wave.shape[0], fh.frames)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        detail = getattr(exc, "error_string", None) or exc  # no "<_io.BytesIO object at 0x..>"
        raise AudioError(f"{name}: cannot decode audio ({detail})") from exc
    if wave.shape[0] == 0:
        raise AudioError(f"{name}: zero-length audio (no samples)")
    wave = wave[:, 0] if wave.shape[1] == 1 else wave.mean(axis=1)  # (n_samples,) downmix
    if not np.isfinite(wave).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    if sr != sample_rate:
        import soxr

        wave = soxr.resample(wave, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(wave, dtype=np.float32)


def load_audio(
    path: str | os.PathLike, *, sample_rate: int = 16000, max_seconds: float = 600.0
) -> np.ndarray:
    """Read an audio file to mono float32 at ``sample_rate`` (see :func:`decode_audio`).

    libsndfile reads the file itself (no Python read callbacks); the samples are the
    same as ``decode_audio(path.read_bytes(), ...)``.
    """
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, expected an audio file")
    try:
        with open(path, "rb") as fh:  # a clear "cannot read" before libsndfile's own message
            empty = not fh.read(1)
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if empty:
        raise AudioError(f"{path}: empty file (0 bytes)")
    source = os.fsencode(path) if os.name == "posix" else str(path)  # non-UTF-8 names too
    return _decode(source, name=str(path), sample_rate=sample_rate, max_seconds=max_seconds)


def _frame_rms(wave: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """RMS of frames ``[i * hop, i * hop + frame)`` (zero-padded at the end): ``(n_frames,)``.

    Sums of squares per hop-sized block, then per frame a sum of ``frame // hop`` blocks:
    two passes over the samples and no per-frame copy.
    """
    n = max(1, 1 + (len(wave) - frame) // hop) if len(wave) >= frame else 1
    sq = np.square(wave, dtype=np.float64)
    if frame % hop:  # general case: one cumulative sum over the samples
        csum = np.concatenate(([0.0], np.cumsum(sq)))
        starts = np.arange(n) * hop
        sums = csum[np.minimum(starts + frame, len(wave))] - csum[starts]
    else:
        k = frame // hop
        blocks = np.zeros(n + k - 1)  # frame i = blocks i .. i + k - 1
        full = min(len(wave) // hop, len(blocks))
        blocks[:full] = sq[: full * hop].reshape(full, hop).sum(axis=1)
        if full < len(blocks):
            blocks[full] = sq[full * hop : (full + 1) * hop].sum()
        csum = np.concatenate(([0.0], np.cumsum(blocks)))
        sums = csum[k : k + n] - csum[:n]
    return np.sqrt(np.maximum(sums, 0.0) / frame)


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


def _rms(wave: np.ndarray) -> float:
    """Root mean square, accumulated in float64."""
    return float(np.sqrt(np.square(wave, dtype=np.float64).mean())) if wave.size else 0.0


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
    if _rms(wave) < cfg.silence_rms:
        raise AudioError(f"{name}: no speech detected (the recording is silent)")
    voiced = trim_silence(wave, top_db=cfg.top_db)
    rms = _rms(voiced)  # of the voiced part
    # gain and clip are elementwise, so they commute with the crop / zero-pad
    fixed = fix_length(voiced, int(round(cfg.duration * cfg.sample_rate)))
    out = np.multiply(fixed, np.float32(cfg.target_rms / max(rms, 1e-8)), dtype=np.float32)
    return np.clip(out, -1.0, 1.0, out=out)


def mel_filterbank(
    *, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """Slaney-style Mel filterbank, equal to ``librosa.filters.mel`` (htk=False, norm="slaney").

    Computed here in numpy so that no process pays librosa's import time for it.

    Returns
    -------
    np.ndarray, shape (n_mels, n_fft // 2 + 1), float32

    >>> mel_filterbank(sample_rate=16000, n_fft=512, n_mels=64, fmin=50.0, fmax=8000.0).shape
    (64, 257)
    """
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(hz: float) -> float:
        return min_log_mel + np.log(hz / min_log_hz) / logstep if hz >= min_log_hz else hz / f_sp

    mels = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    mel_f = f_sp * mels
    log_t = mels >= min_log_mel
    mel_f[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))  # (n_mels + 2,) Hz
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate))  # (M + 2, F)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)).astype(np.float32)  # (n_mels, F)
    weights *= 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])[:, None]  # Slaney area norm
    return weights


class LogMel(nn.Module):
    """Waveforms ``(B, n_samples)`` -> normalised log-Mel ``(B, n_mels, frames)``.

    Power STFT (Hann window) through the Slaney Mel filterbank (:func:`mel_filterbank`,
    librosa's numbers), ``10 log10``, then each clip is standardised by its own mean and
    standard deviation.

    >>> LogMel(AudioConfig(n_mels=40))(torch.zeros(2, 16000)).shape
    torch.Size([2, 40, 101])
    """

    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        self.cfg = cfg
        fb = mel_filterbank(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            n_mels=cfg.n_mels,
            fmin=cfg.fmin,
            fmax=cfg.fmax,
        )  # (n_mels, n_fft // 2 + 1)
        self.register_buffer("fb", torch.from_numpy(fb), persistent=False)
        # the Hann window zero-padded (centred) to n_fft, as torch.stft would do itself
        left = (cfg.n_fft - cfg.win_length) // 2
        window = torch.zeros(cfg.n_fft)
        window[left : left + cfg.win_length] = torch.hann_window(cfg.win_length)
        self.register_buffer("window", window, persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            wave,
            n_fft=self.cfg.n_fft,
            hop_length=self.cfg.hop_length,
            window=self.window,
            center=True,
            return_complex=True,
        )  # (B, n_fft // 2 + 1, frames)
        if torch.is_grad_enabled() and wave.requires_grad:  # keep autograd's inputs intact
            power = spec.real.square() + spec.imag.square()
            logmel = 10.0 * torch.log10(torch.matmul(self.fb, power).clamp_min(1e-10))
            centred = logmel - logmel.mean(dim=(1, 2), keepdim=True)
            n = centred[0].numel()
            std = (centred.square().sum(dim=(1, 2), keepdim=True) / max(n - 1, 1)).sqrt()
            return centred / (std + 1e-5)
        power = spec.real.square().addcmul_(spec.imag, spec.imag)  # |X|^2
        logmel = torch.matmul(self.fb, power).clamp_min_(1e-10).log10_().mul_(10.0)  # (B, M, T)
        centred = logmel.sub_(logmel.mean(dim=(1, 2), keepdim=True))
        n = centred[0].numel()  # two-pass (unbiased) std: ~7x faster than torch.std_mean here
        std = centred.square().sum(dim=(1, 2), keepdim=True).div_(max(n - 1, 1)).sqrt_()
        return centred.div_(std.add_(1e-5))
