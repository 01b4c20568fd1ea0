"""Known-answer tests of the audio front end and the log-Mel cache."""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from sound2sight.cache import FeatureCache, build_mel_cache, config_hash
from sound2sight.config import AudioConfig
from sound2sight.voice.audio import (
    AudioError,
    LogMel,
    decode_audio,
    fix_length,
    load_audio,
    mel_filterbank,
    preprocess_waveform,
    trim_silence,
)

SR = 16000


def tone(freq: float, seconds: float, *, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path, wave, sr=SR):
    sf.write(path, wave, sr, subtype="PCM_16")
    return path


@pytest.mark.parametrize(
    "sr,n_fft,n_mels,fmin,fmax",
    [
        (16000, 512, 64, 50.0, 8000.0),
        (16000, 400, 40, 0.0, 8000.0),
        (22050, 1024, 128, 20.0, 11025.0),
    ],
)
def test_mel_filterbank_equals_librosa(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sample_rate=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_tone_peaks_in_the_mel_band_holding_it(freq):
    cfg = AudioConfig()
    with torch.inference_mode():
        mel = LogMel(cfg)(torch.from_numpy(tone(freq, 1.0))[None])[0]  # (n_mels, T)
    centres = librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax)[1:-1]
    expected = int(np.argmin(np.abs(centres - freq)))
    assert int(mel.mean(dim=1).argmax()) == expected


def test_logmel_shape_and_standardised():
    cfg = AudioConfig()
    wave = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (3, 48000)).astype(np.float32))
    with torch.inference_mode():
        out = LogMel(cfg)(wave)
    assert out.shape == (3, cfg.n_mels, 48000 // cfg.hop_length + 1)
    assert torch.allclose(out.mean(dim=(1, 2)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std(dim=(1, 2)), torch.ones(3), atol=1e-3)
    grad_in = wave.clone().requires_grad_()  # the autograd-safe branch gives the same numbers
    assert torch.allclose(LogMel(cfg)(grad_in), out, atol=1e-5)


@pytest.mark.parametrize("n,target", [(5, 9), (9, 9), (10, 4), (1, 2), (48001, 48000), (7, 48000)])
def test_fix_length_exact(n, target):
    out = fix_length(np.arange(1, n + 1, dtype=np.float32), target)
    assert len(out) == target
    if n <= target:  # zero-padded on both sides, the signal intact in the middle
        assert out.sum() == np.arange(1, n + 1).sum()
        left = (target - n) // 2
        assert out[left] == 1 and (left == 0 or out[left - 1] == 0)
    else:  # centre crop
        start = (n - target) // 2
        assert out[0] == start + 1


@pytest.mark.parametrize("seconds", [0.3, 3.0, 7.5])
def test_preprocess_length_and_level(seconds):
    cfg = AudioConfig()
    out = preprocess_waveform(tone(220.0, seconds, amp=0.02), cfg)
    assert out.shape == (int(cfg.duration * cfg.sample_rate),) and out.dtype == np.float32
    voiced = out[np.abs(out) > 0]
    assert np.sqrt(np.mean(voiced.astype(np.float64) ** 2)) == pytest.approx(
        cfg.target_rms, rel=0.1
    )


def test_silence_is_trimmed():
    body = tone(300.0, 1.0)
    wave = np.concatenate([np.zeros(SR, np.float32), body, np.zeros(SR, np.float32)])
    trimmed = trim_silence(wave, top_db=30.0)
    assert abs(len(trimmed) - len(body)) <= 2 * 1024  # within the RMS frame size
    assert np.abs(trimmed).max() == pytest.approx(0.5, abs=1e-3)


def test_trim_frame_rms_matches_the_definition():
    from sound2sight.voice.audio import _frame_rms

    rng = np.random.default_rng(1)
    for n, frame, hop in [(45000, 1024, 256), (700, 1024, 256), (5000, 1000, 300)]:
        w = rng.normal(size=n).astype(np.float32)
        n_frames = max(1, 1 + (n - frame) // hop) if n >= frame else 1
        padded = np.pad(w.astype(np.float64), (0, max(0, (n_frames - 1) * hop + frame - n)))
        ref = [np.sqrt(np.mean(padded[i * hop : i * hop + frame] ** 2)) for i in range(n_frames)]
        np.testing.assert_allclose(_frame_rms(w, frame, hop), ref, rtol=1e-9)


def test_48k_stereo_wav_decodes_to_16k_mono(tmp_path):
    left, right = tone(440.0, 1.5, sr=48000), np.zeros(72000, np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 48000, subtype="FLOAT")
    wave = load_audio(path, sample_rate=SR)
    assert wave.ndim == 1 and wave.dtype == np.float32 and len(wave) == 24000
    assert np.abs(wave).max() == pytest.approx(0.25, abs=0.01)  # the downmix halves one channel
    np.testing.assert_array_equal(wave, decode_audio(path.read_bytes(), name="x", sample_rate=SR))


def test_silent_file_is_no_speech(tmp_path):
    path = write_wav(tmp_path / "silent.wav", np.zeros(SR, np.float32))
    with pytest.raises(AudioError, match="no speech detected"):
        preprocess_waveform(load_audio(path), AudioConfig(), name=str(path))


@pytest.mark.parametrize("content", [b"", b"this is not audio, just text\n" * 10])
def test_bad_files_raise_audio_error_naming_the_file(tmp_path, content):
    path = tmp_path / "clip.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match="clip.wav"):
        load_audio(path)
    with pytest.raises(AudioError, match="upload"):
        decode_audio(content, name="upload", sample_rate=SR)
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


def _clips(tmp_path, n=5):
    return [
        str(write_wav(tmp_path / f"c{i}.wav", tone(200.0 + 50 * i, 0.5 + 0.3 * i)))
        for i in range(n)
    ]


def test_cache_hit_then_miss_after_config_change(tmp_path):
    cfg, root = AudioConfig(), tmp_path / "cache"
    paths = _clips(tmp_path)
    first, cache = build_mel_cache(paths, cfg, root, workers=1, progress=False)
    assert (first.hits, first.misses, first.failures) == (0, 5, [])
    second, _ = build_mel_cache(paths, cfg, root, workers=1, progress=False)
    assert (second.hits, second.misses) == (5, 0)
    np.testing.assert_array_equal(second.load(cache), first.load(cache))
    changed = dataclasses.replace(cfg, n_mels=40)
    assert config_hash(changed) != config_hash(cfg)
    third, cache40 = build_mel_cache(paths, changed, root, workers=1, progress=False)
    assert (third.hits, third.misses) == (0, 5)
    assert third.load(cache40).shape == (5, 40, 301)


def test_parallel_build_reports_failures_and_matches_the_serve_path(tmp_path):
    cfg = AudioConfig()
    paths = _clips(tmp_path, n=6)
    bad = [
        str(write_wav(tmp_path / "silent.wav", np.zeros(SR, np.float32))),
        str(tmp_path / "missing.wav"),
        str(tmp_path),  # a directory
    ]
    (tmp_path / "text.wav").write_text("not audio")
    bad.append(str(tmp_path / "text.wav"))
    dup = str(tmp_path / "copy_of_c0.wav")
    (tmp_path / "copy_of_c0.wav").write_bytes((tmp_path / "c0.wav").read_bytes())
    batch, cache = build_mel_cache(
        paths + bad + [dup], cfg, tmp_path / "cache", workers=2, chunk=2, progress=False
    )
    assert sorted(p for p, _ in batch.failures) == sorted(bad)
    reasons = dict(batch.failures)
    assert "no speech detected" in reasons[bad[0]] and "cannot read" in reasons[bad[1]]
    assert batch.misses == 7 and batch.keys[-1] == batch.keys[0]
    mels = batch.load(cache)  # (7, n_mels, frames)
    lm = LogMel(cfg)
    for i, p in enumerate(paths):
        with torch.inference_mode():
            serve = lm(torch.from_numpy(preprocess_waveform(load_audio(p), cfg))[None])[0]
        np.testing.assert_array_equal(mels[i], serve.numpy())


def test_damaged_cache_entry_is_a_miss(tmp_path):
    cfg, paths = AudioConfig(), _clips(tmp_path, n=2)
    batch, cache = build_mel_cache(paths, cfg, tmp_path / "cache", workers=1, progress=False)
    cache.path(batch.keys[0]).write_bytes(b"")  # e.g. truncated by a power cut
    assert batch.keys[0] not in cache and cache.get(batch.keys[0]) is None
    again, _ = build_mel_cache(paths, cfg, tmp_path / "cache", workers=1, progress=False)
    assert (again.hits, again.misses) == (1, 1)


def test_feature_cache_roundtrip(tmp_path):
    cache = FeatureCache(tmp_path, namespace="t")
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.put("abcd", arr)
    assert "abcd" in cache and "ef01" not in cache
    np.testing.assert_array_equal(np.load(cache.path("abcd")), arr)
    assert not list(cache.path("abcd").parent.glob("*.tmp"))
