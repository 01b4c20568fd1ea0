"""The paintings as TAEF2 latents, encoded once and cached by content.

Each painting is squashed to the GAN's side (as :func:`~sound2sight.painting.data.load_art_images`
does), encoded by the pretrained TAEF2 encoder and stored as float16 in a
:class:`~sound2sight.cache.FeatureCache` under ``taef2-latents``; the key is the SHA-256 of
the file's bytes plus the side and the encoder's hash, so a changed file, side or encoder
is a miss.  Unreadable files are skipped and reported, never fatal.

>>> import tempfile; from PIL import Image
>>> d = tempfile.mkdtemp(); Image.new("RGB", (40, 30), "red").save(f"{d}/a.png")
>>> z, keep = painting_latents([f"{d}/a.png", f"{d}/missing.png"], size=16, cache_root=d)
>>> tuple(z.shape), keep
((1, 32, 2, 2), [0])
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from tqdm.auto import tqdm

from sound2sight.cache import FeatureCache, file_sha256
from sound2sight.painting.taef2 import LATENT_CHANNELS, TAEF2_SHA256, encode_images

__all__ = ["painting_latents"]

log = logging.getLogger(__name__)


def _key(path: str, size: int) -> str | None:
    try:
        digest = file_sha256(path)
    except OSError as exc:
        log.warning("skipping %s: %s", path, exc)
        return None
    return f"{digest}-taef2-{TAEF2_SHA256['encoder'][:8]}-{size}"


def painting_latents(
    paths: list[str],
    *,
    size: int,
    cache_root: str | os.PathLike,
    batch_size: int = 32,
) -> tuple[torch.Tensor, list[int]]:
    """float16 latents ``(N_ok, 32, size/8, size/8)`` of ``paths`` and the kept indices."""
    from sound2sight.painting.data import read_painting

    side = size // 8
    cache = FeatureCache(cache_root, namespace="taef2-latents")
    keys = [_key(p, size) for p in paths]
    out: list[np.ndarray | None] = [None] * len(paths)
    todo, encoded = [], 0
    for i, k in enumerate(keys):
        if k is not None:
            hit = cache.get(k)
            if hit is not None and hit.shape == (LATENT_CHANNELS, side, side):
                out[i] = hit
            else:
                todo.append(i)
    if todo:
        bar = tqdm(total=len(todo), desc=f"TAEF2 latents @{size}px", unit="img", disable=None)
        for s in range(0, len(todo), batch_size):
            chunk = todo[s : s + batch_size]
            imgs = [(i, read_painting(paths[i], size)) for i in chunk]
            imgs = [(i, a) for i, a in imgs if a is not None]  # read_painting logs what it skips
            if imgs:
                z = encode_images(np.stack([a for _, a in imgs])).numpy().astype(np.float16)
                for (i, _), zi in zip(imgs, z, strict=True):
                    cache.put(keys[i], zi)
                    out[i] = zi
                encoded += len(imgs)
            bar.update(len(chunk))
        bar.close()
    keep = [i for i, z in enumerate(out) if z is not None]
    log.info(
        "TAEF2 latents @%dpx: %d paintings (%d from the cache, %d encoded, %d skipped)",
        *(size, len(keep), len(keep) - encoded, encoded, len(paths) - len(keep)),
    )
    if not keep:
        return torch.zeros(0, LATENT_CHANNELS, side, side, dtype=torch.float16), keep
    return torch.from_numpy(np.stack([out[i] for i in keep])), keep
