"""Load the inference parts of a run, and export them as a small self-contained bundle.

A *run directory* holds the training outputs (``classifier/best.pt``,
``align/best.pt``, ``align/gallery.npz``, ``gan/best.pt``).  A *bundle* holds only what
inference needs: ``bundle.json`` (resolved config and shapes), the three networks as
safetensors, and the gallery (embeddings, labels, file names, 64x64 thumbnails).
Both load through :func:`load_parts`; neither path unpickles anything.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import yaml

from sound2sight.config import Config, config_from_dict, config_to_dict
from sound2sight.io import atomic_write_bytes, atomic_write_json
from sound2sight.labels import EMOTIONS

__all__ = ["load_parts", "export", "BUNDLE_FORMAT"]

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "sound2sight-bundle/1"
_NETS = ("classifier", "joint", "generator")


def _run_config(run_dir: Path, *, audio, classifier, align, gan) -> Config:
    """The run's config, with each stage's section taken from the weights it goes with."""
    saved = run_dir / "config.yaml"
    data = yaml.safe_load(saved.read_text(encoding="utf-8")) if saved.is_file() else {}
    cfg = config_from_dict(data or {})
    cfg.audio, cfg.classifier, cfg.align, cfg.gan = audio, classifier, align, gan
    return cfg


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing ({what}); train that stage first")
    return path


def _voice(cfg: Config, classifier, recorded: list[dict] | None = None):
    """The frozen Whisper encoder(s) a whisper-head classifier reads (None for CNNs).

    A bundle records the weights' SHA-256: other weights under the same name are refused.
    """
    if getattr(classifier, "takes_mels", True):
        return None
    from sound2sight.voice.model import VoiceEncoder

    voice = VoiceEncoder.load(cfg.classifier.encoder, feature_pool=cfg.classifier.feature_pool)
    if recorded is not None:
        want = [r["sha256"] for r in recorded]
        have = [p["sha256"] for p in voice.provenance]
        if want != have:
            raise ValueError(
                f"the bundle's voice head was trained on Whisper weights {want}, but "
                f"{cfg.classifier.encoder!r} resolves to {have}"
            )
    return voice


def _provenance(run_dir: Path) -> dict[str, str]:
    """``provenance.json`` of a run (what each part was trained on), or {}."""
    p = run_dir / "provenance.json"
    try:
        return {str(k): str(v) for k, v in json.loads(p.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def load_parts(path: str | Path, *, device: str = "cpu") -> dict:
    """``{cfg, classifier, joint, generator, gallery, voice}`` from a run directory or a bundle.

    ``voice`` is the frozen Whisper encoder of a whisper-head classifier (None for CNNs);
    its weights come from their pip package, never from the run or the bundle.
    """
    from sound2sight.models.heads import load_joint_space
    from sound2sight.painting.model import load_generator
    from sound2sight.retrieval import Gallery
    from sound2sight.voice.classifier import load_classifier

    path = Path(path)
    if (path / "bundle.json").is_file():
        return _load_bundle(path)
    classifier, audio_cfg = load_classifier(_need(path / "classifier" / "best.pt", "classifier"))
    joint = load_joint_space(_need(path / "align" / "best.pt", "shared space"))
    generator, gan_cfg = load_generator(_need(path / "gan" / "best.pt", "GAN"))
    gallery = Gallery.load(_need(path / "align" / "gallery.npz", "artwork gallery"))
    cfg = _run_config(
        path, audio=audio_cfg, classifier=classifier.cfg, align=joint.cfg, gan=gan_cfg
    )
    return {
        "cfg": cfg,
        "classifier": classifier,
        "joint": joint,
        "generator": generator,
        "gallery": gallery,
        "voice": _voice(cfg, classifier),
        "provenance": _provenance(path),
    }


def _load_bundle(path: Path) -> dict:
    from safetensors.torch import load_file

    from sound2sight.models.heads import JointSpace
    from sound2sight.painting.model import Generator
    from sound2sight.retrieval import Gallery
    from sound2sight.voice.classifier import build_classifier

    try:
        meta = json.loads((path / "bundle.json").read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path}/bundle.json: not valid JSON ({exc})") from exc
    if meta.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{path}/bundle.json: unknown bundle format {meta.get('format')!r}")
    cfg = config_from_dict(meta["config"])
    classifier = build_classifier(cfg.classifier, n_mels=cfg.audio.n_mels)
    j = meta["joint"]
    joint = JointSpace(
        audio_dim=j["audio_dim"], image_dim=j["image_dim"], cfg=cfg.align, n_classes=j["n_classes"]
    )
    generator = Generator(cfg.gan)
    for name, net in zip(_NETS, (classifier, joint, generator), strict=True):
        weights = _need(path / f"{name}.safetensors", name)
        try:
            state = load_file(str(weights))
        except Exception as exc:  # SafetensorError, OSError: corrupt, truncated or not safetensors
            raise ValueError(f"{weights}: not a readable safetensors file ({exc})") from exc
        net.load_state_dict(state)
        net.eval()
    return {
        "cfg": cfg,
        "classifier": classifier,
        "joint": joint,
        "generator": generator.requires_grad_(False),
        "gallery": Gallery.load(_need(path / "gallery.npz", "artwork gallery")),
        "voice": _voice(cfg, classifier, meta.get("voice_encoder")),
        "provenance": meta.get("provenance") or {},
    }


def export(run_dir: Path, out_dir: Path) -> Path:
    """Write a bundle of ``run_dir`` into ``out_dir``; return ``out_dir``.

    File names in the gallery are reduced to their base names (the bundle travels
    without the training data; the thumbnails show the pictures).
    """
    from safetensors.torch import save_file

    from sound2sight.painting.taef2 import TAEF2_SHA256
    from sound2sight.retrieval import Gallery

    parts = load_parts(run_dir)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cfg: Config = parts["cfg"]  # each section matches the weights it goes with
    joint = parts["joint"]
    for name in _NETS:
        state = {k: v.detach().contiguous().clone() for k, v in parts[name].state_dict().items()}
        save_file(state, str(tmp / f"{name}.safetensors"))
    g: Gallery = parts["gallery"]
    Gallery(
        [Path(str(p)).name for p in g.paths], g.labels, g.embeddings, g.thumbnails, g.features
    ).save(tmp / "gallery.npz")
    atomic_write_json(
        tmp / "bundle.json",
        {
            "format": BUNDLE_FORMAT,
            "config": config_to_dict(cfg),
            "joint": {k: v for k, v in joint.checkpoint_meta().items() if k != "align"},
            "labels": list(EMOTIONS),
            # the frozen Whisper weights the voice head reads: named and hashed, not copied
            "voice_encoder": parts["voice"].provenance if parts["voice"] is not None else None,
            # the painter's renderer: TAEF2's decoder, shipped in the package (MIT), hash-pinned
            "painting_decoder": {
                "name": "TAEF2 decoder (madebyollin/taesd, MIT)",
                "file": "sound2sight/weights/taef2/taef2_decoder.pth",
                "sha256": TAEF2_SHA256["decoder"],
                "image_size": cfg.gan.image_size,
            },
            "provenance": parts["provenance"],
        },
    )
    atomic_write_bytes(
        tmp / "README.txt",
        b"sound2sight bundle: load with "
        b"Sound2Sight.from_run(<this folder>) or `sound2sight serve --run <folder>`.\n",
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    log.info("exported %s -> %s", run_dir, out_dir)
    return out_dir
