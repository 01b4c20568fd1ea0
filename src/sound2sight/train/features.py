"""Frozen features the shared space is trained on: image features and audio embeddings.

``extract_image_features`` is the pipeline's "image" stage (``image/features.npz`` and
``image/metrics.json``); ``audio_embeddings`` runs the trained classifier over every
clip of the audio manifest (``align/audio_embeddings.npz``); ``make_thumbnails``
makes the small images a gallery carries.

>>> make_thumbnails([]).shape
(0, 64, 64, 3)
"""

from __future__ import annotations

import copy
import dataclasses
import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from sound2sight.cache import FeatureCache, build_mel_cache, file_sha256
from sound2sight.config import Config
from sound2sight.datasets.base import ArtItem, AudioItem, read_manifest
from sound2sight.io import atomic_write_bytes, atomic_write_json
from sound2sight.retrieval import real_image_ceiling
from sound2sight.train.common import cache_root, resolve_device, stage_dir

__all__ = ["extract_image_features", "audio_embeddings", "make_thumbnails", "load_npz", "save_npz"]

log = logging.getLogger(__name__)

THUMB = 64  # gallery thumbnail side (px)


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def extract_image_features(cfg: Config, run_dir: str | Path) -> dict:
    """Frozen EfficientNet-Lite0 features of the art manifest, cached by file hash.

    Reads ``run_dir/data/art_manifest.csv`` (labelled rows; unlabelled too when
    ``image.unlabelled``), writes ``image/features.npz`` with ``paths``, ``labels``,
    ``splits`` (N,) and ``feats`` (N, 1280) float32, and ``image/metrics.json`` with
    throughput, failures and the real-image ceiling (:func:`real_image_ceiling`).
    Broken images are reported and skipped.

    >>> extract_image_features(load_config(), "runs/demo")["n_features"]  # doctest: +SKIP
    3179
    """
    from sound2sight.models.image import ImageFeatureExtractor, load_image_encoder

    run_dir = Path(run_dir)
    out = stage_dir(run_dir, "image", cfg)
    items = read_manifest(run_dir / "data" / "art_manifest.csv", ArtItem)
    items = [it for it in items if it.label or cfg.image.unlabelled]
    model, _ = load_image_encoder(device=resolve_device(cfg.device))
    if cfg.image.image_size != model.config.image_size:
        model.config = dataclasses.replace(model.config, image_size=cfg.image.image_size)
    extractor = ImageFeatureExtractor(
        model,
        batch_size=cfg.image.batch_size,
        num_workers=cfg.image.num_workers,
        max_pixels=cfg.image.max_pixels,
        cache=FeatureCache(cache_root(cfg), namespace="image-features"),
    )
    t0 = time.perf_counter()
    res = extractor([it.path for it in items])
    seconds = time.perf_counter() - t0
    row = {str(p): i for i, p in enumerate(res.paths)}
    kept = [it for it in items if str(Path(it.path)) in row]
    feats = res.features[[row[str(Path(it.path))] for it in kept]]  # (N, 1280)
    save_npz(
        out / "features.npz",
        paths=np.array([it.path for it in kept], dtype=str),
        labels=np.array([it.label for it in kept], dtype=str),
        splits=np.array([it.split for it in kept], dtype=str),
        feats=feats.astype(np.float32),
    )
    computed = len(res.paths) - res.cache_hits
    metrics = {
        "n_images": len(items),
        "n_features": len(kept),
        "cache_hits": res.cache_hits,
        "computed": computed,
        "seconds": round(seconds, 2),
        "imgs_per_s": round(computed / seconds, 2) if computed else None,
        "image_size": cfg.image.image_size,
        "failures": [{"path": str(p), "reason": r} for p, r in res.failures],
    }
    labelled = np.array([bool(it.label) for it in kept])
    if len({it.label for it in kept if it.label}) > 1 and labelled.sum() >= 10:
        labels = np.array([it.label for it in kept])[labelled]
        folds = int(min(5, np.unique(labels, return_counts=True)[1].min()))
        if folds >= 2:
            metrics["ceiling"] = real_image_ceiling(
                feats[labelled], labels, folds=folds, seed=cfg.seed
            )
    atomic_write_json(out / "metrics.json", metrics)
    log.info(
        "image features: %d ok, %d failed, %d cache hits, %s img/s",
        len(kept),
        len(res.failures),
        res.cache_hits,
        metrics["imgs_per_s"],
    )
    return metrics


def audio_embeddings(
    cfg: Config, run_dir: str | Path, *, classifier_path: str | Path | None = None
) -> dict[str, np.ndarray]:
    """Classifier probabilities and embeddings of every clip in the audio manifest.

    Cached in ``align/audio_embeddings.npz`` (recomputed when the classifier checkpoint
    or the manifest changes).  Keys: ``paths``, ``labels``, ``speakers``, ``splits``
    (N,), ``probs`` (N, 3), ``embeddings`` (N, embed_dim).

    >>> audio_embeddings(load_config(), "runs/demo")["embeddings"].shape  # doctest: +SKIP
    (6016, 128)
    """
    from sound2sight.voice.classifier import load_classifier
    from sound2sight.voice.train import predict

    run_dir = Path(run_dir)
    ckpt = Path(classifier_path or run_dir / "classifier" / "best.pt")
    manifest = run_dir / "data" / "audio_manifest.csv"
    target = run_dir / "align" / "audio_embeddings.npz"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no classifier checkpoint (train the classifier first)")
    stamp = f"{file_sha256(ckpt)}:{file_sha256(manifest)}"
    if target.is_file():
        cached = load_npz(target)
        if str(cached.get("stamp", "")) == stamp:
            return cached
    items = read_manifest(manifest, AudioItem)
    model, audio_cfg = load_classifier(ckpt)
    model = model.to(resolve_device(cfg.device)).eval()
    if getattr(model, "takes_mels", True):
        batch, cache = build_mel_cache(
            [it.path for it in items], audio_cfg, cache_root(cfg), workers=cfg.data.workers or None
        )
        ok = [it for it, key in zip(items, batch.keys, strict=True) if key is not None]
        inputs = batch.load(cache)  # (N, n_mels, T)
    else:  # frozen Whisper features, with the settings the head was trained with
        from sound2sight.voice.cache import load_voice_features

        vcfg = copy.deepcopy(cfg)
        vcfg.audio, vcfg.classifier = audio_cfg, model.cfg
        ok, inputs = load_voice_features(items, vcfg, progress=False)  # (N, L, T, C)
        if model.cfg.speaker_norm:  # each clip as the pipeline reads one recording
            from sound2sight.voice.speaker import standardise_alone

            inputs = standardise_alone(inputs, model.population_stats(), model.shrink_prior())
    probs, emb = predict(model, inputs, batch_size=256)  # (N, 3), (N, E)
    arrays = {
        "paths": np.array([it.path for it in ok], dtype=str),
        "labels": np.array([it.label for it in ok], dtype=str),
        "speakers": np.array([it.speaker for it in ok], dtype=str),
        "splits": np.array([it.split for it in ok], dtype=str),
        "probs": np.asarray(probs, dtype=np.float32),
        "embeddings": np.asarray(emb, dtype=np.float32),
        "stamp": np.array(stamp),
    }
    save_npz(target, **arrays)
    return arrays


def make_thumbnails(paths, *, size: int = THUMB, workers: int = 2) -> np.ndarray:
    """``(N, size, size, 3)`` uint8 squashed thumbnails (black where a file fails)."""
    from PIL import Image

    def one(path: str) -> np.ndarray:
        try:
            with Image.open(path) as img:
                img.draft("RGB", (size, size))
                return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR))
        except Exception as exc:  # noqa: BLE001 - a thumbnail never stops the stage
            log.warning("thumbnail of %s failed: %s", path, exc)
            return np.zeros((size, size, 3), np.uint8)

    with ThreadPoolExecutor(workers) as pool:
        thumbs = list(pool.map(one, [str(p) for p in paths]))
    return np.stack(thumbs) if thumbs else np.zeros((0, size, size, 3), np.uint8)
