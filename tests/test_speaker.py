"""Per-speaker standardisation (opt-in, transductive): the numbers, training, the pipeline API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import EXAMPLE_VOICES
from sound2sight.config import Config
from sound2sight.datasets.base import AudioItem
from sound2sight.labels import EMOTIONS
from sound2sight.synthetic import synth_voice
from sound2sight.voice.audio import AudioError
from sound2sight.voice.speaker import (
    ShrinkPrior,
    SpeakerStats,
    calibrate,
    shrink_prior,
    speaker_stats,
    standardise,
    standardise_by_speaker,
)

L, C = 5, 384  # tiny.en: conv embedding + 4 blocks, width 384


def _clips(rng, n: int, frames: int = 6) -> np.ndarray:
    x = rng.normal(0, 1, (n, 2, frames, 4)).astype(np.float32)
    x[:, :, frames - 2 :] = 0  # two padding frames per clip
    return x


def test_each_speaker_is_standardised_by_its_own_frames():
    rng = np.random.default_rng(0)
    a = _clips(rng, 3)
    b = a * 3.0 + 5.0  # the same clips from a louder, shifted "speaker"
    b[:, :, -2:] = 0
    x = np.concatenate([a, b]).astype(np.float16)
    out = standardise_by_speaker(x, ["s:a"] * 3 + ["s:b"] * 3)
    assert out.dtype == np.float16 and out.shape == x.shape
    np.testing.assert_allclose(out[:3], out[3:], atol=2e-2)  # the speaker's offset and scale cancel
    assert (out[:, :, -2:] == 0).all()  # padding stays padding
    valid = out[:3, :, :-2].astype(np.float64)  # (3, 2, 4, 4) -> per layer and channel
    np.testing.assert_allclose(valid.mean(axis=(0, 2)), 0, atol=1e-2)
    np.testing.assert_allclose(valid.std(axis=(0, 2)), 1, atol=1e-2)


def test_statistics_errors_are_clear():
    with pytest.raises(ValueError, match="clips, layers, frames, channels"):
        speaker_stats(np.zeros((0, 2, 3, 4)))
    with pytest.raises(ValueError, match="two frames of speech"):
        speaker_stats(np.zeros((2, 2, 3, 4)))  # all padding
    with pytest.raises(ValueError, match="3 speaker names for 2 clips"):
        standardise_by_speaker(np.ones((2, 2, 3, 4)), ["a", "b", "c"])
    flat = np.ones((2, 1, 3, 2), np.float16)  # a channel that never moves: floored, finite
    stats = speaker_stats(flat)
    assert np.isfinite(standardise(flat, stats)).all()
    assert np.isfinite(standardise(flat * 300, stats)).all()  # it moves later: clipped, no inf


def _speaker_shifted_features(seed: int = 0):
    """Class k lifts channel block k; every speaker also lifts one block of their own, as
    strongly as an emotion does, so without removing the speaker it looks like a class."""
    rng = np.random.default_rng(seed)
    block = C // 3
    items, feats = [], []
    for spk in range(12):
        own = rng.integers(0, 3)
        split = "test" if spk < 3 else "val" if spk < 5 else "train"
        for i in range(12):
            k = i % 3
            x = rng.normal(0, 1, (L, 8, C)).astype(np.float32)
            x[:, :, k * block : (k + 1) * block] += 1.0
            x[:, :, own * block : (own + 1) * block] += 1.5
            feats.append(x)
            label = EMOTIONS[k]
            items.append(AudioItem(f"/x/{spk}_{i}.wav", label, label, f"c:{spk}", "c", split=split))
    return items, np.stack(feats).astype(np.float16)


def _small_head_config(epochs: int, **classifier) -> Config:
    """A whisper head small enough for :func:`_speaker_shifted_features` (patience = epochs)."""
    cfg = Config()
    for key, value in classifier.items():
        setattr(cfg.classifier, key, value)
    cfg.classifier.embed_dim, cfg.classifier.dropout = 16, 0.0
    cfg.train.epochs, cfg.train.batch_size, cfg.train.patience = epochs, 16, epochs
    return cfg


@pytest.mark.usefixtures("one_thread")
def test_training_with_speaker_norm_removes_a_speaker_shift(tmp_path):
    from sound2sight.voice.classifier import load_classifier
    from sound2sight.voice.train import train_classifier

    items, feats = _speaker_shifted_features()
    acc = {}
    for norm in (False, True):
        cfg = _small_head_config(15, speaker_norm=norm)
        run = tmp_path / f"norm{norm}"
        m = train_classifier(cfg, run, items=items, mels=feats, progress=False)
        acc[norm] = m["test"]["accuracy"]
        saved = json.loads((run / "classifier" / "metrics.json").read_text())
        assert saved["test"]["accuracy"] == acc[norm]
        model, _ = load_classifier(run / "classifier" / "best.pt")
        assert hasattr(model, "population_mean") == norm
    train = speaker_stats(feats[[it.split == "train" for it in items]])  # raw training frames
    np.testing.assert_allclose(model.population_mean.numpy(), train.mean, atol=1e-5)
    np.testing.assert_allclose(model.population_std.numpy(), train.std, atol=1e-5)
    assert acc[True] >= 0.9, acc
    assert acc[True] >= acc[False] + 0.15, acc


def test_pipeline_calibration_api(tiny_run, tmp_path, monkeypatch):
    import soundfile as sf

    from sound2sight.pipeline import Sound2Sight

    pipe = Sound2Sight.from_run(tiny_run)
    voice = synth_voice("angry", speaker=1, seed=3)
    with pytest.raises(ValueError, match="speaker_norm"):
        pipe.calibrate_to_speaker([voice], sample_rate=16000)  # trained without it
    monkeypatch.setattr(pipe.classifier.cfg, "speaker_norm", True)  # as if trained with it
    rng = np.random.default_rng(0)
    pop_mean = torch.from_numpy(rng.normal(0, 1, (L, C)).astype(np.float32))
    monkeypatch.setattr(pipe.classifier, "population_mean", pop_mean, raising=False)
    monkeypatch.setattr(pipe.classifier, "population_std", torch.ones(L, C) * 3, raising=False)
    own = pipe(voice, sample_rate=16000, n_images=0, k=0).probabilities  # training statistics
    assert pipe.classifier.shrink_prior() is None  # a head without a prior reads one recording
    pipe.speaker = pipe.classifier.population_stats()  # by the training frames' statistics,
    assert pipe(voice, sample_rate=16000, n_images=0, k=0).probabilities == pytest.approx(own)
    pipe.speaker = None  # not by the recording's own plain statistics
    plain = pipe(voice, sample_rate=16000, n_images=0, k=0, speaker_recordings=[])
    assert plain.probabilities != own and plain.calibrated_on == 1
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    clips = [synth_voice(e, speaker=1, seed=10 + i) for i, e in enumerate(EMOTIONS)]
    paths = []
    for i, c in enumerate(clips):
        sf.write(tmp_path / f"c{i}.wav", c, 16000)
        paths.append(tmp_path / f"c{i}.wav")
    stats = pipe.calibrate_to_speaker([*paths, silent])  # the silent one is skipped
    assert stats.n_clips >= len(clips) and stats.mean.shape == (L, C)
    calibrated = pipe(voice, sample_rate=16000, n_images=0, k=0).probabilities
    assert calibrated != own  # standardised by the speaker's statistics, not the training ones
    pipe.forget_speaker()
    # per call, as the web page does: earlier results' raw features plus this recording
    first = pipe(clips[0], sample_rate=16000, n_images=0, k=0)
    assert first.calibrated_on == 0 and first.voice_features.dtype == np.float16
    assert first.voice_features.ndim == 4 and first.voice_features.shape[1] == L
    second = pipe(clips[1], sample_rate=16000, n_images=0, k=0)
    earlier = [first.voice_features, second.voice_features]
    third = pipe(voice, sample_rate=16000, n_images=0, k=0, speaker_recordings=earlier)
    assert third.calibrated_on == 3 and third.probabilities != own
    assert pipe.speaker is None  # a per-call calibration is not kept
    raw = pipe(voice, sample_rate=16000, n_images=0, k=0).voice_features
    from sound2sight.voice.speaker import recording_stats

    compact = pipe(
        voice,
        sample_rate=16000,
        n_images=0,
        k=0,
        speaker_recordings=[recording_stats(f) for f in earlier],
    )  # what the page keeps
    assert compact.probabilities == pytest.approx(third.probabilities, abs=1e-5)
    pipe.speaker = pipe.speaker_from([*earlier, raw])  # the same statistics, kept this time
    kept = pipe(voice, sample_rate=16000, n_images=0, k=0).probabilities
    assert kept == pytest.approx(third.probabilities, abs=1e-6)
    pipe.forget_speaker()
    again = pipe(voice, sample_rate=16000, n_images=0, k=0).probabilities
    assert again == pytest.approx(own)
    with pytest.raises(AudioError, match="calibration: no usable recording"):
        pipe.calibrate_to_speaker([silent])


def test_shipped_speaker_model_keeps_its_training_statistics():
    """The shipped speaker-normalised head: CREMA-D only, population statistics that are
    real (not the zeros / ones it is built with), scored calibrated and uncalibrated."""
    from sound2sight.voice.model import HeadEnsemble
    from sound2sight.voice.pretrained import load_shipped

    head, cfg, card = load_shipped("voice-cremad-tiny-speaker")  # checks the SHA-256
    assert cfg.classifier.speaker_norm and card["data"]["corpus"] == "CREMA-D"
    pop = head.population_stats()
    mean, std = torch.from_numpy(pop.mean), torch.from_numpy(pop.std)
    assert mean.shape == std.shape == (L, C) and (std >= 1e-3).all()
    assert mean.abs().max() > 0.1 and not torch.allclose(std, torch.ones_like(std))
    assert {"RAVDESS (never seen)", "RAVDESS (never seen), uncalibrated"} <= set(card["metrics"])
    # five seeds on one split (classifier.ensemble): different heads, one set of statistics
    assert isinstance(head, HeadEnsemble) and len(head.members) == cfg.classifier.ensemble == 5
    first = head.members[0]
    for other in head.members[1:]:
        assert torch.equal(other.population_mean, first.population_mean)
        assert torch.equal(other.prior_lexical, first.prior_lexical)
        assert not torch.equal(other.head.out.weight, first.head.out.weight)


def test_calibrating_the_shipped_model_on_one_actors_clips(tiny_run, monkeypatch):
    """The pipeline with the shipped speaker model, calibrated on one actor's example clips."""
    from sound2sight.pipeline import Sound2Sight
    from sound2sight.voice.pretrained import load_shipped

    clips = [p for p in EXAMPLE_VOICES if p.name.startswith("1009_")]  # one actor, 3 emotions
    assert len(clips) == 3
    pipe = Sound2Sight.from_run(tiny_run)
    head, cfg, _ = load_shipped("voice-cremad-tiny-speaker")
    pipe.classifier, pipe.cfg.classifier = head, cfg.classifier
    before = pipe(clips[0], n_images=0, k=0).probabilities
    stats = pipe.calibrate_to_speaker(clips)
    assert stats.n_clips == 3 and np.isfinite(stats.std).all()
    after = pipe(clips[0], n_images=0, k=0).probabilities
    assert after != before and sum(after.values()) == pytest.approx(1.0, abs=1e-5)


def test_the_shipped_speaker_model_listens_through_its_view(tiny_run):
    """The shipped speaker head reads every recording through its card's listening view
    (``classifier.listen``): seeded by the clip, so a recording gets one answer; and it is
    what the head reads, not a no-op."""
    import copy

    from sound2sight.pipeline import Sound2Sight
    from sound2sight.voice.pretrained import load_shipped

    head, cfg, card = load_shipped("voice-cremad-tiny-speaker")
    assert cfg.classifier.listen in ("noise40", "floor25")
    assert f"--listen '{cfg.classifier.listen}'" in card["listening"]["command"]
    from sound2sight.voice.pretrained import provenance_line

    assert provenance_line(card).endswith(f"hears each recording through {cfg.classifier.listen}")
    pipe = Sound2Sight.from_run(tiny_run)
    pipe.classifier, pipe.cfg.classifier = head, cfg.classifier
    clip = next(p for p in EXAMPLE_VOICES if p.name == "1031_IEO_ANG_HI.mp3")  # floor -31 dB
    heard = pipe(clip, n_images=0, k=0)
    assert pipe(clip, n_images=0, k=0).probabilities == heard.probabilities
    as_recorded = copy.deepcopy(cfg.classifier)
    as_recorded.listen = ""
    pipe.cfg.classifier = as_recorded
    assert pipe(clip, n_images=0, k=0).probabilities != heard.probabilities


def test_a_run_installs_the_shipped_speaker_model(tmp_path):
    """``classifier.pretrained=voice-cremad-tiny-speaker``: the run's checkpoint carries the
    speaker setting and the training statistics, so the pipeline can use it uncalibrated."""
    from sound2sight.config import load_config
    from sound2sight.datasets.base import write_manifest
    from sound2sight.voice.classifier import load_classifier
    from sound2sight.voice.pretrained import install_pretrained, load_shipped

    code = {"ANG": "angry", "HAP": "happy", "SAD": "sad"}
    test = [  # the run's own test speaker: one actor's example clips, standardised together
        AudioItem(str(p), code[p.name.split("_")[2]], "", "CREMA-D:1009", "CREMA-D", split="test")
        for p in EXAMPLE_VOICES
        if p.name.startswith("1009_")
    ]
    write_manifest(test, tmp_path / "data" / "audio_manifest.csv")
    cfg = load_config(overrides=["classifier.pretrained=voice-cremad-tiny-speaker"])
    metrics = install_pretrained(cfg, tmp_path)
    assert metrics["test"]["n"] == 3 and 0 <= metrics["test"]["accuracy"] <= 1
    model, _ = load_classifier(tmp_path / "classifier" / "best.pt")
    shipped, _, _ = load_shipped("voice-cremad-tiny-speaker")
    assert model.cfg.speaker_norm
    np.testing.assert_array_equal(model.population_stats().mean, shipped.population_stats().mean)
    ours, theirs = model.shrink_prior(), shipped.shrink_prior()  # the calibration prior too
    np.testing.assert_array_equal(ours.lexical, theirs.lexical)


def _one_emotion_prior_data(seed: int = 0):
    """Six training speakers, 3 emotions x 6 clips: emotion k lifts channel k of layer 0 by
    2; each speaker has a small offset of their own.  Layer 1 only carries the words."""
    rng = np.random.default_rng(seed)
    x, y, spk = [], [], []
    for s in range(6):
        offset = rng.normal(0, 0.3, (2, 1, 4))
        for k in range(3):
            for _ in range(6):
                clip = rng.normal(0, 1, (2, 5, 4)) + offset
                clip[0, :, k] += 2.0
                x.append(clip)
                y.append(k)
                spk.append(f"s{s}")
    return np.asarray(x, np.float32), np.asarray(y), spk


def test_calibration_is_not_fooled_by_one_emotion_but_follows_a_new_microphone():
    x, y, spk = _one_emotion_prior_data()
    prior = shrink_prior(x, y, spk)
    assert prior.emotion.shape == prior.lexical.shape == (2, 4)
    assert prior.emotion[0, :3].min() > 5 * prior.emotion[1].max()  # emotions move layer 0 only
    population = speaker_stats(x)
    rng = np.random.default_rng(1)
    angry = rng.normal(0, 1, (3, 2, 5, 4)).astype(np.float32)
    angry[:, 0, :, 0] += 2.0  # three clips of one emotion from a speaker like the training ones
    recs = [clip[None] for clip in angry]
    plain = speaker_stats(angry)
    got = calibrate(recs, population, prior)
    assert got.n_clips == 3
    # the emotion's lift is not taken for the speaker's voice: layer 0 stays at the population's
    moved = abs(got.mean[0, 0] - population.mean[0, 0])
    assert moved < 0.25 * abs(plain.mean[0, 0] - population.mean[0, 0])
    # a new microphone: every channel of both layers shifted far beyond what emotions do
    shifted = [r + 6.0 for r in recs]
    far = calibrate(shifted, population, prior)
    np.testing.assert_allclose(far.mean, speaker_stats(angry + 6.0).mean, atol=0.5)
    # no prior (a head saved before it existed): the recordings' own statistics
    own = calibrate(recs, population, None)
    np.testing.assert_allclose(own.mean, plain.mean, atol=2e-3)  # the windows pass float16
    with pytest.raises(ValueError, match="at least one recording"):
        calibrate([], population, prior)
    with pytest.raises(ValueError, match="labels and"):
        shrink_prior(x, y[:-1], spk)


def test_a_speaker_head_saves_its_prior_and_an_older_one_loads_without(tmp_path):
    from sound2sight.config import ClassifierConfig
    from sound2sight.voice.classifier import build_classifier

    cfg = ClassifierConfig(arch="whisper", encoder="tiny.en", speaker_norm=True)
    head = build_classifier(cfg)
    assert head.shrink_prior() is None  # zeros until training fills it
    head.prior_emotion.fill_(0.5)
    head.prior_lexical.fill_(2.0)
    state = head.state_dict()
    again = build_classifier(cfg)
    again.load_state_dict(state)
    prior = again.shrink_prior()
    assert isinstance(prior, ShrinkPrior) and float(prior.lexical.mean()) == 2.0
    old = {k: v for k, v in state.items() if not k.startswith("prior_")}  # before issue 21
    older = build_classifier(cfg)
    older.load_state_dict(old)  # strict: the missing prior is filled with zeros
    assert older.shrink_prior() is None
    assert isinstance(older.population_stats(), SpeakerStats)


def test_shipped_speaker_model_carries_a_real_prior():
    from sound2sight.voice.pretrained import load_shipped

    head, _, _ = load_shipped("voice-cremad-tiny-speaker")
    prior = head.shrink_prior()
    assert prior is not None and prior.emotion.shape == (L, C)
    assert (prior.lexical > 0).all() and (prior.emotion > 0).all()
    # emotions move a CREMA-D actor's clips less than their words and phrasing do
    assert 0.02 < prior.emotion.sum() / prior.lexical.sum() < 1.0


def test_utterance_norm_centres_each_clip_and_a_bad_value_is_named():
    from sound2sight.config import ClassifierConfig, ConfigError, load_config
    from sound2sight.voice.classifier import build_classifier

    with pytest.raises(ConfigError, match="classifier.utterance_norm='median'"):
        load_config(overrides=["classifier.utterance_norm=median"])
    # two clips whose every frame is one and the same vector: all "colour", nothing moving
    flat = torch.randn(2, L, 1, C).expand(2, L, 7, C).contiguous()
    outs = {}
    for mode in ("", "mean", "meanstd"):
        torch.manual_seed(0)
        head = build_classifier(ClassifierConfig(arch="whisper", utterance_norm=mode)).eval()
        outs[mode] = head(flat).detach().numpy()
    assert not np.allclose(outs[""][0], outs[""][1], atol=1e-3)  # told apart by their colour
    for mode in ("mean", "meanstd"):  # centred on their own mean: nothing left to tell apart
        np.testing.assert_allclose(outs[mode][0], outs[mode][1], atol=1e-4)


def test_calibration_views_read_a_clip_as_a_calibration_could():
    from sound2sight.config import ConfigError, validate
    from sound2sight.voice.speaker import CalibrationViews

    rng = np.random.default_rng(0)
    x = np.concatenate([_clips(rng, 4), _clips(rng, 4) * 2.0 + 3.0]).astype(np.float16)
    x[:, :, -2:] = 0  # every clip's last two frames are padding
    who = ["s:a"] * 4 + ["s:b"] * 4
    pop = speaker_stats(x)

    def weight(stats, own):  # stats.mean = w * own.mean + (1 - w) * pop.mean, one w for all
        w = (stats.mean - pop.mean) / (own.mean - pop.mean)
        assert np.ptp(w) < 1e-3 and -1e-4 <= w.mean() <= 1 + 1e-4, w
        return float(w.mean())

    alone = CalibrationViews(x, who, pop, share=1.0, sizes=(1,))  # the clip by itself
    every = CalibrationViews(x, who, pop, share=1.0, sizes=(10,))  # more than b's 4 clips
    ws = [weight(alone.stats(5, np.random.default_rng(s)), speaker_stats(x[5:6])) for s in range(6)]
    ws += [weight(every.stats(6, np.random.default_rng(s)), speaker_stats(x[4:])) for s in range(6)]
    assert np.ptp(ws) > 0.3  # the weight varies from draw to draw
    z = alone.apply(torch.zeros(2, 2, 6, 4), np.array([0, 5]), rng)
    assert (z[:, :, -2:] == 0).all() and bool(z[:, :, :-2].abs().sum() > 0)  # padding stays
    kept = CalibrationViews(x, who, pop, share=0.0).apply(
        torch.ones(1, 2, 6, 4), np.array([0]), rng
    )
    assert (kept == 1).all()  # share 0: the batch as it was
    cfg = Config()
    cfg.classifier.calibration_augment = 0.5
    with pytest.raises(ConfigError, match="calibration_augment.*speaker_norm"):
        validate(cfg)


@pytest.mark.usefixtures("one_thread")
def test_training_with_calibration_views_still_removes_a_speaker_shift(tmp_path):
    from sound2sight.voice.train import train_classifier

    items, feats = _speaker_shifted_features()
    cfg = _small_head_config(15, speaker_norm=True, calibration_augment=0.5)
    m = train_classifier(cfg, tmp_path / "run", items=items, mels=feats, progress=False)
    assert m["test"]["accuracy"] >= 0.9, m["test"]
