"""Training views from altered waveforms (``classifier.wave_augment``): speed, noise and
random recording channels."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from sound2sight.config import Config, ConfigError, load_config, wave_views
from sound2sight.datasets.base import AudioItem
from sound2sight.labels import EMOTIONS
from sound2sight.synthetic import synth_voice
from sound2sight.voice import channel
from sound2sight.voice.audio import _rms
from sound2sight.voice.cache import alter_voice

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


def test_the_listening_view_is_a_training_view_and_off_by_default():
    """``classifier.listen``: what the pipeline reads is that view of the prepared clip (the
    same samples the benchmarks measured); a bad or training-only view is named at load."""
    from sound2sight.voice.cache import listen

    voice = synth_voice("sad", speaker=1, seed=2).astype(np.float32)
    cfg = Config()
    assert listen(voice, cfg) is voice
    cfg.classifier.listen = "noise40"
    heard = listen(voice, cfg)
    np.testing.assert_array_equal(heard, alter_voice(voice, "noise40", cfg))
    assert 20 * np.log10(_rms(voice) / _rms(heard - voice)) == pytest.approx(40, abs=0.3)
    for bad, why in (
        ("noise-3", "expected"),
        ("speed0.9", "one view"),
        ("noise30,floor25", "one view"),
    ):
        with pytest.raises(ConfigError, match=f"classifier.listen: .*{why}"):
            load_config(overrides=[f"classifier.listen={bad}"])


def test_the_floor_view_raises_a_clean_floor_and_leaves_a_noisy_one():
    """``floor<dB>``: white noise that lifts a clip's floor (the 2nd percentile of its 32 ms
    frame RMS) to ``dB`` under its RMS; a clip whose floor is already there is untouched."""
    from sound2sight.voice.cache import clip_floor_db

    rng = np.random.default_rng(0)
    voice = synth_voice("angry", speaker=2, seed=3).astype(np.float32)
    clean = np.r_[np.zeros(4000, np.float32), voice]  # a studio pause before the words
    assert clip_floor_db(clean) < -60
    raised = alter_voice(clean, "floor25", Config())
    assert clip_floor_db(raised) == pytest.approx(-25, abs=1.0)
    np.testing.assert_array_equal(raised, alter_voice(clean, "floor25", Config()))  # seeded
    noisy = (voice + _rms(voice) * 0.1 * rng.standard_normal(len(voice))).astype(np.float32)
    assert clip_floor_db(noisy) > -25
    np.testing.assert_array_equal(alter_voice(noisy, "floor25", Config()), noisy)


def test_bad_view_names_fail_at_load_naming_the_key():
    assert wave_views("") == []
    with pytest.raises(ConfigError, match="classifier.wave_augment: 'pitch2'"):
        load_config(overrides=["classifier.wave_augment=speed0.9,pitch2"])
    with pytest.raises(ConfigError, match=r"must be in \[0.5, 2\]"):
        load_config(overrides=["classifier.wave_augment=speed0.1"])
    with pytest.raises(ConfigError, match="calibration_augment"):
        load_config(
            overrides=[
                "classifier.wave_augment=noise20",
                "classifier.speaker_norm=true",
                "classifier.calibration_augment=0.5",
            ]
        )
    cfg = load_config(
        overrides=["classifier.wave_augment=speed0.9", "classifier.speaker_norm=true"]
    )
    assert cfg.classifier.speaker_norm and cfg.classifier.wave_augment == "speed0.9"


def test_views_are_standardised_by_their_own_speaker_statistics(monkeypatch):
    """With speaker_norm, a view's clips are read by the statistics of that
    speaker's clips *in that view*: each (speaker, view) comes out with mean 0 and std 1, the
    padding stays zero, and a clip whose view failed keeps its original row."""
    import torch

    from sound2sight.voice import cache as vcache

    rng = np.random.default_rng(0)
    items = [
        AudioItem(f"/x/{s}_{k}.wav", "angry", "angry", f"syn:{s}", "syn", split="train")
        for s in range(3)
        for k in range(4)
    ]
    speakers = [it.speaker for it in items]
    feats = rng.normal(size=(len(items), 2, 6, 5)).astype(np.float16)
    for i, it in enumerate(items):  # each speaker's view sits elsewhere, at its own scale
        s = int(it.speaker[-1])
        feats[i] = feats[i] * (1 + s) + 10 * s
    feats[1, :, 4:] = 0  # a shorter clip: padding
    ok = items[1:]  # the first clip's altered copy failed
    monkeypatch.setattr(vcache, "load_voice_features", lambda *a, **k: (ok, feats[1:]))
    x_tr = torch.full((len(items), 2, 6, 5), 7.0, dtype=torch.float16)
    cfg = load_config(
        overrides=["classifier.wave_augment=speed0.9", "classifier.speaker_norm=true"]
    )
    (view,) = vcache.training_views(items, x_tr, cfg, progress=False, speaker_norm=True)
    assert torch.equal(view[0], x_tr[0])  # failed copy: the original row
    assert not view[1, :, 4:].any()  # padding stays zero
    for s in range(3):
        rows = [i for i, sp in enumerate(speakers) if sp == f"syn:{s}" and i > 0]
        frames = view[rows].float().permute(0, 2, 1, 3).reshape(-1, 2, 5)
        frames = frames[frames[:, 0].abs().amax(1) > 0]  # valid frames only
        assert frames.mean(0).abs().max() < 0.01
        assert (frames.std(0, unbiased=False) - 1).abs().max() < 0.01
    raw = vcache.training_views(items, x_tr, cfg, progress=False)[0]  # off: as cached
    assert torch.equal(raw[1:], torch.from_numpy(feats[1:]))


@pytest.mark.usefixtures("one_thread")
def test_training_draws_batches_from_the_views(tmp_path):
    """The real tiny.en encodes each altered copy once (its own cache namespace); training
    with views differs from training without, and validation/test use the originals."""
    from sound2sight.cache import FeatureCache
    from sound2sight.train.common import cache_root
    from sound2sight.voice.cache import load_voice_features, voice_namespace
    from sound2sight.voice.model import VoiceEncoder
    from sound2sight.voice.train import train_classifier

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


# --- channel<N>: a random recording channel (sound2sight.voice.channel) ---------------------------


def _tone(hz: float, seconds: float = 2.0, amp: float = 0.1) -> np.ndarray:
    return amp * np.sin(2 * np.pi * hz * np.arange(int(SR * seconds)) / SR)


def _gain_db(out: np.ndarray, inp: np.ndarray) -> float:
    """Steady-state level change (the first 0.25 s, the filters' transient, left out)."""
    s = slice(SR // 4, None)
    return float(20 * np.log10(_rms(out[s]) / _rms(inp[s])))


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(power[(f >= lo) & (f < hi)].sum())


def test_channel_view_is_deterministic_per_clip_and_number():
    voice = synth_voice("angry", speaker=2, seed=4).astype(np.float32)
    one = alter_voice(voice, "channel1", Config())
    np.testing.assert_array_equal(one, alter_voice(voice, "channel1", Config()))  # cached views
    np.testing.assert_array_equal(one, channel.random_channel(voice, 1, SR))
    assert not np.array_equal(one, alter_voice(voice, "channel2", Config()))
    other = synth_voice("angry", speaker=3, seed=5).astype(np.float32)
    draws = {  # another clip draws another channel for the same N
        repr(channel.draw_channel(np.random.default_rng(channel.channel_seed(w, 1))))
        for w in (voice, other)
    }
    assert len(draws) == 2


@pytest.mark.parametrize("n", range(1, 13))
def test_channel_view_keeps_length_dtype_range_and_level(n):
    voice = synth_voice("happy", speaker=n % 4, seed=n).astype(np.float32)
    voice *= np.float32(0.1 / _rms(voice))  # as prepare_voice leaves it
    out = alter_voice(voice, f"channel{n}", Config())
    assert out.dtype == np.float32 and out.shape == voice.shape
    assert np.abs(out).max() <= 1.0 and np.isfinite(out).all()
    assert _rms(out) == pytest.approx(_rms(voice), rel=0.02)  # back at the input's RMS
    assert not np.allclose(out, voice, atol=1e-3)
    loud = np.clip(voice * 8, -1, 1)  # a clipped, hot input stays in range too
    assert np.abs(alter_voice(loud, f"channel{n}", Config())).max() <= 1.0


def test_channel_draws_follow_their_probabilities_and_ranges():
    chans = [channel.draw_channel(np.random.default_rng(s)) for s in range(2000)]
    share = {
        "tilt": np.mean([c.tilt_db_per_octave is not None for c in chans]),
        "telephone": np.mean([c.telephone for c in chans]),
        "reverb": np.mean([c.reverb is not None for c in chans]),
        "dc": np.mean([c.dc != 0 for c in chans]),
        "pink": np.mean([c.pink for c in chans]),
    }
    want = {"tilt": 0.5, "telephone": 0.4, "reverb": 0.5, "dc": 0.3, "pink": 0.5}
    for k, p in want.items():
        assert share[k] == pytest.approx(p, abs=0.05), k
    for c in chans:
        if c.tilt_db_per_octave is None:
            assert 2 <= len(c.peaks) <= 4
            assert all(150 <= f <= 6000 and -6 <= g <= 6 and 0.7 <= q <= 2 for f, g, q in c.peaks)
        else:
            assert -6 <= c.tilt_db_per_octave <= 6 and not c.peaks
        if not c.telephone:
            assert 50 <= c.high_pass_hz <= 150
            assert c.low_pass_hz is None or 3500 <= c.low_pass_hz < 0.95 * SR / 2
        if c.reverb is not None:
            assert 0.2 <= c.reverb[0] <= 0.8 and 0 <= c.reverb[1] <= 10
        assert 20 <= c.snr_db <= 40 and abs(c.dc) <= 0.05 and -10 <= c.gain_db <= 6
    assert any(c.low_pass_hz is None for c in chans if not c.telephone)  # full band too


def test_tilt_turns_the_spectrum_about_1khz():
    for hz, octaves in ((250, -2), (500, -1), (1000, 0), (2000, 1), (4000, 2), (6000, 2)):
        x = _tone(hz)  # flat beyond 2 octaves from 1 kHz
        assert _gain_db(channel.tilt(x, 6.0, SR), x) == pytest.approx(6 * octaves, abs=0.2)
        assert _gain_db(channel.tilt(x, -3.0, SR), x) == pytest.approx(-3 * octaves, abs=0.2)
    noise = np.random.default_rng(0).standard_normal(SR * 2)

    def high_over_low(x):
        return _band_energy(x, 2000, 8000) / _band_energy(x, 100, 500)

    assert high_over_low(channel.tilt(noise, 4.0, SR)) > 10 * high_over_low(noise)
    assert high_over_low(channel.tilt(noise, -4.0, SR)) < 0.1 * high_over_low(noise)


def test_peaking_eq_boosts_and_cuts_its_bands_only():
    x = _tone(1000)
    assert _gain_db(channel.peaking_eq(x, [(1000, 6.0, 1.0)], SR), x) == pytest.approx(6, abs=0.1)
    assert _gain_db(channel.peaking_eq(x, [(1000, -4.0, 1.5)], SR), x) == pytest.approx(-4, abs=0.1)
    for far in (100, 7000):
        y = _tone(far)
        assert abs(_gain_db(channel.peaking_eq(y, [(1000, 6.0, 1.0)], SR), y)) < 0.5


def test_band_limit_removes_out_of_band_energy():
    lo, hi = channel.TELEPHONE
    for hz in (100, 150, 5000, 7000):  # outside 300-3,400 Hz: > 20 dB down
        x = _tone(hz)
        assert _gain_db(channel.band_limit(x, lo, hi, SR), x) < -20, hz
    for hz in (500, 1000, 2500):
        x = _tone(hz)
        assert abs(_gain_db(channel.band_limit(x, lo, hi, SR), x)) < 1, hz
    noise = np.random.default_rng(1).standard_normal(SR * 2)
    out = channel.band_limit(noise, lo, hi, SR)
    assert _band_energy(out, 0, 150) < 0.01 * _band_energy(noise, 0, 150)
    assert _band_energy(out, 5000, 8000) < 0.01 * _band_energy(noise, 5000, 8000)
    for hz, want in ((30, "cut"), (1000, "pass"), (7000, "cut")):  # high-pass 100, low-pass 4k
        x = _tone(hz)
        g = _gain_db(channel.band_limit(x, 100, 4000, SR), x)
        assert g < -20 if want == "cut" else abs(g) < 1, hz
    x = _tone(7000)
    assert abs(_gain_db(channel.band_limit(x, 100, None, SR), x)) < 0.1  # no low-pass


def _rt60(response: np.ndarray) -> float:
    """Schroeder backward integration: the -5 to -25 dB decay, extrapolated to 60 dB."""
    edc = np.cumsum(response[::-1] ** 2)[::-1]
    db = 10 * np.log10(edc / edc[0] + 1e-30)
    t5, t25 = np.argmax(db <= -5), np.argmax(db <= -25)
    return float(3 * (t25 - t5) / SR)


def test_reverb_lengthens_the_decay_of_a_click():
    click = np.zeros(SR * 2)
    click[100] = 1.0
    wet = channel.reverberate(click, 0.5, 5.0, np.random.default_rng(0), SR)
    assert wet.shape == click.shape
    assert _rt60(wet[100:]) == pytest.approx(0.5, rel=0.15)
    late = slice(100 + SR // 20, None)  # 50 ms after the click
    assert _rms(click[late]) == 0 and _rms(wet[late]) > 0
    drr = 10 * np.log10(wet[100] ** 2 / np.sum(wet[101:] ** 2))
    assert drr == pytest.approx(5.0, abs=0.01)
    longer = channel.reverberate(click, 0.8, 5.0, np.random.default_rng(0), SR)
    assert _rt60(longer[100:]) > _rt60(wet[100:])
    voice = synth_voice("sad", speaker=1, seed=2)
    assert channel.reverberate(voice, 0.8, 0.0, np.random.default_rng(0), SR).shape == voice.shape


def test_noise_has_the_asked_snr_and_colour():
    voice = synth_voice("happy", speaker=0, seed=1).astype(np.float64)
    for pink in (False, True):
        noisy = channel.add_noise(voice, 30.0, np.random.default_rng(3), pink=pink)
        snr = 20 * np.log10(_rms(voice) / _rms(noisy - voice))
        assert snr == pytest.approx(30, abs=1)
    silent = np.zeros(SR * 4)
    white = channel.add_noise(silent + 0.1, 0.0, np.random.default_rng(4)) - 0.1
    pink = channel.add_noise(silent + 0.1, 0.0, np.random.default_rng(4), pink=True) - 0.1

    def low_over_high(x):  # three octaves each
        return 10 * np.log10(_band_energy(x, 125, 1000) / _band_energy(x, 1000, 8000))

    assert low_over_high(white) == pytest.approx(10 * np.log10(875 / 7000), abs=0.5)
    assert low_over_high(pink) == pytest.approx(0, abs=1)  # equal energy per octave


def test_dc_offset_and_level_change():
    x = _tone(440)
    assert np.mean(channel.dc_offset(x, 0.03)) == pytest.approx(np.mean(x) + 0.03, abs=1e-9)
    quiet = channel.level_and_clip(x, -10.0)
    assert _rms(quiet) == pytest.approx(_rms(x) * 10 ** (-0.5), rel=1e-9)
    hot = channel.level_and_clip(_tone(440, amp=0.8), 6.0)  # peaks at 1.6: clipped
    assert hot.max() == 1.0 and hot.min() == -1.0


def test_channel_config_entries():
    assert wave_views("channel1, channel2,channel99") == [
        ("channel", 1.0),
        ("channel", 2.0),
        ("channel", 99.0),
    ]
    assert wave_views("speed0.9,channel3,noise20")[1] == ("channel", 3.0)
    cfg = load_config(overrides=["classifier.wave_augment=channel1,channel2,channel3"])
    assert cfg.classifier.wave_augment == "channel1,channel2,channel3"
    for bad in ("channel0", "channel100", "channel1.5"):
        with pytest.raises(ConfigError, match=rf"classifier.wave_augment: '{bad}': .*1\.\.99"):
            load_config(overrides=[f"classifier.wave_augment={bad}"])
    with pytest.raises(ConfigError, match="classifier.wave_augment: 'channel'.*channel<N>"):
        wave_views("channel")
    cfg = load_config(
        overrides=["classifier.wave_augment=channel1", "classifier.speaker_norm=true"]
    )
    assert cfg.classifier.speaker_norm  # views and speaker statistics combine (per view)


@pytest.mark.realdata
def test_the_shipped_listening_floor_is_its_training_actors_10th_percentile(shared_data):
    """``floor25`` in the shipped speaker head's card: about one in ten of its CREMA-D training
    actors' prepared clips has a floor under 25 dB below the voice (benchmarks/voice_floors.py),
    and a studio corpus has far more."""
    from sound2sight.datasets import load_audio_corpus
    from sound2sight.voice.audio import load_audio
    from sound2sight.voice.cache import clip_floor_db, prepare_voice
    from sound2sight.voice.pretrained import load_shipped

    _, cfg, card = load_shipped("voice-cremad-tiny-speaker")
    assert cfg.classifier.listen == "floor25"
    train = set(card["data"]["speakers"]["train"])
    items = load_audio_corpus(shared_data / "audio").items
    rng = np.random.default_rng(0)

    def floors(its):
        picked = [its[i] for i in rng.permutation(len(its))[:150]]
        return np.array(
            [
                clip_floor_db(prepare_voice(load_audio(it.path, sample_rate=SR), cfg))
                for it in picked
            ]
        )

    crema = floors([it for it in items if it.speaker in train and it.label])
    assert 0.05 <= np.mean(crema < -25) <= 0.17
    assert np.percentile(crema, 10) == pytest.approx(-25.3, abs=1.5)
    savee = floors([it for it in items if it.corpus == "SAVEE"])
    assert np.mean(savee < -25) > 0.8
