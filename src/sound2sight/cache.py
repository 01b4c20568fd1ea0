"""Content-addressed feature cache.

A cached array lives at ``<root>/<namespace>/<kk>/<key>.npy`` where ``key`` is the
SHA-256 of the source file's bytes and ``namespace`` hashes the preprocessing config,
so a second run is a hit, a changed file or config is a miss, and renaming a file
costs nothing.  Writes are atomic.

>>> import tempfile, numpy as np
>>> c = FeatureCache(tempfile.mkdtemp(), namespace="demo")
>>> c.put("ab12", np.zeros((2, 3), np.float32)); c.get("ab12").shape
(2, 3)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sound2sight.config import AudioConfig
from sound2sight.io import atomic_save_npy

__all__ = ["FeatureCache", "MelBatch", "config_hash", "file_sha256", "build_mel_cache"]

log = logging.getLogger(__name__)

FEATURE_VERSION = "mel-v1"  # bump when the front end's numbers change


def config_hash(obj: object, *, version: str = FEATURE_VERSION) -> str:
    """A short stable hash of a config dataclass (or mapping) plus a version tag."""
    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
    text = json.dumps({"v": version, "cfg": data}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class FeatureCache:
    """Arrays keyed by content hash inside one config namespace."""

    def __init__(self, root: str | os.PathLike, *, namespace: str) -> None:
        self.root = Path(root) / namespace
        self.namespace = namespace

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> np.ndarray | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:  # a damaged entry is a miss, and is replaced
            log.warning("cache entry %s unreadable (%s); recomputing", p, exc)
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        atomic_save_npy(self.path(key), array)


@dataclass
class MelBatch:
    """What :func:`build_mel_cache` returns.

    ``keys[i]`` is the cache key of ``paths[i]`` or ``None`` when that file failed.
    """

    paths: list[str]
    keys: list[str | None]
    failures: list[tuple[str, str]] = field(default_factory=list)
    hits: int = 0
    misses: int = 0
    seconds: float = 0.0

    def load(self, cache: FeatureCache) -> np.ndarray:
        """Stack the cached Mels of the files that succeeded: ``(N_ok, n_mels, frames)``."""
        arrays = [cache.get(k) for k in self.keys if k is not None]
        return np.stack(arrays) if arrays else np.zeros((0, 0, 0), np.float32)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _compute_chunk(args: tuple[list[tuple[str, str]], AudioConfig, str, str]):
    """Decode, preprocess and log-Mel one chunk of files; write each to the cache."""
    import torch

    from sound2sight.audio import AudioError, LogMel, decode_audio, preprocess_waveform

    items, cfg, root, namespace = args
    cache = FeatureCache(root, namespace=namespace)
    waves, keys, failures = [], [], []
    for path, key in items:
        try:
            data = Path(path).read_bytes()
            wave = decode_audio(
                data, name=path, sample_rate=cfg.sample_rate, max_seconds=cfg.max_seconds
            )
            waves.append(preprocess_waveform(wave, cfg, name=path))
            keys.append(key)
        except AudioError as exc:
            failures.append((path, str(exc)))
        except OSError as exc:
            failures.append((path, f"{path}: cannot read ({exc.strerror or exc})"))
    if waves:
        with torch.inference_mode():
            mels = LogMel(cfg)(torch.from_numpy(np.stack(waves))).numpy()  # (B, n_mels, T)
        for key, mel in zip(keys, mels):
            cache.put(key, mel.astype(np.float32))
    return keys, failures


def _hash_or_fail(path: str) -> tuple[str | None, str | None]:
    try:
        if Path(path).is_dir():
            return None, f"{path}: is a directory, expected an audio file"
        return file_sha256(path), None
    except OSError as exc:
        return None, f"{path}: cannot read ({exc.strerror or exc})"


def build_mel_cache(
    paths: Sequence[str | os.PathLike],
    cfg: AudioConfig,
    cache_root: str | os.PathLike,
    *,
    workers: int | None = None,
    chunk: int = 32,
    progress: bool = True,
) -> tuple[MelBatch, FeatureCache]:
    """Make sure every file's log-Mel is cached; compute the misses in parallel.

    Hashing runs in threads in this process, so a fully warm call starts no worker
    processes.  Files that fail are reported in ``MelBatch.failures`` and skipped.

    Parameters
    ----------
    paths : sequence of path-like
        Audio files.
    cfg : AudioConfig
        Front-end settings; part of the cache namespace.
    cache_root : path-like
        Cache folder.
    workers : int | None
        Worker processes for the misses (default: CPU count); 1 computes in-process.
    """
    t0 = time.perf_counter()
    cache = FeatureCache(cache_root, namespace=config_hash(cfg))
    paths = [str(p) for p in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        hashed = list(pool.map(_hash_or_fail, paths))
    keys: list[str | None] = [h for h, _ in hashed]
    failures = [(p, err) for p, (_, err) in zip(paths, hashed) if err]
    todo = [(p, k) for p, k in zip(paths, keys) if k is not None and k not in cache]
    hits = sum(k is not None for k in keys) - len(todo)
    done: set[str] = set()
    if todo:
        chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
        jobs = [(c, cfg, str(cache_root), cache.namespace) for c in chunks]
        workers = workers or os.cpu_count() or 1
        bar = tqdm(total=len(todo), desc="log-Mel", unit="clip", disable=not progress)
        if workers == 1 or len(chunks) == 1:
            results = map(_compute_chunk, jobs)
            for ok, bad in results:
                done.update(ok)
                failures.extend(bad)
                bar.update(len(ok) + len(bad))
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(workers, len(chunks)), initializer=_worker_init) as pool:
                for ok, bad in pool.imap_unordered(_compute_chunk, jobs):
                    done.update(ok)
                    failures.extend(bad)
                    bar.update(len(ok) + len(bad))
        bar.close()
    failed = {p for p, _ in failures}
    keys = [None if p in failed else k for p, k in zip(paths, keys)]
    for path, reason in failures:
        log.warning("skipped %s", reason)
    batch = MelBatch(
        paths=paths,
        keys=keys,
        failures=failures,
        hits=hits,
        misses=len(done),
        seconds=time.perf_counter() - t0,
    )
    return batch, cache
