"""End to end on a tiny trained run: the pipeline, export/bundle, the CLI verbs, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import EXAMPLE_VOICES
from sound2sight.cli import main
from sound2sight.labels import EMOTIONS
from sound2sight.pipeline import Sound2Sight, export_bundle
from sound2sight.synthetic import synth_voice
from sound2sight.voice.audio import AudioError


@pytest.fixture(scope="module")
def pipe(tiny_run):
    return Sound2Sight.from_run(tiny_run)


def test_run_directory_layout(tiny_run):
    for rel in [
        "config.yaml",
        "report.html",
        "data/audio_manifest.csv",
        "classifier/best.pt",
        "classifier/last.pt",
        "classifier/metrics.json",
        "align/best.pt",
        "align/gallery.npz",
        "gan/best.pt",
        "gan/last.pt",
        "gan/metrics.json",
    ]:
        assert (tiny_run / rel).is_file(), rel
    html = (tiny_run / "report.html").read_text()
    assert "Emotion classifier" in html and "data:image/png;base64" in html


def test_call_on_path_bytes_and_array_agree(pipe, tiny_run, tmp_path):
    wave = synth_voice("sad", speaker=2, seed=5)
    path = tmp_path / "v.wav"
    sf.write(path, wave, 16000)
    a = pipe(path, n_images=2, k=3, seed=1)
    b = pipe(path.read_bytes(), n_images=2, k=3, seed=1)
    c = pipe(wave, sample_rate=16000, n_images=2, k=3, seed=1)
    assert a.emotion in EMOTIONS and a.emotion == b.emotion == c.emotion
    assert sum(a.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert a.embedding.shape == (128,) and np.linalg.norm(a.embedding) == pytest.approx(1, abs=1e-5)
    assert len(a.images) == 2 and a.images[0].dtype == np.uint8 and a.images[0].shape[2] == 3
    assert len(a.neighbours) == 3
    scores = [n.score for n in a.neighbours]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_array_equal(a.images[0], b.images[0])  # same seed, same painting


def test_seed_and_generator_control_the_noise(pipe):
    wave = synth_voice("angry", speaker=1, seed=3)
    r1 = pipe(wave, sample_rate=16000, n_images=1, k=0, seed=0)
    r2 = pipe(wave, sample_rate=16000, n_images=1, k=0, seed=1)
    r3 = pipe(wave, sample_rate=16000, n_images=1, k=0, generator=torch.Generator().manual_seed(0))
    assert not np.array_equal(r1.images[0], r2.images[0])
    np.testing.assert_array_equal(r1.images[0], r3.images[0])


def test_candidates_are_picked_in_latent_space_and_only_the_kept_are_decoded(pipe, monkeypatch):
    """4 paintings from 16 latent candidates: the generator's latent probe picks, the
    decoder renders only the 4 kept ones, each conditioned on a gallery painting's point."""
    import sound2sight.painting.taef2 as taef2
    from sound2sight.painting import model

    decoded, conditions, real_decode = [], [], taef2.decode_latents
    real_sample = model.sample_latents

    def count_decode(latents, **kw):
        decoded.append(len(latents))
        return real_decode(latents, **kw)

    def spy_sample(G, c, **kw):
        conditions.append(c.clone())
        return real_sample(G, c, **kw)

    monkeypatch.setattr(taef2, "decode_latents", count_decode)
    monkeypatch.setattr(model, "sample_latents", spy_sample)
    wave = synth_voice("sad", speaker=3, seed=4)
    r = pipe(wave, sample_rate=16000, n_images=4, k=0, seed=0)
    assert len(r.images) == 4 and r.images[0].shape == (128, 128, 3)
    assert decoded == [4]  # 4 x oversample 4 = 16 drawn, 4 decoded
    c = conditions[0]
    assert c.shape == (16, 128)
    gallery = pipe.condition_points
    assert all((gallery == row).all(1).any() for row in c)  # every condition is a painting's point


def test_candidates_are_judged_unless_there_is_nothing_to_pick(pipe, monkeypatch):
    """The image-emotion probe reads the kept paintings and finds image-space neighbours;
    with oversample=1 and no image neighbours its feature pass is skipped."""
    wave = synth_voice("happy", speaker=3, seed=2)
    assert pipe.judge is not None
    r = pipe(wave, sample_rate=16000, n_images=2, k=0, seed=0)
    assert len(r.painted_emotions) == 2 and set(r.painted_emotions) <= set(EMOTIONS)
    assert len(r.image_neighbours) == 2 and len(r.image_neighbours[0]) == 4

    def fail(images):
        raise AssertionError("image features computed with nothing to pick")

    monkeypatch.setattr(pipe.judge, "features", fail)
    monkeypatch.setattr(pipe.cfg.pipeline, "oversample", 1)
    monkeypatch.setattr(pipe.cfg.pipeline, "k_image_neighbours", 0)
    fast = pipe(wave, sample_rate=16000, n_images=2, k=0, seed=0)
    assert len(fast.images) == 2 and fast.painted_emotions == [] and fast.image_neighbours == []


def test_int8_voice_encoder_option(pipe, tiny_run):
    """``pipeline.int8_voice``: the Whisper encoder's linear layers run in dynamic int8;
    the answer stays a valid distribution close to the float32 one."""
    from sound2sight import bundle

    parts = bundle.load_parts(tiny_run)
    parts["cfg"].pipeline.int8_voice = True
    pipe8 = Sound2Sight(**parts)
    kinds = {type(m).__module__ for m in pipe8.voice.modules()}
    assert any("quantized" in k for k in kinds), kinds
    assert pipe8.voice.provenance[0]["sha256"].endswith("+dynamic-int8")
    a = pipe(EXAMPLE_VOICES[0], n_images=0, k=0).probabilities  # a real CREMA-D clip
    b = pipe8(EXAMPLE_VOICES[0], n_images=0, k=0).probabilities
    assert sum(b.values()) == pytest.approx(1.0, abs=1e-5)
    assert max(abs(a[e] - b[e]) for e in EMOTIONS) < 0.2


def test_long_recording_is_windowed(pipe):
    wave = np.concatenate([synth_voice("happy", speaker=1, seed=s, duration=2.5) for s in range(8)])
    result = pipe(wave, sample_rate=16000, n_images=0, k=1)
    assert result.n_windows > 2 and result.images == []


def test_silence_and_garbage_are_clear_errors(pipe):
    with pytest.raises(AudioError, match="no speech detected"):
        pipe(np.zeros(16000, np.float32), sample_rate=16000)
    with pytest.raises(AudioError, match="upload: cannot decode"):
        pipe(b"this is not audio at all")


def test_export_bundle_round_trip(pipe, tiny_run, tmp_path):
    out = export_bundle(tiny_run, tmp_path / "bundle")
    assert (out / "bundle.json").is_file() and (out / "generator.safetensors").is_file()
    assert not list(out.glob("*.pt"))  # no pickles in a bundle
    bundled = Sound2Sight.from_run(out)
    voice = EXAMPLE_VOICES[2]  # a real CREMA-D clip
    a = pipe(voice, n_images=1, k=2, seed=3)
    b = bundled(voice, n_images=1, k=2, seed=3)
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)
    np.testing.assert_array_equal(a.images[0], b.images[0])
    assert [n.label for n in a.neighbours] == [n.label for n in b.neighbours]


def test_cli_paint_writes_images_sheet_and_json(tiny_run, tmp_path, capsys):
    voice = tmp_path / "my voice.wav"
    sf.write(voice, synth_voice("happy", speaker=3, seed=2), 16000)
    assert (
        main(["paint", str(voice), "--run", str(tiny_run), "-n", "2", "-o", str(tmp_path / "o")])
        == 0
    )
    summary = json.loads((tmp_path / "o" / "my voice.json").read_text())
    assert summary["emotion"] in EMOTIONS and len(summary["images"]) == 2
    assert (tmp_path / "o" / "my voice_sheet.png").stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out


def test_cli_reports_bad_config_key(tiny_run, capsys):
    assert main(["train", "classifier", "--run", str(tiny_run), "--set", "train.nope=1"]) == 2
    assert "unknown config key train.nope" in capsys.readouterr().err


def test_cli_tune_runs_a_small_study(tiny_run, capsys):
    args = ["tune", "--run", str(tiny_run), "--trials", "2", "--set", "tune.epochs=1"]
    assert main(args) == 0
    best = json.loads((tiny_run / "tune" / "best.json").read_text())
    assert best["n_trials"] == 2 and best["n_complete"] + best["n_pruned"] == 2
    assert best["epochs_per_trial"] == 1 and best["test_fold_excluded"] == 0
    assert set(best["best_params"]) >= {"lr", "dropout", "layers", "encoder"}  # the head's space
    assert (tiny_run / "tune" / "study.db").is_file()


def test_train_all_skips_finished_stages(tiny_run):
    from sound2sight.config import load_config
    from sound2sight.workflow import STAGES, run_stage

    for name, (_, marker) in STAGES.items():
        assert (tiny_run / marker).is_file(), f"{name}: {marker} missing after train_all"
    before = (tiny_run / "classifier" / "best.pt").stat().st_mtime_ns
    assert run_stage("classifier", load_config(), tiny_run) is None  # done: skipped
    assert (tiny_run / "classifier" / "best.pt").stat().st_mtime_ns == before
