"""Bad-input zoo, audio: every hostile file gives a clear error or a documented handling.

Each case is generated here (no fixtures on disk).  A case either decodes to 16 kHz mono
(and its 440 Hz tone is still at 440 Hz), or raises :class:`AudioError` whose message
names the file and the problem.  The batch path (:func:`build_mel_cache`) skips and
reports every bad file, caches the good ones and leaves no temporary file behind.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sound2sight.cache import build_mel_cache
from sound2sight.config import AudioConfig
from sound2sight.voice.audio import AudioError, decode_audio, load_audio, preprocess_waveform

SR = 16000
CFG = AudioConfig(duration=1.0)
FREQ = 440.0  # every "good" case holds this tone


def tone(seconds: float = 1.0, *, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * FREQ * t)).astype(np.float32)


def dominant_hz(wave: np.ndarray, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[spec.argmax()])


# ---- makers: (folder) -> path ------------------------------------------------------------


def _write(name: str, data, sr: int = SR, **kw) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        path = d / name
        sf.write(path, data() if callable(data) else data, sr, **kw)
        return path

    return make


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name

    return make


def _with_nan(value: float) -> np.ndarray:
    w = tone()
    w[SR // 2] = value
    return w


def _truncated(name: str, fmt: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        full = d / f"full_{name}"
        sf.write(full, tone(2.0), SR, format=fmt)
        data = full.read_bytes()
        full.unlink()
        (d / name).write_bytes(data[: len(data) // 2])  # cut in half
        return d / name

    return make


def _thirty_minutes(d: Path) -> Path:
    """A 30-minute WAV written cheaply: 8 kHz, 8 bit (14 MB), in one-minute chunks."""
    path = d / "thirty_minutes.wav"
    minute = np.zeros(8000 * 60, np.float32)
    with sf.SoundFile(path, "w", samplerate=8000, channels=1, subtype="PCM_U8") as fh:
        for _ in range(30):
            fh.write(minute)
    return path


def _directory(d: Path) -> Path:
    (d / "folder.wav").mkdir()
    return d / "folder.wav"


def _unreadable(d: Path) -> Path:
    path = _write("unreadable.wav", tone())(d)
    path.chmod(0)
    return path


def _non_utf8_name(d: Path) -> Path:
    path = Path(os.fsdecode(os.fsencode(d) + b"/caf\xe9 \xff voice.wav"))  # latin-1 bytes
    with open(path, "wb") as fh:  # soundfile cannot write such a name; Python can
        sf.write(fh, tone(), SR, format="WAV")
    return path


ROOT_SKIP = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads chmod-000 files anyway"
)

# name -> (maker, expected): "ok" (decodes; seconds of audio expected), or a regex the
# AudioError message must match (it must also contain the file's path)
OK_CASES: dict[str, tuple[Callable[[Path], Path], float]] = {
    "pcm16": (_write("pcm16.wav", tone()), 1.0),
    "clipped": (_write("clipped.wav", lambda: np.clip(tone(amp=3.0), -1, 1)), 1.0),
    "pcm_u8": (_write("u8.wav", tone(), subtype="PCM_U8"), 1.0),
    "pcm24": (_write("pcm24.wav", tone(), subtype="PCM_24"), 1.0),
    "float32": (_write("float32.wav", tone(), subtype="FLOAT"), 1.0),
    "float64": (_write("float64.wav", tone(), subtype="DOUBLE"), 1.0),
    "float_over_full_scale": (_write("hot.wav", tone(amp=4.0), subtype="FLOAT"), 1.0),
    "8k": (_write("8k.wav", tone(sr=8000), sr=8000), 1.0),
    "96k": (_write("96k.wav", tone(sr=96000), sr=96000), 1.0),
    "22050": (_write("22050.wav", tone(sr=22050), sr=22050), 1.0),
    "six_channels": (_write("six.wav", np.pad(tone()[:, None], ((0, 0), (0, 5)))), 1.0),
    "flac": (_write("ok.flac", tone(), format="FLAC"), 1.0),
    "ogg_vorbis": (_write("ok.ogg", tone(), format="OGG", subtype="VORBIS"), 1.0),
    "ten_ms": (_write("short.wav", tone(0.01)), 0.01),
    "spaces_and_unicode_name": (_write("ünï cødé voice 1.wav", tone()), 1.0),
    "non_utf8_name": (_non_utf8_name, 1.0),
}
BAD_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty_file": (_bytes("empty.wav", b""), r"empty file \(0 bytes\)"),
    "zero_length_wav": (_write("zero.wav", np.zeros(0, np.float32)), "zero-length audio"),
    "silence": (_write("silence.wav", np.zeros(SR, np.float32)), "no speech detected"),
    "near_silence": (
        _write("hiss.wav", np.random.default_rng(0).normal(0, 1e-6, SR), subtype="FLOAT"),
        "no speech detected",
    ),
    "nan_samples": (_write("nan.wav", _with_nan(np.nan), subtype="FLOAT"), "NaN or infinite"),
    "inf_samples": (_write("inf.wav", _with_nan(np.inf), subtype="FLOAT"), "NaN or infinite"),
    "thirty_minutes": (_thirty_minutes, r"1800 s long, over the 600 s limit"),
    "text_named_wav": (_bytes("notes.wav", b"hello, not audio\n" * 40), "cannot decode audio"),
    "random_bytes_flac": (
        _bytes("noise.flac", np.random.default_rng(1).bytes(4096)),
        "cannot decode audio",
    ),
    "truncated_flac": (_truncated("cut.flac", "FLAC"), "cannot decode audio"),
    "directory": (_directory, "is a directory"),
    "missing": (lambda d: d / "missing.wav", "cannot read"),
    "unreadable": (_unreadable, "cannot read"),
}
BAD_PARAMS = [
    pytest.param(name, marks=ROOT_SKIP) if name == "unreadable" else name for name in BAD_CASES
]


def _load_and_preprocess(path: Path) -> np.ndarray:
    return preprocess_waveform(load_audio(path, sample_rate=SR), CFG, name=str(path))


@pytest.mark.parametrize("name", list(OK_CASES))
def test_good_audio_decodes_to_16k_mono(tmp_path, name):
    make, seconds = OK_CASES[name]
    path = make(tmp_path)
    wave = load_audio(path, sample_rate=SR)
    assert wave.dtype == np.float32 and wave.ndim == 1, f"{name}: {wave.dtype} {wave.shape}"
    assert abs(len(wave) - seconds * SR) <= 0.01 * SR + 2, f"{name}: {len(wave)} samples"
    assert np.isfinite(wave).all()
    if seconds >= 0.5:  # long enough to measure: the tone survived decoding and resampling
        assert dominant_hz(wave) == pytest.approx(FREQ, abs=2), name
    out = preprocess_waveform(wave, CFG, name=str(path))
    assert out.shape == (SR,) and np.isfinite(out).all() and np.abs(out).max() <= 1.0
    voiced = out[np.abs(out) > 0]
    assert np.sqrt(np.mean(voiced.astype(np.float64) ** 2)) == pytest.approx(0.1, rel=0.2)
    if name == "six_channels":  # downmix: tone on channel 0, silence on the other five
        np.testing.assert_allclose(wave, tone() / 6, atol=1e-4)
    if name != "non_utf8_name":  # the upload path (bytes) gives the same samples
        data = path.read_bytes()
        np.testing.assert_array_equal(decode_audio(data, name="upload", sample_rate=SR), wave)


@pytest.mark.parametrize("name", BAD_PARAMS)
def test_bad_audio_raises_a_clear_error_naming_the_file(tmp_path, name):
    make, problem = BAD_CASES[name]
    path = make(tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(AudioError, match=problem) as err:
        _load_and_preprocess(path)
    assert str(err.value).startswith(f"{path}: "), f"{name}: message does not name the file"
    assert time.perf_counter() - t0 < 2.0, f"{name}: took {time.perf_counter() - t0:.1f} s"
    if path.is_file() and os.access(path, os.R_OK):  # uploads: same problem, named "upload"
        with pytest.raises(AudioError, match=problem) as err:
            data = path.read_bytes()
            wave = decode_audio(data, name="upload", sample_rate=SR)
            preprocess_waveform(wave, CFG, name="upload")
        assert "upload" in str(err.value) and "0x" not in str(err.value)  # no object reprs


def test_thirty_minute_file_is_refused_before_decoding(tmp_path):
    path = _thirty_minutes(tmp_path)
    assert path.stat().st_size > 14_000_000
    t0 = time.perf_counter()
    with pytest.raises(AudioError, match=f"{path}: 1800 s long, over the 600 s limit"):
        load_audio(path)
    # decoding 14.4 M samples and resampling them to 16 kHz takes far longer than this
    assert time.perf_counter() - t0 < 0.2
    assert load_audio(path, sample_rate=8000, max_seconds=3600).shape == (8000 * 1800,)


@pytest.mark.parametrize(("name", "fmt"), [("cut.mp3", "MP3"), ("cut.wav", "WAV")])
def test_truncated_stream_decodes_what_it_holds(tmp_path, caplog, name, fmt):
    """Documented: a cut-off file decodes to the samples it still holds (warned when known)."""
    path = _truncated(name, fmt)(tmp_path)
    with caplog.at_level(logging.WARNING, logger="sound2sight.voice.audio"):
        wave = load_audio(path, sample_rate=SR)
    assert 0.3 * SR < len(wave) < 1.5 * SR, f"{name}: {len(wave)} samples of a 2 s file cut in half"
    assert np.isfinite(wave).all() and dominant_hz(wave) == pytest.approx(FREQ, abs=3)
    if fmt == "MP3":  # its header announces the full length: the shortfall is logged
        assert f"{path}: truncated" in caplog.text
    assert _load_and_preprocess(path).shape == (SR,)


def test_mel_cache_skips_and_reports_every_bad_file(tmp_path):
    good_dir, bad_dir = tmp_path / "good", tmp_path / "bad"
    good_dir.mkdir()
    bad_dir.mkdir()
    good = [str(make(good_dir)) for make, _ in OK_CASES.values()]
    skip_unreadable = os.geteuid() == 0
    bad = {
        str(make(bad_dir)): problem
        for name, (make, problem) in BAD_CASES.items()
        if not (name == "unreadable" and skip_unreadable)
    }
    paths = good + list(bad)
    random.Random(0).shuffle(paths)  # good and bad interleaved
    cfg = AudioConfig(duration=1.0, n_mels=32)
    cache_dir = tmp_path / "cache"
    batch, cache = build_mel_cache(paths, cfg, cache_dir, workers=1, chunk=8, progress=False)

    reasons = dict(batch.failures)
    assert sorted(reasons) == sorted(bad), "every bad file, and only those, is reported"
    for path, problem in bad.items():
        assert path in reasons[path], f"reason does not name the file: {reasons[path]}"
        assert re.search(problem, reasons[path]), (path, reasons[path])
    ok_keys = [k for p, k in zip(paths, batch.keys, strict=True) if p in good]
    assert all(k is not None for k in ok_keys)
    assert all(k is None for p, k in zip(paths, batch.keys, strict=True) if p in bad)
    mels = batch.load(cache)  # (n_good, n_mels, frames)
    assert mels.shape == (len(good), 32, 101) and np.isfinite(mels).all()
    leftovers = [p for p in cache_dir.rglob("*") if p.is_file() and not p.name.endswith(".npy")]
    assert leftovers == [], f"temporary files left in the cache: {leftovers}"
    entries = list(cache_dir.rglob("*.npy"))
    assert len(entries) == len(set(ok_keys))
    for entry in entries:  # every entry is complete and loads on its own
        assert np.load(entry, allow_pickle=False).shape == (32, 101)
    again, _ = build_mel_cache(paths, cfg, cache_dir, workers=1, chunk=8, progress=False)
    assert (again.hits, again.misses, len(again.failures)) == (len(good), 0, len(bad))


# ---- issue 12's zoo through the whole pipeline: a clear refusal, never "angry 1.00"
def _speech(seconds: float | None = None) -> np.ndarray:
    from conftest import EXAMPLE_VOICES
    from sound2sight.voice.audio import load_audio
    from sound2sight.voice.vad import speech_segments

    wave = load_audio(EXAMPLE_VOICES[1])
    start, stop = speech_segments(wave)[0]
    mid = (start + stop) // 2
    return wave if seconds is None else wave[mid - int(seconds * SR) // 2 :][: int(seconds * SR)]


def _in_silence(piece: np.ndarray, total: float) -> np.ndarray:
    out = np.zeros(int(total * SR), np.float32)
    out[len(out) // 2 : len(out) // 2 + len(piece)] = piece
    return out


def _music(seconds: float = 4.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    chord = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))  # C major, held
    return (0.1 * chord).astype(np.float32)


ZOO = {
    "0.1 s of speech": lambda: _speech(0.1),
    "2 s 440 Hz tone": lambda: tone(2.0),
    "3 s white noise": lambda: (0.1 * np.random.default_rng(0).standard_normal(3 * SR)).astype(
        np.float32
    ),
    "10 s silence with 0.3 s of speech": lambda: _in_silence(_speech(0.3), 10.0),
    "music (a held chord)": _music,
}


@pytest.fixture(scope="module")
def tiny_pipe(tiny_run):
    from sound2sight.pipeline import Sound2Sight

    return Sound2Sight.from_run(tiny_run)


@pytest.mark.parametrize("case", list(ZOO))
def test_pipeline_refuses_what_is_not_speech(tiny_pipe, case):
    from sound2sight.voice.audio import AudioError

    with pytest.raises(AudioError, match=r"^upload: no speech detected"):
        tiny_pipe(ZOO[case](), sample_rate=SR, n_images=0, k=0)


def test_pipeline_answers_real_speech(tiny_pipe):
    res = tiny_pipe(_speech(), sample_rate=SR, n_images=1, k=1)
    assert abs(sum(res.probabilities.values()) - 1) < 1e-5 and res.images


def test_cli_paint_exits_2_on_a_tone(tiny_run, tmp_path, capsys):
    import soundfile as sf

    from sound2sight.cli import main

    path = tmp_path / "tone.wav"
    sf.write(path, tone(2.0), SR)
    assert main(["paint", str(path), "--run", str(tiny_run), "-o", str(tmp_path / "o")]) == 2
    assert "tone.wav: no speech detected" in capsys.readouterr().err
