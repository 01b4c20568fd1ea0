"""Training views from altered waveforms (``classifier.wave_augment``): speed and noise."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from sound2sight.audio import _rms
from sound2sight.config import Config, ConfigError, load_config, wave_views
from sound2sight.datasets.base import AudioItem
from sound2sight.labels import EMOTIONS
from sound2sight.synthetic import synth_voice
from sound2sight.voice_cache import alter_voice

SR = 16000


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[spec.argmax()])


def test_speed_view_changes_tempo_and_pitch_together():
    t = np.arange(SR * 2) / SR
    tone = (0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    slow = alter_voice(tone, "speed0.8", Config())
    fast = alter_voice(tone, "speed1.25", Config())
    assert len(slow) == pytest.approx(len(tone) / 0.8, abs=2)
    assert len(fast) == pytest.approx(len(tone) / 1.25, abs=2)
    assert _peak_hz(slow) == pytest.approx(160, abs=2)  # 200 Hz played 0.8x as fast
    assert _peak_hz(fast) == pytest.approx(250, abs=2)
    cfg = Config()
    cfg.classifier.max_seconds = 2.0
    assert len(alter_voice(tone, "speed0.5", cfg)) == 2 * SR  # centre-cropped like the original


def test_noise_view_has_the_asked_snr_and_reproduces():
    voice = synth_voice("happy", speaker=0, seed=1).astype(np.float32)
    noisy = alter_voice(voice, "noise10", Config())
    snr = 20 * np.log10(_rms(voice) / _rms(noisy - voice))
    assert snr == pytest.approx(10, abs=0.3)
    np.testing.assert_array_equal(noisy, alter_voice(voice, "noise10", Config()))  # cached views


def test_bad_view_names_fail_at_load_naming_the_key():
    assert wave_views("") == []
    with pytest.raises(ConfigError, match="classifier.wave_augment: 'pitch2'"):
        load_config(overrides=["classifier.wave_augment=speed0.9,pitch2"])
    with pytest.raises(ConfigError, match=r"must be in \[0.5, 2\]"):
        load_config(overrides=["classifier.wave_augment=speed0.1"])
    with pytest.raises(ConfigError, match="speaker_norm"):
        load_config(overrides=["classifier.wave_augment=noise20", "classifier.speaker_norm=true"])


@pytest.mark.usefixtures("one_thread")
def test_training_draws_batches_from_the_views(tmp_path):
    """The real tiny.en encodes each altered copy once (its own cache namespace); training
    with views differs from training without, and validation/test use the originals."""
    from sound2sight.cache import FeatureCache
    from sound2sight.models.voice import VoiceEncoder
    from sound2sight.train.common import cache_root
    from sound2sight.train.emotion import train_classifier
    from sound2sight.voice_cache import load_voice_features, voice_namespace

    items = []
    for spk in range(6):
        split = "test" if spk == 0 else "val" if spk == 1 else "train"
        for k, emo in enumerate(EMOTIONS):
            path = tmp_path / f"s{spk}_{emo}.wav"
            sf.write(path, synth_voice(emo, speaker=spk, seed=spk * 3 + k), SR)
            items.append(AudioItem(str(path), emo, emo, f"syn:{spk}", "syn", split=split))
    probs = {}
    for views in ("", "speed0.9,noise15"):
        cfg = load_config(overrides=[f"classifier.wave_augment={views}", "train.epochs=3"])
        cfg.classifier.embed_dim, cfg.train.batch_size = 16, 4
        ok, feats = load_voice_features(items, cfg, progress=False)
        m = train_classifier(cfg, tmp_path / f"run{bool(views)}", items=ok, mels=feats)
        probs[views] = m["val"]["val_loss"]
    assert probs[""] != probs["speed0.9,noise15"]
    enc = VoiceEncoder.load("tiny.en", feature_pool=cfg.classifier.feature_pool)
    n_train = sum(it.split == "train" for it in items)
    for view in ("speed0.9", "noise15"):
        cache = FeatureCache(cache_root(cfg), namespace=voice_namespace(cfg, enc.provenance, view))
        assert len(list(cache.root.glob("*/*"))) == n_train  # only the training clips' copies
    _, orig = load_voice_features(items[:1], cfg, progress=False)
    _, slow = load_voice_features(items[:1], cfg, progress=False, view="speed0.9")
    assert slow.shape[2] > orig.shape[2]  # the slower copy has more frames
