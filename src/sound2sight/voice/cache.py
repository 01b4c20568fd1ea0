"""Cached voice features: frozen Whisper hidden states of every clip, computed once.

One entry per (file content, encoder weights, preprocessing): ``(layers, T', channels)``
float16, where ``T'`` follows the clip's own length (no padding to a fixed length).
:func:`load_voice_features` stacks them, zero-padded in time, for the head.

The clip preparation is the one inference uses (:func:`prepare_voice`): silence check,
trim leading/trailing silence, RMS-normalise the voiced part, centre-crop to
``classifier.max_seconds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from sound2sight.cache import FeatureCache, _hash_or_fail, config_hash
from sound2sight.config import Config, wave_views
from sound2sight.voice.audio import AudioError, _rms, fix_length, load_audio, trim_silence

__all__ = [
    "VoiceBatch",
    "prepare_voice",
    "alter_voice",
    "listening_view",
    "listen",
    "voice_namespace",
    "build_voice_cache",
    "load_voice_features",
    "training_views",
]

log = logging.getLogger(__name__)

VOICE_VERSION = "voice-v1"  # bump when the feature numbers change
ENCODE_BATCH = 16  # clips per encoder call (sorted by length, so little padding)


def prepare_voice(wave: np.ndarray, cfg: Config, *, name: str = "audio") -> np.ndarray:
    """Silence check, trim, RMS-normalise, centre-crop to ``classifier.max_seconds``.

    >>> from sound2sight.config import Config
    >>> w = np.concatenate([np.zeros(8000), 0.3 * np.sin(np.arange(32000) / 5), np.zeros(8000)])
    >>> out = prepare_voice(w.astype(np.float32), Config())
    >>> len(out) < 40000, round(float(np.sqrt(np.mean(out ** 2))), 2)
    (True, 0.1)
    """
    a = cfg.audio
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size == 0:
        raise AudioError(f"{name}: zero-length audio (no samples)")
    if _rms(wave) < a.silence_rms:
        raise AudioError(f"{name}: no speech detected (the recording is silent)")
    voiced = trim_silence(wave, top_db=a.top_db)
    n_max = int(round(cfg.classifier.max_seconds * a.sample_rate))
    if len(voiced) > n_max:
        voiced = fix_length(voiced, n_max)
    out = np.multiply(voiced, np.float32(a.target_rms / max(_rms(voiced), 1e-8)), dtype=np.float32)
    if cfg.classifier.noise_floor_db > 0:  # one noise floor for clean and noisy recordings
        rng = np.random.default_rng(len(out))  # deterministic: cached features reproduce
        level = a.target_rms * 10 ** (-cfg.classifier.noise_floor_db / 20)
        out += rng.standard_normal(len(out)).astype(np.float32) * np.float32(level)
    return np.clip(out, -1.0, 1.0, out=out)


def alter_voice(wave: np.ndarray, view: str, cfg: Config) -> np.ndarray:
    """One training view of a prepared clip (``classifier.wave_augment``): ``speed<f>``
    resamples so the clip plays ``f`` times as fast (tempo and pitch together, as in Kaldi's
    speed perturbation); ``noise<dB>`` adds white noise that many dB under the voice's RMS;
    ``channel<N>`` passes it through the clip's random recording channel number ``N``
    (:func:`sound2sight.voice.channel.random_channel`: room, noise, microphone colour, band limit,
    DC offset, clipping; same length and RMS).  The noise is seeded by the clip's length,
    a channel by the clip's samples and ``N``, so cached views reproduce.

    >>> from sound2sight.config import Config
    >>> w = (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    >>> len(alter_voice(w, "speed0.8", Config())), len(alter_voice(w, "noise20", Config()))
    (20000, 16000)
    >>> len(alter_voice(w, "channel1", Config()))
    16000
    """
    (kind, value), *rest = wave_views(view) or [("", 0.0)]
    if rest or not kind:
        raise ValueError(f"alter_voice: one view expected, got {view!r}")
    sr = cfg.audio.sample_rate
    if kind == "speed":
        import soxr

        out = np.asarray(soxr.resample(wave, sr * value, sr), dtype=np.float32)
        n_max = int(round(cfg.classifier.max_seconds * sr))
        if len(out) > n_max:  # slower views are centre-cropped like the original
            out = fix_length(out, n_max)
    elif kind == "channel":
        from sound2sight.voice.channel import random_channel

        out = random_channel(wave, int(value), sr)
    elif kind == "floor":
        out = raise_floor(wave, -value)
    else:
        rng = np.random.default_rng([len(wave), int(value * 10)])
        level = _rms(wave) * 10 ** (-value / 20)
        out = wave + rng.standard_normal(len(wave)).astype(np.float32) * np.float32(level)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def clip_floor_db(wave: np.ndarray) -> float | None:
    """A clip's noise floor: the 2nd percentile of its 32 ms frame RMS (at 16 kHz), in dB
    under the clip's RMS; ``None`` for a silent or shorter clip.

    >>> quiet, voice = 0.001 * np.sin(np.arange(5120)), 0.1 * np.sin(np.arange(16000) / 5)
    >>> round(clip_floor_db(np.r_[quiet, voice].astype(np.float32)))  # the clip's RMS: 0.062
    -39
    """
    w = wave - wave.mean()
    n = len(w) // 512
    if n == 0 or not np.any(w):
        return None
    frames = np.sqrt(np.mean(w[: n * 512].reshape(n, 512) ** 2, axis=1))
    rms = float(np.sqrt(np.mean(w**2)))
    return 20 * np.log10(max(float(np.quantile(frames, 0.02)), 1e-9) / rms)


def raise_floor(wave: np.ndarray, target_db: float) -> np.ndarray:
    """``wave`` with white noise added so that its floor (:func:`clip_floor_db`) reaches
    ``target_db``; unchanged when it is already there.  Seeded by the clip's length."""
    floor = clip_floor_db(wave)
    if floor is None or floor >= target_db:
        return wave
    rms = float(np.sqrt(np.mean((wave - wave.mean()) ** 2)))
    level = rms * np.sqrt(10 ** (target_db / 10) - 10 ** (floor / 10))
    rng = np.random.default_rng(len(wave))
    return np.clip(wave + level * rng.standard_normal(len(wave)), -1, 1).astype(np.float32)


def listening_view(cfg: Config) -> str:
    """The :func:`alter_voice` view every recording is read through at inference
    (``classifier.listen``), or ``""``; training clips are never altered by it.

    >>> from sound2sight.config import Config
    >>> c = Config(); listening_view(c)
    ''
    >>> c.classifier.listen = " floor25 "; listening_view(c)
    'floor25'
    """
    return str(cfg.classifier.listen).strip()


def listen(wave: np.ndarray, cfg: Config) -> np.ndarray:
    """A prepared clip (:func:`prepare_voice`) as the model reads it at inference: through
    :func:`listening_view`, or unchanged."""
    view = listening_view(cfg)
    return alter_voice(wave, view, cfg) if view else wave


def voice_namespace(cfg: Config, provenance: list[dict], view: str = "") -> str:
    """Cache namespace: weights' hashes + the settings that change the numbers (+ the
    training view, see :func:`alter_voice`)."""
    a, c = cfg.audio, cfg.classifier
    key = {
        "weights": [p["sha256"] for p in provenance],
        "sr": a.sample_rate,
        "top_db": a.top_db,
        "rms": a.target_rms,
        "silence": a.silence_rms,
        "max_seconds": c.max_seconds,
        "pool": c.feature_pool,
        **({"noise_floor_db": c.noise_floor_db} if c.noise_floor_db > 0 else {}),
        **({"view": view} if view else {}),
    }
    return "voice-" + config_hash(key, version=VOICE_VERSION)


@dataclass
class VoiceBatch:
    paths: list[str]
    keys: list[str | None]  # cache key per path, None where the file failed
    failures: list[tuple[str, str]] = field(default_factory=list)
    hits: int = 0
    misses: int = 0
    seconds: float = 0.0


def _encode(encoder, waves: list[np.ndarray]) -> list[np.ndarray]:
    n = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(n.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    feats = encoder(batch, n)  # (B, L, T', C)
    from sound2sight.voice.whisper import encoder_frames

    p = encoder.feature_pool
    out = []
    for i, w in enumerate(waves):
        t = -(-encoder_frames(len(w)) // p)  # this clip's own feature frames
        out.append(feats[i, :, :t].to(torch.float16).numpy())
    return out


def build_voice_cache(
    paths: Sequence[str],
    cfg: Config,
    encoder,
    cache: FeatureCache,
    *,
    progress: bool = True,
    view: str = "",
) -> VoiceBatch:
    """Make sure every file's voice features are cached; failures are reported, not raised.

    ``view``: encode the clips altered by :func:`alter_voice` (a training view) instead."""
    t0 = time.perf_counter()
    paths = [str(p) for p in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        hashed = list(pool.map(_hash_or_fail, paths))  # the log-Mel cache's own check
    keys: list[str | None] = [k for k, _ in hashed]
    failures = [(p, err) for p, (_, err) in zip(paths, hashed, strict=True) if err]
    todo: dict[str, str] = {}
    for p, k in zip(paths, keys, strict=True):
        if k is not None and k not in todo and k not in cache:
            todo[k] = p
    bad: dict[str, str] = {}
    desc = f"voice features ({view})" if view else "voice features"
    bar = tqdm(total=len(todo), desc=desc, unit="clip", disable=not progress)
    items = list(todo.items())
    every = max(len(items) // 10, 256)
    done = 0
    for start in range(0, len(items), 256):  # decode 256, sort by length, encode in batches
        decoded = []
        for key, path in items[start : start + 256]:
            try:
                wave = load_audio(
                    path, sample_rate=cfg.audio.sample_rate, max_seconds=cfg.audio.max_seconds
                )
                wave = prepare_voice(wave, cfg, name=path)
                decoded.append((key, alter_voice(wave, view, cfg) if view else wave))
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
                msg = (
                    str(exc)
                    if isinstance(exc, AudioError)
                    else f"{path}: {type(exc).__name__}: {exc}"
                )
                bad[key] = msg
                failures.append((path, msg))
                bar.update(1)
        decoded.sort(key=lambda kv: len(kv[1]))
        for i in range(0, len(decoded), ENCODE_BATCH):
            chunk = decoded[i : i + ENCODE_BATCH]
            for (key, _), feat in zip(chunk, _encode(encoder, [w for _, w in chunk]), strict=True):
                cache.put(key, feat)
            bar.update(len(chunk))
            done += len(chunk)
            if not progress and done % every < len(chunk):  # progress in log files too
                log.info("voice features: %d/%d clips", done, len(items))
    bar.close()
    for p, k in zip(paths, keys, strict=True):  # copies of a file that failed fail too
        if k in bad and todo.get(k) != p:
            failures.append((p, f"{p}: identical to {todo[k]}, which failed"))
    keys = [None if (k is None or k in bad) else k for k in keys]
    for _, reason in failures:
        log.warning("skipped %s", reason)
    misses = len(todo) - len(bad)
    return VoiceBatch(
        paths=paths,
        keys=keys,
        failures=failures,
        hits=sum(k is not None for k in keys) - misses,
        misses=misses,
        seconds=time.perf_counter() - t0,
    )


def stack_features(feats: list[np.ndarray]) -> np.ndarray:
    """Zero-pad variable-length ``(L, T_i, C)`` features in time: ``(N, L, max T_i, C)``.

    >>> stack_features([np.ones((2, 3, 4)), np.ones((2, 5, 4))]).shape
    (2, 2, 5, 4)
    """
    if not feats:
        return np.zeros((0, 0, 0, 0), np.float16)
    n_l, _, c = feats[0].shape
    t = max(f.shape[1] for f in feats)
    out = np.zeros((len(feats), n_l, t, c), np.float16)
    for i, f in enumerate(feats):
        out[i, :, : f.shape[1]] = f
    return out


def load_voice_features(items, cfg: Config, *, progress: bool = True, encoder=None, view: str = ""):
    """Cached voice features of ``items`` (computed on a miss); failed rows are dropped.
    ``view``: of the clips altered by :func:`alter_voice` (a training view).

    Returns
    -------
    (items_ok, features)
        ``features`` is ``(len(items_ok), layers, frames, channels)`` float16.
    """
    import copy

    from sound2sight.voice.model import encoder_names

    names = encoder_names(cfg.classifier.encoder)
    if encoder is None and len(names) > 1:  # side by side, from each encoder's own cache
        parts = []
        for name in names:
            one = copy.deepcopy(cfg)
            one.classifier.encoder = name
            parts.append(dict(zip(*_paths_and_feats(items, one, progress, view=view), strict=True)))
        keep = [it for it in items if all(it.path in p for p in parts)]
        n_layers = max(p[keep[0].path].shape[0] for p in parts) if keep else 0
        feats = []
        for it in keep:
            per = [p[it.path] for p in parts]
            per = [np.pad(f, ((0, n_layers - f.shape[0]), (0, 0), (0, 0))) for f in per]
            t = min(f.shape[1] for f in per)  # equal: both encoders see the same samples
            feats.append(np.concatenate([f[:, :t] for f in per], axis=-1))
        return keep, stack_features(feats)
    its, feats = _paths_and_feats(items, cfg, progress, encoder, view)
    by_path = {it.path: it for it in items}
    return [by_path[p] for p in its], stack_features(feats)


def _paths_and_feats(items, cfg: Config, progress: bool, encoder=None, view: str = ""):
    """Paths that succeeded and their cached ``(L, T_i, C)`` features (one encoder)."""
    from sound2sight.train.common import cache_root
    from sound2sight.voice.model import VoiceEncoder

    if encoder is None:
        encoder = VoiceEncoder.load(
            cfg.classifier.encoder, feature_pool=cfg.classifier.feature_pool
        )
    ns = voice_namespace(cfg, encoder.provenance, view)
    cache = FeatureCache(cache_root(cfg), namespace=ns)
    paths = [it.path for it in items]
    batch = build_voice_cache(paths, cfg, encoder, cache, progress=progress, view=view)
    ok = [it for it, k in zip(items, batch.keys, strict=True) if k is not None]
    log.info(
        "voice features (%s%s): %d clips (%d cache hits, %d computed, %d failed) in %.1f s",
        cfg.classifier.encoder,
        f", {view}" if view else "",
        len(ok),
        batch.hits,
        batch.misses,
        len(batch.failures),
        batch.seconds,
    )
    feats = [cache.get(k) for k in batch.keys if k is not None]
    return [it.path for it in ok], feats


def training_views(
    train_items,
    x_tr: torch.Tensor,
    cfg: Config,
    *,
    progress: bool = True,
    speaker_norm: bool = False,
) -> list[torch.Tensor]:
    """The training clips' voice features under each ``classifier.wave_augment`` view, row
    for row like ``x_tr`` (a clip whose altered copy failed keeps its original features).

    ``speaker_norm`` (``classifier.speaker_norm``): each view is standardised by its own
    statistics per speaker (each clip's ``speaker``), as if the speaker's clips in that view
    were one more speaker (a voice 10 % slower and lower is a voice the head should read by
    its own mean, as it reads every real speaker)."""
    out = []
    for kind, value in wave_views(cfg.classifier.wave_augment):
        view = f"{kind}{value:g}"
        ok, feats = load_voice_features(train_items, cfg, progress=progress, view=view)
        if speaker_norm and len(ok):
            from sound2sight.voice.speaker import standardise_by_speaker

            feats = standardise_by_speaker(feats, [it.speaker for it in ok])
        row = {it.path: i for i, it in enumerate(ok)}
        t = max(x_tr.shape[2], feats.shape[2])
        x = torch.zeros(x_tr.shape[0], x_tr.shape[1], t, x_tr.shape[3], dtype=x_tr.dtype)
        x[:, :, : x_tr.shape[2]] = x_tr
        for i, it in enumerate(train_items):
            if it.path in row:
                f = torch.from_numpy(feats[row[it.path]])
                x[i] = 0
                x[i, :, : f.shape[1]] = f
        log.info("training view %s: %d of %d clips", view, len(row), len(train_items))
        out.append(x)
    return out
