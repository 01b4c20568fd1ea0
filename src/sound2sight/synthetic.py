"""Deterministic synthetic demo corpus: procedural emotional "speech" and abstract paintings.

The generators are cheap, fully vectorised and seeded, so the demo corpus can be rebuilt
byte-for-byte anywhere. Emotion cues follow the usual acoustic correlates (pitch level and
range, speaking rate, loudness, spectral tilt, jitter/shimmer), with per-clip and per-speaker
variation wide enough that the classes overlap.
"""

from __future__ import annotations

import colorsys
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw, ImageFilter
from scipy.signal import lfilter, sosfilt
from tqdm import tqdm

from sound2sight.labels import EMOTIONS

__all__ = ["EMOTIONS", "synth_voice", "synth_painting", "make_demo_corpus"]

logger = logging.getLogger(__name__)

_FORMAT_VERSION = 1  # bump when the generators change output, to invalidate old markers
_VOWELS = np.array(  # F1, F2, F3 in Hz of an adult male voice: a, e, i, o, u
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
    dtype=np.float64,
)
_BANDWIDTHS = np.array([90.0, 110.0, 170.0])  # formant bandwidths in Hz


@dataclass(frozen=True)
class _Prosody:
    f0_scale: float  # pitch level relative to the speaker's base F0
    range_st: float  # std of per-syllable pitch targets, semitones
    glide_st: float  # within-syllable pitch glide, semitones (> 0 rising)
    drift_st: float  # pitch drift across the utterance, semitones (> 0 rising)
    rate: float  # syllables per second
    level_db: float  # target RMS of the voiced part, dBFS
    closing: float  # glottal closing phase as a fraction of the period; smaller -> brighter
    tilt: float  # one-pole low-pass coefficient in [0, 1); larger -> darker
    jitter: float  # relative F0 perturbation
    shimmer: float  # relative amplitude perturbation
    breath: float  # breath-noise level relative to voicing
    shape: float  # syllable envelope exponent; < 1 abrupt, > 1 soft


_PROSODY = {
    "angry": _Prosody(1.30, 3.5, -3.0, -1.0, 5.5, -16.0, 0.09, 0.25, 0.020, 0.14, 0.05, 0.4),
    "happy": _Prosody(1.25, 3.0, 2.5, 2.5, 4.3, -21.0, 0.17, 0.55, 0.010, 0.07, 0.05, 0.8),
    "sad": _Prosody(0.88, 1.2, -1.2, -3.0, 3.0, -25.0, 0.26, 0.72, 0.012, 0.09, 0.12, 1.6),
}


def _emotion_index(emotion: str) -> int:
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
    return EMOTIONS.index(emotion)


def _sub_seed(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def _smooth_noise(rng: np.random.Generator, n: int, step: int) -> np.ndarray:
    """Unit-variance noise, linearly interpolated from a grid every `step` samples."""
    grid = rng.standard_normal(n // step + 2)
    return np.interp(np.arange(n) / step, np.arange(grid.size), grid)


def _formant_sos(formants: np.ndarray, sr: int) -> np.ndarray:
    """Cascade of unity-DC-gain two-pole resonators, one SOS row per formant."""
    f = np.minimum(formants, 0.45 * sr)
    r = np.exp(-np.pi * _BANDWIDTHS / sr)
    a1, a2 = -2.0 * r * np.cos(2.0 * np.pi * f / sr), r * r
    sos = np.zeros((f.size, 6))  # (n_formants, 6)
    sos[:, 0], sos[:, 3], sos[:, 4], sos[:, 5] = 1.0 + a1 + a2, 1.0, a1, a2
    return sos


def synth_voice(
    emotion: str, *, speaker: int, seed: int, sr: int = 16000, duration: float = 2.5
) -> np.ndarray:
    """Synthesise one procedural "voice" clip with emotion-dependent prosody.

    Parameters
    ----------
    emotion : str in EMOTIONS
    speaker : int >= 0
        Speaker id; base pitch (90-250 Hz), formant scale and voice quality derive from it.
    seed : int >= 0
        Clip seed; the same (emotion, speaker, seed, sr, duration) gives the same samples.
    sr : int > 0
        Sample rate in Hz.
    duration : float > 0
        Clip length in seconds, including leading and trailing silence.

    Returns
    -------
    np.ndarray, float32, shape (round(duration * sr),), values in [-1, 1]

    Examples
    --------
    >>> synth_voice("sad", speaker=3, seed=0).shape
    (40000,)
    """
    emotion_index = _emotion_index(emotion)
    p = _PROSODY[emotion]
    spk = np.random.default_rng(np.random.SeedSequence([0x5EED, speaker]))
    rng = np.random.default_rng(np.random.SeedSequence([seed, speaker, emotion_index]))
    n = int(round(duration * sr))

    # Speaker: higher voices have shorter vocal tracts, hence higher formants.
    u_f0 = spk.uniform()
    base_f0 = 90.0 * (250.0 / 90.0) ** u_f0
    formant_scale = 0.86 + 0.3 * u_f0 + 0.04 * spk.standard_normal()
    closing_spk, breath_spk = np.exp(0.2 * spk.standard_normal(2))
    level_spk = 2.0 * spk.standard_normal()

    # Clip-level draws make the emotion classes overlap.
    f0 = base_f0 * p.f0_scale * np.exp(0.12 * rng.standard_normal())
    rate = p.rate * np.exp(0.18 * rng.standard_normal())
    level_db = p.level_db + level_spk + 3.0 * rng.standard_normal()
    closing = np.clip(p.closing * closing_spk * np.exp(0.25 * rng.standard_normal()), 0.05, 0.4)
    tilt = float(np.clip(p.tilt + 0.12 * rng.standard_normal(), 0.0, 0.92))
    range_st = p.range_st * np.exp(0.3 * rng.standard_normal())

    # Syllable layout: (start, end) sample indices with occasional phrase pauses.
    lead, trail = rng.uniform(0.05, 0.35, size=2) * duration / 2.5
    t, syllables = lead, []
    while True:
        period = np.exp(0.25 * rng.standard_normal()) / rate
        voiced = period * rng.uniform(0.6, 0.9)
        if t + voiced > duration - trail:
            break
        syllables.append((int(t * sr), int((t + voiced) * sr)))
        t += period + (rng.uniform(0.1, 0.35) if rng.uniform() < 0.15 else 0.0)
    if not syllables:  # very short clips: one syllable filling the speech window
        syllables.append((int(lead * sr), max(int(lead * sr) + 1, int((duration - trail) * sr))))
    bounds = np.array(syllables)  # (n_syl, 2)
    n_syl = len(bounds)

    # Pitch contour in semitones: drift + per-syllable targets + within-syllable glides.
    centre = bounds.mean(axis=1) / sr
    span = (centre - lead) / max(duration - lead - trail, 1e-3)
    target = p.drift_st * span + range_st * rng.standard_normal(n_syl)
    glide = p.glide_st * rng.uniform(0.3, 1.5, n_syl)
    knots_t = bounds.reshape(-1)  # (2 * n_syl,)
    knots_p = np.stack([target - glide / 2, target + glide / 2], axis=1).reshape(-1)
    semitones = np.interp(np.arange(n), knots_t, knots_p)
    jitter = 1.0 + p.jitter * _smooth_noise(rng, n, max(1, sr // 400))  # 2.5 ms grid
    f0_track = f0 * 2.0 ** (semitones / 12.0) * jitter
    f0_track = np.clip(f0_track, 50.0, 0.2 * sr)

    # Rosenberg glottal flow from the running phase; its derivative is the source.
    phase = np.cumsum(f0_track / sr) % 1.0
    t_open = 0.45
    flow = np.where(
        phase < t_open,
        0.5 * (1.0 - np.cos(np.pi * phase / t_open)),
        np.where(
            phase < t_open + closing,
            np.cos(0.5 * np.pi * (phase - t_open) / closing),
            0.0,
        ),
    )
    source = lfilter([1.0 - tilt], [1.0, -tilt], np.diff(flow, prepend=0.0))
    source /= max(float(np.std(source)), 1e-9)  # unit RMS, so `breath` is a voice/noise ratio

    # Syllable envelopes (abrupt for shape < 1, soft for shape > 1) with shimmer.
    env = np.zeros(n)
    for s, e in bounds:
        env[s:e] = np.sin(np.pi * (np.arange(e - s) + 0.5) / (e - s)) ** p.shape
    env *= np.clip(1.0 + p.shimmer * _smooth_noise(rng, n, max(1, sr // 200)), 0.0, None)  # 5 ms
    breath = np.diff(rng.standard_normal(n + 1)) * (p.breath * breath_spk)
    excitation = (source + breath) * env

    # Formants: one vowel per syllable; each syllable's resonator rings on for `tail` samples.
    voice = np.zeros(n)
    tail = int(0.03 * sr)
    vowels = _VOWELS[rng.integers(0, len(_VOWELS), n_syl)] * formant_scale
    vowels *= np.exp(0.05 * rng.standard_normal(vowels.shape))
    for (s, e), formants in zip(bounds, vowels, strict=True):
        segment = np.zeros(min(n, e + tail) - s)
        segment[: e - s] = excitation[s:e]
        voice[s : s + segment.size] += sosfilt(_formant_sos(formants, sr), segment)

    # Loudness: scale the voiced part to the target RMS, soft-clip, add a faint noise floor.
    voiced = env > 0.05
    rms = np.sqrt(np.mean(voice[voiced] ** 2)) if voiced.any() else 1.0
    voice *= 10.0 ** (level_db / 20.0) / max(rms, 1e-9)
    voice = np.tanh(voice) + 3e-4 * rng.standard_normal(n)
    return np.clip(voice, -1.0, 1.0).astype(np.float32)


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return int(r * 255), int(g * 255), int(b * 255)


def _paint_angry(draw: ImageDraw.ImageDraw, rng: np.random.Generator, s: int, dh: float) -> float:
    for _ in range(rng.integers(6, 14)):
        red = _hsv(dh + rng.uniform(-0.03, 0.05), rng.uniform(0.8, 1), rng.uniform(0.55, 1))
        ink = red if rng.uniform() < 0.7 else _hsv(0, 0, rng.uniform(0, 0.12))
        c = rng.uniform(0, s, 2)
        if rng.uniform() < 0.55:  # sharp triangle
            pts = c + rng.uniform(-0.35, 0.35, (3, 2)) * s
            draw.polygon([tuple(q) for q in pts], fill=ink)
        else:  # jagged zig-zag stroke
            k, angle = int(rng.integers(4, 9)), rng.uniform(-0.6, 0.6)
            unit = np.array([np.cos(angle), np.sin(angle)])
            steps = np.arange(k) * rng.uniform(0.05, 0.15) * s
            teeth = np.where(np.arange(k) % 2, 1.0, -1.0) * rng.uniform(0.04, 0.12) * s
            zig = c + np.outer(steps, unit) + np.outer(teeth, [-unit[1], unit[0]])  # (k, 2)
            draw.line([tuple(q) for q in zig], fill=ink, width=int(rng.integers(2, 6)))
    return 0.0  # no blur: hard edges


def _paint_happy(draw: ImageDraw.ImageDraw, rng: np.random.Generator, s: int, dh: float) -> float:
    for _ in range(rng.integers(5, 13)):
        if rng.uniform() < 0.65:  # warm yellow/orange
            ink = _hsv(dh + rng.uniform(0.07, 0.16), rng.uniform(0.55, 0.95), rng.uniform(0.9, 1))
        else:  # light blue
            ink = _hsv(dh + rng.uniform(0.5, 0.58), rng.uniform(0.3, 0.6), rng.uniform(0.9, 1))
        c, r = rng.uniform(0, s, 2), rng.uniform(0.05, 0.2) * s * rng.uniform(0.8, 1.2, 2)
        draw.ellipse([tuple(c - r), tuple(c + r)], fill=ink)
    return float(rng.uniform(0.0, 1.0))


def _paint_sad(draw: ImageDraw.ImageDraw, rng: np.random.Generator, s: int, dh: float) -> float:
    x = np.linspace(-0.1, 1.1, 16) * s
    for _ in range(rng.integers(4, 10)):
        ink = _hsv(dh + rng.uniform(0.55, 0.68), rng.uniform(0.08, 0.35), rng.uniform(0.3, 0.65))
        sag = rng.uniform(0.02, 0.2) * s  # drooping: lowest in the middle
        y = rng.uniform(0, s) + sag * np.sin(np.pi * (x / s + 0.1) / 1.2)
        draw.line(list(zip(x, y, strict=True)), fill=ink, width=int(rng.integers(3, 12)))
    return float(rng.uniform(1.5, 3.0))


_PAINTERS = {"angry": _paint_angry, "happy": _paint_happy, "sad": _paint_sad}
_BACKGROUNDS = {  # hue ranges (one drawn per colour), saturation and value ranges of the gradient
    "angry": (((-0.02, 0.03),), (0.6, 1.0), (0.05, 0.3)),
    "happy": (((0.1, 0.16), (0.5, 0.58)), (0.15, 0.45), (0.88, 1.0)),
    "sad": (((0.55, 0.65),), (0.1, 0.3), (0.35, 0.6)),
}


def synth_painting(emotion: str, *, seed: int, size: int = 64) -> np.ndarray:
    """Render a small abstract painting whose palette and strokes follow `emotion`.

    Angry: reds and black, high contrast, triangles and jagged strokes. Happy: bright warm
    yellows/oranges and light blues, round blobs. Sad: desaturated blues and greys, low
    contrast, long drooping horizontal soft strokes.

    Parameters
    ----------
    emotion : str in EMOTIONS
    seed : int >= 0
    size : int > 0
        Output side length in pixels; drawing happens at 2x and is downsampled.

    Returns
    -------
    np.ndarray, uint8, shape (size, size, 3)

    Examples
    --------
    >>> synth_painting("happy", seed=0).shape
    (64, 64, 3)
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, _emotion_index(emotion), 0xA27]))
    s = 2 * size
    dh = rng.uniform(-0.03, 0.03)  # palette hue jitter
    hues, (s0, s1), (v0, v1) = _BACKGROUNDS[emotion]
    ends = [rng.uniform(*hues[rng.integers(len(hues))]) for _ in range(2)]
    top, bottom = (np.array(_hsv(dh + h, rng.uniform(s0, s1), rng.uniform(v0, v1))) for h in ends)
    w = np.linspace(0.0, 1.0, s)[:, None, None]  # (s, 1, 1) vertical gradient weight
    canvas = np.broadcast_to((1 - w) * top + w * bottom, (s, s, 3)).astype(np.uint8)
    img = Image.fromarray(canvas)
    blur = _PAINTERS[emotion](ImageDraw.Draw(img), rng, s, dh)
    if blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    out = np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    out += rng.normal(0.0, rng.uniform(2.0, 6.0), out.shape)  # canvas texture
    return np.clip(out, 0, 255).round().astype(np.uint8)  # (size, size, 3)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def make_demo_corpus(
    root: str | Path,
    *,
    n_speakers: int = 12,
    clips_per_emotion: int = 10,
    paintings_per_emotion: int = 40,
    painting_size: int = 128,
    sr: int = 16000,
    seed: int = 0,
) -> dict:
    """Write the synthetic demo corpus under `root` (skipped if already complete).

    Layout: ``audio/<emotion>/spk<SS>_<emotion>_<NNN>.wav`` (16-bit PCM, 2.5 s; the speaker id
    is the name's prefix before the first ``_``), ``art/<emotion>/art_<emotion>_<NNNN>.png``,
    ``README.txt`` and a ``.complete`` marker holding the parameters, written last.

    Parameters
    ----------
    root : str or Path
    n_speakers : int > 0
    clips_per_emotion : int >= 0
        Clips per speaker and emotion.
    paintings_per_emotion : int >= 0
    painting_size : int > 0
        Painting side length in pixels.
    sr : int > 0
        Audio sample rate in Hz.
    seed : int >= 0
        Same seed and parameters give byte-identical files.

    Returns
    -------
    dict
        ``{"audio": {emotion: n_clips}, "art": {emotion: n_paintings}, "speakers": n_speakers}``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     make_demo_corpus(d, n_speakers=1, clips_per_emotion=1, paintings_per_emotion=1)["audio"]
    {'angry': 1, 'happy': 1, 'sad': 1}
    """
    root = Path(root)
    params = {"version": _FORMAT_VERSION, "emotions": list(EMOTIONS), "seed": seed, "sr": sr}
    params |= {"n_speakers": n_speakers, "clips_per_emotion": clips_per_emotion}
    params |= {"paintings_per_emotion": paintings_per_emotion, "painting_size": painting_size}
    counts = {
        "audio": {e: n_speakers * clips_per_emotion for e in EMOTIONS},
        "art": {e: paintings_per_emotion for e in EMOTIONS},
        "speakers": n_speakers,
    }
    marker = root / ".complete"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        logger.info("demo corpus at %s is complete; skipping generation", root)
        return counts
    marker.unlink(missing_ok=True)

    jobs = []
    for ei, emo in enumerate(EMOTIONS):
        (root / "audio" / emo).mkdir(parents=True, exist_ok=True)
        (root / "art" / emo).mkdir(parents=True, exist_ok=True)
        stale = [*(root / "audio" / emo).glob("spk*.wav"), *(root / "art" / emo).glob("art_*.png")]
        for old in stale:  # left by a run with other parameters
            old.unlink()
        for spk in range(n_speakers):
            for k in range(clips_per_emotion):
                jobs.append(("audio", emo, spk, k, _sub_seed(seed, 0, ei, spk, k)))
        for k in range(paintings_per_emotion):
            jobs.append(("art", emo, 0, k, _sub_seed(seed, 1, ei, k)))

    logger.info("writing %d demo files to %s", len(jobs), root)
    for kind, emo, spk, k, sub in tqdm(jobs, desc="demo corpus", unit="file", leave=False):
        buf = io.BytesIO()
        if kind == "audio":
            name = f"spk{spk:02d}_{emo}_{k:03d}.wav"
            x = synth_voice(emo, speaker=spk, seed=sub, sr=sr)
            sf.write(buf, x, sr, subtype="PCM_16", format="WAV")
        else:
            name = f"art_{emo}_{k:04d}.png"
            x = synth_painting(emo, seed=sub, size=painting_size)
            Image.fromarray(x).save(buf, format="PNG")
        _atomic_write(root / kind / emo / name, buf.getvalue())

    readme = (
        "sound2sight synthetic demo data.\n\n"
        "Every file here was generated procedurally by sound2sight.synthetic.make_demo_corpus;\n"
        "it is not real speech or real art and only serves demos and tests.\n\n"
        f"Parameters: {json.dumps(params, sort_keys=True)}\n"
    )
    _atomic_write(root / "README.txt", readme.encode())
    _atomic_write(marker, json.dumps(params, sort_keys=True).encode())
    return counts
