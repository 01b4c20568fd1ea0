"""Speech check on a real voice-activity detector (silero-vad), plus a pure-tone guard.

The silero model ships inside the ``silero-vad`` package (``silero_vad/data/silero_vad.jit``);
it is loaded from there once per process, on CPU, and nothing is downloaded.  The network is
run in one batched pass: the STFT + conv encoder of every 32 ms window at once, then one
``nn.LSTM`` call over the windows with the model's own LSTM-cell weights, then its decoder.
The probabilities equal silero's chunk-by-chunk loop (to ~1e-7) at ~10x its speed.

All functions take mono float audio at 16 kHz; resampling other rates is the caller's job
(:func:`sound2sight.voice.audio.load_audio` resamples while decoding).

>>> import numpy as np
>>> speech_segments(np.zeros(16000, dtype=np.float32))
[]
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sound2sight.voice.audio import AudioError

__all__ = ["SAMPLE_RATE", "speech_segments", "speech_seconds", "extract_speech"]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # the only rate the 16 kHz silero model accepts
_WINDOW = 512  # samples per silero frame at 16 kHz (32 ms)
_CONTEXT = 64  # samples of the previous frame that silero prepends to each frame
_MIN_SPEECH_MS = 250  # silero's default: shorter detected regions are dropped
_TONE_MIN = 0.95  # a region whose frames hold more of their power in one peak is a sinusoid
_HIGHPASS_HZ = 100.0  # the tone guard's high-pass (DC offset, mains hum, rumble)
_LOW_BINS = 2  # FFT bins (31.25 Hz each) the tone guard ignores: 0 and 31 Hz
_QUIET_RMS = 0.05  # a refused clip quieter than this is heard a second time, raised to it ...
_MAX_GAIN = 10 ** (30 / 20)  # ... by at most +30 dB (silero misses whole quiet, sad voices)
_PHONE_HZ = 3400.0  # a refused clip is also heard through a telephone band's low-pass ...
_QUIETER_DB = (20, 30)  # ... and this many dB quieter (silero misses some shouted takes)
_LOWER = (("a fifth lower", 3, 2), ("a third lower", 5, 4))  # ... and slowed, pitch lowered

_lock = threading.Lock()
_model: _Silero | None = None


class _Silero(nn.Module):
    """The packaged silero JIT model, run on all frames in one batch (see module doc)."""

    def __init__(self, jit: torch.jit.ScriptModule) -> None:
        super().__init__()
        net = jit._model  # the 16 kHz network; jit._model_8k is the 8 kHz one
        self.stft, self.encoder, self.head = net.stft, net.encoder, net.decoder.decoder
        cell = net.decoder.rnn.state_dict()  # an LSTMCell(128, 128)
        self.rnn = nn.LSTM(cell["weight_ih"].shape[1], cell["weight_hh"].shape[1])
        self.rnn.load_state_dict(
            {f"{k}_l0": v for k, v in cell.items()}  # weight_ih -> weight_ih_l0, ...
        )
        self.eval()

    @torch.inference_mode()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Speech probability per 512-sample frame: ``(n_samples,) -> (ceil(n / 512),)``."""
        n = -(-len(wave) // _WINDOW)
        padded = torch.zeros(_CONTEXT + n * _WINDOW)
        padded[_CONTEXT : _CONTEXT + len(wave)] = wave
        frames = padded.unfold(0, _CONTEXT + _WINDOW, _WINDOW)  # (n, 576)
        feats = self.encoder(self.stft(frames))  # (n, 128, 1)
        hidden, _ = self.rnn(feats[:, None, :, 0])  # (n, 1, 128): frames are the time axis
        return self.head(hidden[:, 0, :, None]).reshape(n)  # (n, 1, 1) -> (n,)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, restoring the previous count afterwards.

    The model is tiny: on a busy CPU, OpenMP spinning makes 2 threads 10-400x slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _package_file(name: str) -> Path:
    """Path of ``silero_vad/data/<name>`` without importing silero_vad (whose import
    calls ``torch.set_num_threads(1)`` for the whole process)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("silero-vad is not installed: pip install 'silero-vad>=6.2'")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / name


def _get_model() -> _Silero:
    """The process-wide model, loaded on first use (the caller holds ``_lock`` and runs
    inside :func:`_one_thread`)."""
    global _model
    if _model is None:
        # silero_vad's import sets the process thread count to 1; _probabilities calls us
        # inside _one_thread(), which restores it
        import silero_vad  # noqa: F401

        path = _package_file("silero_vad.jit")
        with warnings.catch_warnings():  # torch >= 2.9 calls TorchScript deprecated
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            _model = _Silero(torch.jit.load(str(path), map_location="cpu"))
        log.info("loaded silero VAD from %s", path)
    return _model


def _probabilities(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Checked 16 kHz mono input -> silero speech probability per 32 ms frame ``(n_frames,)``."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(
            f"the VAD needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; resample first "
            "(e.g. sound2sight.voice.audio.load_audio(path, sample_rate=16000))"
        )
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n_samples,), got shape {wave.shape}")
    if wave.size == 0:
        return np.zeros(0, dtype=np.float32)
    with _lock, _one_thread():  # the lock also keeps the thread-count swap un-interleaved
        return _get_model()(torch.from_numpy(np.ascontiguousarray(wave))).numpy()


def _highpass(wave: np.ndarray) -> np.ndarray:
    """6th-order Butterworth high-pass at 100 Hz: removes a DC offset and mains hum / rumble
    (60 Hz -27 dB, 50 Hz -36 dB, 30 Hz -63 dB): no speech, but they can own a frame's peak."""
    from scipy.signal import butter, sosfilt

    return sosfilt(butter(6, _HIGHPASS_HZ, "highpass", fs=SAMPLE_RATE, output="sos"), wave)


def _peak_share(wave: np.ndarray) -> np.ndarray:
    """Share of each 512-sample frame's power within +-2 bins of its strongest bin, in [0, 1]:
    ~1.0 for a single (even vibrato) sinusoid, 0.4-0.85 for voiced speech.  ``(n_frames,)``.

    The wave is high-passed first and the bins below ~60 Hz are left out, so a DC offset or
    rumble is never the "peak"; each bin of the +-2 window is counted once, also at the
    spectrum's edges.

    >>> t = np.arange(16000) / 16000
    >>> bool(np.median(_peak_share(np.sin(2 * np.pi * 440 * t))) > 0.95)
    True
    >>> float(_peak_share(np.full(16000, 0.5)).max()) <= 1.0  # a DC offset alone
    True
    """
    n = len(wave) // _WINDOW
    if n == 0:
        return np.zeros(0)
    x = _highpass(np.asarray(wave, dtype=np.float64)[: n * _WINDOW])
    frames = x.reshape(n, _WINDOW) * np.hanning(_WINDOW)  # (n, 512)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (n, 257)
    power[:, :_LOW_BINS] = 0.0  # 0 and 31 Hz: no speech there
    peak = power.argmax(axis=1)
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(power, axis=1)], axis=1)  # (n, 258)
    lo = np.maximum(peak - 2, 0)
    hi = np.minimum(peak + 2, power.shape[1] - 1) + 1  # each bin of the window once
    near = np.take_along_axis(cum, hi[:, None], 1) - np.take_along_axis(cum, lo[:, None], 1)
    total = cum[:, -1:]
    return np.clip(near[:, 0] / np.maximum(total[:, 0], 1e-12), 0.0, 1.0) * (total[:, 0] > 1e-12)


def speech_segments(
    wave: np.ndarray,
    *,
    sample_rate: int = SAMPLE_RATE,
    threshold: float = 0.5,
    min_silence_ms: int = 100,
) -> list[tuple[int, int]]:
    """Sample ranges ``[start, stop)`` of the speech regions silero-vad finds.

    Parameters
    ----------
    wave : np.ndarray, shape (n_samples,), float in [-1, 1]
        Mono audio at ``sample_rate``.
    sample_rate : int, must be 16000
        Other rates raise ``ValueError``: resample first.
    threshold : float in (0, 1)
        A frame whose speech probability is at least this starts speech; speech ends after
        ``min_silence_ms`` below ``threshold - 0.15`` (silero's hysteresis).
    min_silence_ms : int >= 0
        Pauses shorter than this stay inside one region.

    Returns
    -------
    list of (start, stop) int pairs, sorted, non-overlapping, unpadded; regions shorter
    than 250 ms are dropped (silero's default).

    Notes
    -----
    silero rejects steady tones, white noise, silence and plain chords by itself, but a
    sine with a 5 Hz vibrato (a sung "oo") reads as speech to it.  A second check drops any
    region whose median frame keeps >= 95 % of its power within +-2 FFT bins (62 Hz) of its
    peak: a single sinusoid scores ~1.0; CREMA-D and procedural voices
    scored 0.38-0.84 (medians per clip).  The share is taken after a 100 Hz high-pass,
    so a DC offset or mains hum on a real voice is not mistaken for a tone.

    Examples
    --------
    >>> tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)
    >>> speech_segments(tone)
    []
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1 and wave.size:
        wave = wave - wave.mean(dtype=np.float64).astype(np.float32)  # a DC offset is no sound
    probs = _probabilities(wave, sample_rate)
    if probs.size == 0:
        return []
    from silero_vad import get_speech_timestamps_from_probs  # imported by _get_model

    found = get_speech_timestamps_from_probs(
        probs.tolist(),
        sampling_rate=SAMPLE_RATE,
        threshold=threshold,
        min_speech_duration_ms=_MIN_SPEECH_MS,
        min_silence_duration_ms=min_silence_ms,
        speech_pad_ms=0,
        audio_length_samples=len(wave),
    )
    share = _peak_share(wave)
    kept = []
    for seg in found:
        start, stop = int(seg["start"]), int(seg["end"])
        region = share[start // _WINDOW : stop // _WINDOW]
        if region.size and float(np.median(region)) >= _TONE_MIN:
            log.debug("dropped a pure-tone region %d-%d", start, stop)
            continue
        kept.append((start, stop))
    return kept


def speech_seconds(
    wave: np.ndarray,
    *,
    sample_rate: int = SAMPLE_RATE,
    threshold: float = 0.5,
    min_silence_ms: int = 100,
) -> float:
    """Total duration in seconds of :func:`speech_segments` (same parameters).

    Examples
    --------
    >>> speech_seconds(np.zeros(48000, dtype=np.float32))
    0.0
    """
    segments = speech_segments(
        wave, sample_rate=sample_rate, threshold=threshold, min_silence_ms=min_silence_ms
    )
    return sum(stop - start for start, stop in segments) / sample_rate


def _pad_and_merge(
    segments: list[tuple[int, int]], *, pad: int, n_samples: int
) -> list[tuple[int, int]]:
    """Widen each range by ``pad`` samples (clipped to the clip) and merge overlaps.

    >>> _pad_and_merge([(100, 200), (250, 400), (900, 950)], pad=30, n_samples=960)
    [(70, 430), (870, 960)]
    """
    merged: list[tuple[int, int]] = []
    for start, stop in segments:
        start, stop = max(0, start - pad), min(n_samples, stop + pad)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def _raised(wave: np.ndarray) -> np.ndarray | None:
    """A quiet clip raised towards RMS ``_QUIET_RMS`` (gain at most ``_MAX_GAIN``, no
    clipping); ``None`` when it is not quiet.  silero's probabilities depend on level: it
    finds no speech at all in some soft-spoken sad CREMA-D clips (RMS ~0.005) and hears it
    once they are 20-30 dB louder, while tones, chords, noise and silence raised the same way
    stay refused (``tests/test_vad.py``).

    >>> _raised(np.full(100, 0.2, dtype=np.float32)) is None  # a DC offset alone: no sound
    True
    >>> quiet = 0.01 * np.sin(np.arange(1600, dtype=np.float32))  # RMS 0.007: raised 17 dB
    >>> round(float(np.sqrt(np.mean(_raised(quiet) ** 2))), 3)
    0.05
    """
    centred = wave.astype(np.float64) - wave.mean(dtype=np.float64) if wave.size else wave
    rms = float(np.sqrt(np.mean(centred**2))) if wave.size else 0.0
    if not 0.0 < rms < _QUIET_RMS:
        return None
    gain = min(_QUIET_RMS / rms, _MAX_GAIN, 1.0 / max(float(np.abs(centred).max()), 1e-12))
    return (centred * gain).astype(np.float32) if gain > 1.0 else None


def _lowpass(wave: np.ndarray) -> np.ndarray:
    """6th-order Butterworth low-pass at 3.4 kHz, a telephone line's upper edge."""
    from scipy.signal import butter, sosfilt

    sos = butter(6, _PHONE_HZ, "lowpass", fs=SAMPLE_RATE, output="sos")
    return sosfilt(sos, wave).astype(np.float32)


def _slowed(wave: np.ndarray, up: int, down: int) -> np.ndarray:
    """The clip played ``up / down`` times slower (resampled to ``up / down`` as many samples
    and heard at the same rate): pitch and tempo lowered together, as a tape played slow."""
    from scipy.signal import resample_poly

    return resample_poly(wave.astype(np.float64), up, down).astype(np.float32)


def _second_hearings(wave: np.ndarray) -> Iterator[tuple[str, np.ndarray, float]]:
    """Other versions of a refused clip for silero to hear, in order, as ``(how, wave,
    slow)``: ``slow`` is how many samples of the hearing make one sample of the clip (1 for
    all but the slowed hearings), so a region ``[a, b)`` found in it is ``[a/slow, b/slow)``
    of the clip.

    silero's probabilities depend on level, bandwidth and pitch in ways a voice should not:
    it finds no speech at all in some soft-spoken sad takes (heard once raised,
    :func:`_raised`), and in some shouted, clipped ones, which it hears once the harsh top of
    the spectrum is cut (a telephone band's 3.4 kHz low-pass) or once they are 20-30 dB
    quieter.  Some high, strained voices (shouted or fearful takes) it hears only with their
    pitch lowered: the clip slowed to 2/3 of its speed (a fifth lower) or to 4/5 (a major
    third lower), raised first if quiet.  Tones, chords, noise, melodies
    and silence heard these ways stay refused (``tests/test_vad.py``,
    ``benchmarks/vad_fallbacks.py``); the tone guard judges every hearing.

    >>> [how for how, _, _ in _second_hearings(0.01 * np.sin(np.arange(1600, dtype=np.float32)))]
    ['raised', 'telephone band', '20 dB quieter', '30 dB quieter', 'a fifth lower', 'a third lower']
    >>> [(how, slow) for how, _, slow in _second_hearings(0.3 * np.ones(1600, np.float32))][-2:]
    [('a fifth lower', 1.5), ('a third lower', 1.25)]
    """
    louder = _raised(wave)
    if louder is not None:
        yield "raised", louder, 1.0
    yield "telephone band", _lowpass(wave if louder is None else louder), 1.0
    for db in _QUIETER_DB:
        yield f"{db} dB quieter", (wave * np.float32(10 ** (-db / 20))).astype(np.float32), 1.0
    for how, up, down in _LOWER:
        yield how, _slowed(wave if louder is None else louder, up, down), up / down


def extract_speech(
    wave: np.ndarray,
    *,
    sample_rate: int = SAMPLE_RATE,
    name: str,
    min_speech: float = 0.5,
    pad_ms: int = 100,
    threshold: float = 0.5,
) -> np.ndarray:
    """The detected speech of a clip, concatenated; refuses clips with too little speech.

    Every region from :func:`speech_segments` is widened by ``pad_ms`` on each side (so word
    onsets and endings survive), overlapping regions are merged, and the pieces are joined
    in order: pauses and silence between them are dropped, not only at the ends.  A clip
    refused as recorded is heard again (:func:`_second_hearings`: raised if quiet, through a
    telephone band, 20 and 30 dB quieter, slowed to a lower pitch; silero misses some
    soft-spoken, some shouted and some high voices entirely); the first hearing that finds
    enough speech gives the regions, which are cut from the clip as recorded.

    Parameters
    ----------
    wave : np.ndarray, shape (n_samples,), float
        Mono audio at ``sample_rate``.
    sample_rate : int, must be 16000
        Resample other rates first.
    name : str
        Names the clip in the error message (usually its path).
    min_speech : float >= 0
        Seconds of detected speech (before padding) that a clip must hold.
    pad_ms : int >= 0
        Padding added on each side of every region, in milliseconds.
    threshold : float in (0, 1)
        Speech-probability threshold of :func:`speech_segments`.  Shouted, clipped speech
        scores low with silero: at 0.5 about 1 in 20 CREMA-D clips holds < 0.5 s of it.

    Returns
    -------
    np.ndarray, float32, shape (n_kept,), n_kept <= n_samples

    Raises
    ------
    AudioError
        ``"<name>: no speech detected (only 0.12 s of speech found, need at least 0.5 s)"`` for silence,
        tones, noise, music or clips too short to judge.

    Examples
    --------
    >>> from sound2sight.synthetic import synth_voice
    >>> voice = synth_voice("happy", speaker=1, seed=0)  # 2.5 s, speech from 0.22 to 2.24 s
    >>> voice.shape, extract_speech(voice, name="voice.wav").shape
    ((40000,), (35456,))
    >>> extract_speech(np.zeros(16000, dtype=np.float32), name="quiet.wav")
    Traceback (most recent call last):
    ...
    sound2sight.voice.audio.AudioError: quiet.wav: no speech detected (only 0.00 s of speech found, need at least 0.5 s)
    """
    wave = np.asarray(wave, dtype=np.float32)
    segments = speech_segments(wave, sample_rate=sample_rate, threshold=threshold)
    seconds = sum(stop - start for start, stop in segments) / sample_rate
    if seconds < min_speech:
        # second hearings of a refused clip only: a clip accepted as recorded is unchanged
        for how, other, slow in _second_hearings(wave):
            again = [
                (int(start / slow), min(len(wave), int(np.ceil(stop / slow))))
                for start, stop in speech_segments(
                    other, sample_rate=sample_rate, threshold=threshold
                )
            ]
            more = sum(stop - start for start, stop in again) / sample_rate
            if more > seconds:
                log.debug("%s: %.2f s of speech %s (%.2f s as recorded)", name, more, how, seconds)
                segments, seconds = again, more
            if seconds >= min_speech:
                break
    if seconds < min_speech:
        raise AudioError(
            f"{name}: no speech detected (only {seconds:.2f} s of speech found, "
            f"need at least {min_speech:g} s)"
        )
    pieces = _pad_and_merge(segments, pad=pad_ms * sample_rate // 1000, n_samples=len(wave))
    log.debug("%s: %.2f s of speech in %d region(s)", name, seconds, len(pieces))
    return np.concatenate([wave[start:stop] for start, stop in pieces])
