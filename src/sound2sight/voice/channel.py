"""Random recording channels for training views (``classifier.wave_augment=channel<N>``).

A corpus recorded in one studio teaches a head that "this microphone, this room" is part
of the emotion.  A channel view passes a prepared clip (16 kHz mono float32, RMS-normalised
by :func:`sound2sight.voice.cache.prepare_voice`) through a random recording chain, in the
order sound meets it::

    room reverb (p 0.5) -> ambient noise -> mic colour (tilt or peaking EQ)
    -> band limit (telephone p 0.4, else high-pass + low-pass) -> DC offset (p 0.3)
    -> level change and clipping at full scale -> back to the input's RMS

The last step is what inference does too (``prepare_voice`` RMS-normalises every clip), so
the level change acts only through the clipping it causes.  :func:`random_channel` seeds
its draws from the clip's own samples and ``N``: a cached view reproduces, and different
clips (and different ``N``) get different channels.  Each effect is its own function, with
its parameters explicit, so it can be used and tested alone.

>>> w = (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32)
>>> out = random_channel(w, 1)
>>> out.dtype, len(out), bool(np.array_equal(out, random_channel(w, 1)))
(dtype('float32'), 16000, True)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

__all__ = [
    "Channel",
    "draw_channel",
    "apply_channel",
    "random_channel",
    "tilt",
    "peaking_eq",
    "band_limit",
    "room_response",
    "reverberate",
    "add_noise",
    "dc_offset",
    "level_and_clip",
]

SR = 16000
TELEPHONE = (300.0, 3400.0)  # Hz, the narrow-band telephone channel
TILT_PIVOT_HZ = 1000.0
TILT_OCTAVES = 2.0  # the tilt is flat beyond 2 octaves either side of the pivot (250 Hz, 4 kHz)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


@dataclass(frozen=True)
class Channel:
    """One recording channel's parameters (what :func:`draw_channel` draws)."""

    tilt_db_per_octave: float | None  # None: peaking EQ instead
    peaks: tuple[tuple[float, float, float], ...]  # (centre Hz, gain dB, Q) per band
    high_pass_hz: float
    low_pass_hz: float | None  # None: no low-pass (up to Nyquist)
    reverb: tuple[float, float] | None  # (RT60 s, direct-to-reverberant ratio dB); None: dry
    snr_db: float
    pink: bool  # pink (1/f) noise, else white
    dc: float  # added to every sample; 0: none
    gain_db: float  # level change before clipping at full scale

    @property
    def telephone(self) -> bool:
        return (self.high_pass_hz, self.low_pass_hz) == TELEPHONE


def draw_channel(rng: np.random.Generator, sr: int = SR) -> Channel:
    """Draw one channel's parameters; every effect is drawn independently.

    >>> ch = draw_channel(np.random.default_rng(0))
    >>> 20 <= ch.snr_db <= 40 and -10 <= ch.gain_db <= 6
    True
    """
    tilt_db, peaks = None, ()
    if rng.random() < 0.5:  # microphone / device colour: a tilt, or 2-4 peaking bands
        tilt_db = float(rng.uniform(-6, 6))
    else:
        for _ in range(int(rng.integers(2, 5))):
            centre = float(np.exp(rng.uniform(np.log(150), np.log(6000))))  # log-uniform
            peaks += ((centre, float(rng.uniform(-6, 6)), float(rng.uniform(0.7, 2.0))),)
    if rng.random() < 0.4:
        high_pass, low_pass = TELEPHONE
    else:
        high_pass = float(rng.uniform(50, 150))
        low_pass = float(rng.uniform(3500, 8000))
        if low_pass >= 0.95 * sr / 2:  # ~ full band: no low-pass at all
            low_pass = None
    reverb = None
    if rng.random() < 0.5:
        reverb = (float(rng.uniform(0.2, 0.8)), float(rng.uniform(0, 10)))
    snr_db, pink = float(rng.uniform(20, 40)), bool(rng.random() < 0.5)
    dc = float(rng.uniform(-0.05, 0.05)) if rng.random() < 0.3 else 0.0
    return Channel(
        tilt_db_per_octave=tilt_db,
        peaks=peaks,
        high_pass_hz=high_pass,
        low_pass_hz=low_pass,
        reverb=reverb,
        snr_db=snr_db,
        pink=pink,
        dc=dc,
        gain_db=float(rng.uniform(-10, 6)),
    )


def tilt(wave: np.ndarray, db_per_octave: float, sr: int = SR) -> np.ndarray:
    """A spectral tilt: ``db_per_octave`` per octave above 1 kHz (and minus that per octave
    below), flat beyond 2 octaves either side (250 Hz, 4 kHz); zero-phase, in the frequency
    domain.  Positive = brighter (a small, close microphone), negative = duller."""
    f = np.fft.rfftfreq(len(wave), 1 / sr)
    octaves = np.clip(np.log2(np.maximum(f, 1e-3) / TILT_PIVOT_HZ), -TILT_OCTAVES, TILT_OCTAVES)
    gain = 10 ** (db_per_octave * octaves / 20)
    return np.fft.irfft(np.fft.rfft(wave) * gain, n=len(wave))


def _peaking_sos(centre_hz: float, gain_db: float, q: float, sr: int) -> np.ndarray:
    """One peaking-EQ biquad (the Audio EQ Cookbook's), as a second-order section."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * centre_hz / sr
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a])
    return np.concatenate([b, den])[None] / den[0]


def peaking_eq(
    wave: np.ndarray, peaks: tuple[tuple[float, float, float], ...] | list, sr: int = SR
) -> np.ndarray:
    """Peaking-EQ bands in series, each ``(centre Hz, gain dB, Q)``: a microphone or
    device's bumps and dips."""
    if not peaks:
        return np.asarray(wave, dtype=np.float64)
    sos = np.concatenate([_peaking_sos(f, g, q, sr) for f, g, q in peaks])
    return sosfilt(sos, wave)


def band_limit(
    wave: np.ndarray, high_pass_hz: float, low_pass_hz: float | None, sr: int = SR
) -> np.ndarray:
    """Butterworth high-pass (4th order) and low-pass (8th order: codecs cut steeply) filters;
    ``(300, 3400)`` is the telephone band.  ``low_pass_hz=None``: no low-pass."""
    out = sosfilt(butter(4, high_pass_hz, btype="highpass", fs=sr, output="sos"), wave)
    if low_pass_hz is not None:
        out = sosfilt(butter(8, low_pass_hz, btype="lowpass", fs=sr, output="sos"), out)
    return out


def room_response(rt60: float, drr_db: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A synthetic room impulse response: a unit direct path, then exponentially decaying
    Gaussian noise that falls 60 dB in ``rt60`` seconds, scaled so the direct path carries
    ``drr_db`` more energy than the tail."""
    n = max(int(rt60 * sr), 2)
    t = np.arange(1, n) / sr
    tail = rng.standard_normal(n - 1) * np.exp(-3 * np.log(10) * t / rt60)  # -60 dB at rt60
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    return np.concatenate([[1.0], tail])


def reverberate(
    wave: np.ndarray, rt60: float, drr_db: float, rng: np.random.Generator, sr: int = SR
) -> np.ndarray:
    """The clip in a room (:func:`room_response`), cut to its original length."""
    return fftconvolve(wave, room_response(rt60, drr_db, rng, sr))[: len(wave)]


def add_noise(
    wave: np.ndarray, snr_db: float, rng: np.random.Generator, *, pink: bool = False
) -> np.ndarray:
    """White or pink (1/f power) Gaussian noise ``snr_db`` under the clip's RMS."""
    noise = rng.standard_normal(len(wave))
    if pink:
        spec = np.fft.rfft(noise)
        f = np.arange(len(spec), dtype=np.float64)
        spec[1:] /= np.sqrt(f[1:])
        spec[0] = 0
        noise = np.fft.irfft(spec, n=len(wave))
    noise *= _rms(wave) * 10 ** (-snr_db / 20) / max(_rms(noise), 1e-12)
    return wave + noise


def dc_offset(wave: np.ndarray, dc: float) -> np.ndarray:
    """A constant offset (a converter's DC bias)."""
    return wave + dc


def level_and_clip(wave: np.ndarray, gain_db: float) -> np.ndarray:
    """A level change, then clipping at full scale (``[-1, 1]``): a hot input distorts."""
    return np.clip(wave * 10 ** (gain_db / 20), -1.0, 1.0)


def apply_channel(
    wave: np.ndarray, ch: Channel, rng: np.random.Generator, sr: int = SR
) -> np.ndarray:
    """``wave`` through channel ``ch`` (``rng`` draws the room's and the noise's samples),
    back at the input's RMS; float32, same length, in ``[-1, 1]``."""
    x = np.asarray(wave, dtype=np.float64)
    if ch.reverb is not None:
        x = reverberate(x, *ch.reverb, rng, sr)
    x = add_noise(x, ch.snr_db, rng, pink=ch.pink)
    if ch.tilt_db_per_octave is not None:
        x = tilt(x, ch.tilt_db_per_octave, sr)
    else:
        x = peaking_eq(x, ch.peaks, sr)
    x = band_limit(x, ch.high_pass_hz, ch.low_pass_hz, sr)
    x = level_and_clip(dc_offset(x, ch.dc), ch.gain_db)
    x *= _rms(wave) / max(_rms(x), 1e-12)  # as prepare_voice would hand it to the encoder
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def channel_seed(wave: np.ndarray, n: int) -> list[int]:
    """The seed of clip ``wave``'s channel ``n``: its length, ``n`` and a hash of its samples."""
    digest = hashlib.sha256(np.ascontiguousarray(wave, dtype=np.float32).tobytes()).digest()
    return [len(wave), int(n), int.from_bytes(digest[:8], "little")]


def random_channel(wave: np.ndarray, n: int, sr: int = SR) -> np.ndarray:
    """Channel ``n`` of this clip: drawn by :func:`draw_channel` from :func:`channel_seed`,
    applied by :func:`apply_channel` (deterministic)."""
    rng = np.random.default_rng(channel_seed(wave, n))
    return apply_channel(wave, draw_channel(rng, sr), rng, sr)
