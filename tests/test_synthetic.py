"""Tests for the synthetic demo corpus: determinism, layout, and that the emotion cues are real."""

from __future__ import annotations

import colorsys

import librosa
import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sound2sight import synthetic
from sound2sight.synthetic import EMOTIONS, make_demo_corpus, synth_painting, synth_voice

SR = 16000
SMALL = {"n_speakers": 2, "clips_per_emotion": 2, "paintings_per_emotion": 3, "painting_size": 32}


def _voiced_frames(x: np.ndarray) -> np.ndarray:
    rms = librosa.feature.rms(y=x, frame_length=1024, hop_length=256)[0]
    return rms > 0.3 * rms.max()


def _median_f0(x: np.ndarray) -> float:
    f0 = librosa.yin(x, fmin=50, fmax=600, sr=SR, frame_length=1024, hop_length=256)
    return float(np.median(f0[_voiced_frames(x)]))


def _median_centroid(x: np.ndarray) -> float:
    centroid = librosa.feature.spectral_centroid(y=x, sr=SR, n_fft=1024, hop_length=256)[0]
    return float(np.median(centroid[_voiced_frames(x)]))


def _syllable_count(x: np.ndarray) -> int:
    """Rising edges of a short-frame energy gate: one per syllable."""
    rms = librosa.feature.rms(y=x, frame_length=256, hop_length=64)[0]
    return int(np.sum(np.diff((rms > 0.25 * rms.max()).astype(int)) == 1))


def _tree_bytes(root) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- voice --------------------------------------------------------------------------------------


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_voice_shape_dtype_range(emotion):
    x = synth_voice(emotion, speaker=4, seed=1)
    assert x.shape == (40000,) and x.dtype == np.float32
    assert np.isfinite(x).all() and np.abs(x).max() <= 1.0
    assert np.sqrt(np.mean(x**2)) > 1e-3  # not silent
    assert np.sqrt(np.mean(x[: int(0.04 * SR)] ** 2)) < 2e-3  # leading silence (>= 50 ms)
    assert synth_voice(emotion, speaker=4, seed=1, sr=8000, duration=1.0).shape == (8000,)


def test_voice_deterministic():
    a = synth_voice("happy", speaker=3, seed=7)
    np.testing.assert_array_equal(a, synth_voice("happy", speaker=3, seed=7))
    assert not np.array_equal(a, synth_voice("happy", speaker=3, seed=8))
    assert not np.array_equal(a, synth_voice("happy", speaker=4, seed=7))


def test_unknown_emotion_raises():
    with pytest.raises(ValueError, match="unknown emotion"):
        synth_voice("neutral", speaker=0, seed=0)
    with pytest.raises(ValueError, match="unknown emotion"):
        synth_painting("neutral", seed=0)


@pytest.mark.parametrize("speaker", [3, 11])  # base F0 about 113 Hz and 169 Hz
def test_pitch_level_follows_emotion(speaker):
    clips = {e: [synth_voice(e, speaker=speaker, seed=k) for k in range(6)] for e in EMOTIONS}
    f0 = {e: np.mean([_median_f0(x) for x in xs]) for e, xs in clips.items()}
    assert f0["sad"] < 0.85 * f0["happy"]
    assert f0["sad"] < 0.85 * f0["angry"]


def test_loudness_brightness_and_rate_follow_emotion():
    rms, centroid, rate = {}, {}, {}
    for e in EMOTIONS:
        clips = [synth_voice(e, speaker=s, seed=k) for s in (0, 2, 5) for k in range(4)]
        rms[e] = np.mean([np.sqrt(np.mean(x**2)) for x in clips])
        centroid[e] = np.mean([_median_centroid(x) for x in clips])
        rate[e] = np.mean([_syllable_count(x) for x in clips])
    assert rms["angry"] > 1.5 * rms["sad"]
    assert centroid["angry"] > centroid["sad"]
    assert rate["angry"] > 1.4 * rate["sad"] and rate["happy"] > 1.2 * rate["sad"]


def test_simple_classifier_beats_chance_across_speakers():
    def features(x: np.ndarray) -> np.ndarray:
        mel = librosa.feature.melspectrogram(y=x, sr=SR, n_fft=512, hop_length=256, n_mels=32)
        logmel = np.log(mel + 1e-8)  # (32, T)
        return np.concatenate([logmel.mean(axis=1), logmel.std(axis=1)])  # (64,)

    def dataset(speakers: range) -> tuple[np.ndarray, np.ndarray]:
        pairs = [
            (features(synth_voice(e, speaker=s, seed=100 * s + k)), i)
            for s in speakers
            for i, e in enumerate(EMOTIONS)
            for k in range(6)
        ]
        return np.stack([f for f, _ in pairs]), np.array([y for _, y in pairs])

    x_train, y_train = dataset(range(0, 6))
    x_test, y_test = dataset(range(6, 9))  # unseen speakers
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    accuracy = clf.fit(x_train, y_train).score(x_test, y_test)
    assert accuracy > 0.6  # chance is 1/3


# --- paintings ----------------------------------------------------------------------------------


def _hsv_stats(emotion: str) -> dict[str, float]:
    imgs = np.stack([synth_painting(emotion, seed=k) for k in range(12)]) / 255.0  # (N, H, W, 3)
    rgb = imgs.reshape(-1, 3)
    hsv = np.array([colorsys.rgb_to_hsv(*px) for px in rgb[::7]])
    luma = imgs @ np.array([0.299, 0.587, 0.114])  # (N, H, W)
    return {
        "saturation": hsv[:, 1].mean(),
        "value": hsv[:, 2].mean(),
        "redness": (rgb[:, 0] - rgb[:, 1:].mean(axis=1)).mean(),
        "contrast": luma.reshape(len(imgs), -1).std(axis=1).mean(),
    }


def test_painting_shape_dtype_and_determinism():
    for e in EMOTIONS:
        img = synth_painting(e, seed=3, size=48)
        assert img.shape == (48, 48, 3) and img.dtype == np.uint8
        np.testing.assert_array_equal(img, synth_painting(e, seed=3, size=48))
        assert not np.array_equal(img, synth_painting(e, seed=4, size=48))
        assert img.std() > 5  # not a flat colour


def test_painting_palette_follows_emotion():
    stats = {e: _hsv_stats(e) for e in EMOTIONS}
    assert stats["happy"]["value"] > stats["sad"]["value"] + 0.2
    assert stats["angry"]["redness"] > stats["sad"]["redness"] + 0.1
    assert stats["sad"]["saturation"] < min(
        stats["happy"]["saturation"], stats["angry"]["saturation"]
    )
    assert stats["angry"]["contrast"] > stats["sad"]["contrast"]


# --- corpus -------------------------------------------------------------------------------------


def test_corpus_layout_and_counts(tmp_path):
    counts = make_demo_corpus(tmp_path, **SMALL, seed=0)
    assert counts == {
        "audio": {e: 4 for e in EMOTIONS},
        "art": {e: 3 for e in EMOTIONS},
        "speakers": 2,
    }
    for e in EMOTIONS:
        wavs = sorted((tmp_path / "audio" / e).iterdir())
        pngs = sorted((tmp_path / "art" / e).iterdir())
        assert [p.name for p in wavs] == [
            f"spk{s:02d}_{e}_{k:03d}.wav" for s in range(2) for k in range(2)
        ]
        assert [p.name for p in pngs] == [f"art_{e}_{k:04d}.png" for k in range(3)]
        assert {p.name.split("_")[0] for p in wavs} == {"spk00", "spk01"}
        info = sf.info(wavs[0])
        assert (info.samplerate, info.subtype, info.channels, info.frames) == (
            SR,
            "PCM_16",
            1,
            40000,
        )
        assert np.asarray(Image.open(pngs[0])).shape == (32, 32, 3)
    assert "synthetic" in (tmp_path / "README.txt").read_text().lower()
    assert (tmp_path / ".complete").is_file()
    assert not list(tmp_path.rglob("*.tmp"))


def test_corpus_is_byte_deterministic(tmp_path):
    make_demo_corpus(tmp_path / "a", **SMALL, seed=5)
    make_demo_corpus(tmp_path / "b", **SMALL, seed=5)
    make_demo_corpus(tmp_path / "c", **SMALL, seed=6)
    a, b, c = (_tree_bytes(tmp_path / d) for d in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.endswith((".wav", ".png")))


def test_corpus_marker_skips_then_regenerates(tmp_path, monkeypatch):
    make_demo_corpus(tmp_path, **SMALL)
    before = _tree_bytes(tmp_path)

    def boom(*args, **kwargs):
        raise AssertionError("regenerated despite a matching marker")

    with monkeypatch.context() as m:
        m.setattr(synthetic, "synth_voice", boom)
        m.setattr(synthetic, "synth_painting", boom)
        assert make_demo_corpus(tmp_path, **SMALL)["speakers"] == 2
    assert _tree_bytes(tmp_path) == before

    fewer = {**SMALL, "clips_per_emotion": 1}
    counts = make_demo_corpus(tmp_path, **fewer)
    assert counts["audio"] == {e: 2 for e in EMOTIONS}
    assert len(list((tmp_path / "audio").rglob("*.wav"))) == 6  # stale clips removed
    assert '"clips_per_emotion": 1' in (tmp_path / ".complete").read_text()
