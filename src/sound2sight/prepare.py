"""``prepare audio|art``: build a manifest, split it, fill the feature cache, report counts.

:func:`prepare_audio` and :func:`prepare_art` write ``<run>/data/{audio,art}_manifest.csv``
and ``<run>/data/{audio,art}_prepare.json`` and return that summary;
:func:`format_prepare_table` renders it for the terminal.

>>> print(format_prepare_table({"kind": "art", "counts": {"sad": {"train": 8, "test": 1}}}))
label  train  val  test  total
sad        8    0     1      9
total      8    0     1      9
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from sound2sight.config import Config, DataConfig
from sound2sight.datasets.art import load_art_corpus, load_unlabelled_images, split_by_group
from sound2sight.datasets.audio import find_duplicates, load_audio_corpus
from sound2sight.datasets.base import (
    ArtItem,
    Manifest,
    assign_folds,
    check_speaker_disjoint,
    counts_table,
    read_folds_csv,
    split_by_speaker,
    write_manifest,
)
from sound2sight.io import atomic_write_json
from sound2sight.labels import LabelMap

__all__ = ["make_splits", "prepare_audio", "prepare_art", "format_prepare_table"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ART_FRACTIONS = (0.8, 0.1, 0.1)  # train / val / test share of the paintings, per label


def make_splits(items: Sequence, data: DataConfig, seed: int) -> list:
    """Assign folds and train/val/test splits, then refuse any speaker (or painting) leak.

    Audio: folds from ``data.folds_csv`` when set, else balanced by speaker; test = fold
    ``data.test_fold``, validation = ``data.val_fraction`` of the other speakers.
    Art: by ``group`` (painting), stratified by label, :data:`ART_FRACTIONS`.

    >>> from sound2sight.datasets.base import AudioItem
    >>> its = [AudioItem(f"{s}{i}.wav", "sad", "04", f"X:{s}", "X") for s in "abcdefgh" for i in range(3)]
    >>> sorted(Counter(it.split for it in make_splits(its, DataConfig(), 0)).items())
    [('test', 6), ('train', 15), ('val', 3)]
    """
    items = list(items)
    if not items:
        return items
    if isinstance(items[0], ArtItem):
        split_by_group(items, fractions=ART_FRACTIONS, seed=seed)
        check_speaker_disjoint(items, key="group")
        return items
    folds = read_folds_csv(data.folds_csv) if data.folds_csv else None
    assign_folds(items, n_folds=data.n_folds, folds=folds, seed=seed)
    split_by_speaker(items, test_fold=data.test_fold, val_fraction=data.val_fraction, seed=seed)
    check_speaker_disjoint(items)
    return items


def _skip_summary(skipped: list[tuple[str, str]], *, limit: int = 200) -> dict:
    reasons = Counter(r.split(":", 1)[0] for _, r in skipped)
    return {
        "n": len(skipped),
        "reasons": dict(reasons.most_common()),
        "files": [{"path": p, "reason": r} for p, r in skipped[:limit]],
    }


def _common(man: Manifest, kind: str, split_key: str, t0: float) -> dict:
    items = man.items
    return {
        "kind": kind,
        "n_items": len(items),
        "counts": counts_table(items, by="split"),
        "labels": dict(sorted(Counter(it.label or "(unlabelled)" for it in items).items())),
        f"{split_key}s_per_split": {
            s: len({getattr(it, split_key) for it in items if it.split == s}) for s in SPLITS
        },
        "dropped": dict(man.dropped.most_common()),
        "skipped": _skip_summary(man.skipped),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _label_map(cfg: Config) -> LabelMap:
    return LabelMap(overrides=cfg.data.label_overrides or None)


def prepare_audio(cfg: Config, run_dir: str | os.PathLike) -> dict:
    """Manifest + splits + log-Mel cache for ``cfg.data.audio_root``; returns the summary.

    Files that fail to decode are removed from the manifest and listed under ``failures``.
    Writes ``run_dir/data/audio_manifest.csv`` and ``run_dir/data/audio_prepare.json``.
    """
    from sound2sight.cache import build_mel_cache
    from sound2sight.train.common import cache_root

    t0 = time.perf_counter()
    if not cfg.data.audio_root:
        raise ValueError("data.audio_root is empty: point it at a speech corpus folder")
    man = load_audio_corpus(
        cfg.data.audio_root, fmt=cfg.data.audio_format, label_map=_label_map(cfg)
    )
    if not man.items:
        raise ValueError(f"{cfg.data.audio_root}: no labelled audio found (see skipped/dropped)")
    make_splits(man.items, cfg.data, cfg.seed)  # before the slow part: a bad folds file fails fast
    log.info("manifest: %d clips; building the log-Mel cache", len(man))
    batch, cache = build_mel_cache(
        [it.path for it in man.items], cfg.audio, cache_root(cfg), workers=cfg.data.workers or None
    )
    man.duplicates = find_duplicates(man.items, keys=batch.keys)
    failed = {p for p, _ in batch.failures}
    man.items = [it for it in man.items if it.path not in failed]  # splits stay speaker-disjoint
    out = Path(run_dir) / "data"
    manifest_path = write_manifest(man.items, out / "audio_manifest.csv")
    summary = _common(man, "audio", "speaker", t0)
    computed = max(batch.misses + len(batch.failures), 1)
    summary |= {
        "root": str(cfg.data.audio_root),
        "manifest": str(manifest_path),
        "per_corpus": counts_table(man.items, by="corpus"),
        "corpora": dict(sorted(Counter(it.corpus for it in man.items).items())),
        "speakers": len({it.speaker for it in man.items}),
        "folds": dict(sorted(Counter(it.fold for it in man.items).items())),
        "duplicates": {
            "groups": len(man.duplicates),
            "conflicting": sum(g["conflict"] for g in man.duplicates),
            "cross_speaker": sum(g["cross_speaker"] for g in man.duplicates),
            "list": man.duplicates,
        },
        "failures": [{"path": p, "reason": r} for p, r in batch.failures],
        "cache": {"dir": str(cache.root), "hits": batch.hits, "misses": batch.misses},
        "cache_seconds": round(batch.seconds, 3),
        "clips_per_s": round(computed / batch.seconds, 1) if batch.misses else None,
    }
    atomic_write_json(out / "audio_prepare.json", summary)
    return summary


def _under(root: Path, path: str) -> Path:
    """``path`` as given when absolute or existing, else relative to ``root``."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else root / p


def prepare_art(cfg: Config, run_dir: str | os.PathLike) -> dict:
    """Manifest + split by painting for ``cfg.data.art_root`` (+ ``cfg.data.art_labels``).

    ``cfg.data.art_unlabelled`` adds every image below that folder with label ``""``
    (the GAN's ``image`` conditioning trains on them; the labelled stages skip them).
    Writes ``run_dir/data/art_manifest.csv`` and ``run_dir/data/art_prepare.json``.
    """
    t0 = time.perf_counter()
    if not cfg.data.art_root:
        raise ValueError("data.art_root is empty: point it at an artwork folder")
    root, labels = Path(cfg.data.art_root), cfg.data.art_labels
    if labels:
        labels = str(_under(root, labels))
    man = load_art_corpus(root, labels=labels or None, label_map=_label_map(cfg))
    if not man.items:
        raise ValueError(f"{root}: no labelled artwork found (see skipped/dropped)")
    if cfg.data.art_unlabelled:
        extra_root = _under(root, cfg.data.art_unlabelled)
        if not extra_root.is_dir():
            raise FileNotFoundError(f"data.art_unlabelled: {extra_root}: folder not found")
        seen = {str(Path(it.path).resolve()) for it in man.items}
        extra = [
            it
            for it in load_unlabelled_images(extra_root).items
            if str(Path(it.path).resolve()) not in seen
        ]
        log.info("%s: %d unlabelled paintings added", extra_root, len(extra))
        man.items.extend(extra)
    make_splits(man.items, cfg.data, cfg.seed)
    out = Path(run_dir) / "data"
    manifest_path = write_manifest(man.items, out / "art_manifest.csv")
    summary = _common(man, "art", "group", t0)
    summary |= {
        "root": str(root),
        "labels_file": str(labels),
        "manifest": str(manifest_path),
        "sources": dict(Counter(it.source for it in man.items).most_common()),
    }
    atomic_write_json(out / "art_prepare.json", summary)
    return summary


def _table(counts: dict[str, dict[str, int]], columns: Sequence[str], head: str) -> list[str]:
    rows = [[lab, *(counts[lab].get(c, 0) for c in columns)] for lab in counts]
    totals = [sum(r[i + 1] for r in rows) for i in range(len(columns))]
    rows = [[*r, sum(r[1:])] for r in rows] + [["total", *totals, sum(totals)]]
    header = [head, *columns, "total"]
    width = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    fmt = lambda r: "  ".join(  # noqa: E731
        str(x).ljust(w) if i == 0 else str(x).rjust(w)
        for i, (x, w) in enumerate(zip(r, width, strict=True))
    )
    return [fmt(header), *(fmt(r) for r in rows)]


def format_prepare_table(summary: dict) -> str:
    """Counts per label x split (and per corpus for audio), then drops, skips, duplicates, speed."""
    lines = _table(summary["counts"], SPLITS, "label")
    corpora = sorted({c for row in summary.get("per_corpus", {}).values() for c in row})
    if len(corpora) > 1:
        lines += ["", *_table(summary["per_corpus"], corpora, "label")]
    if "speakers" in summary:
        lines.append(
            f"\nspeakers: {summary['speakers']}  per split: {summary['speakers_per_split']}"
        )
    if summary.get("dropped"):
        lines.append(
            "dropped (outside the label map): "
            + ", ".join(f"{k} {v}" for k, v in summary["dropped"].items())
        )
    if summary.get("skipped", {}).get("n"):
        lines.append(
            f"skipped: {summary['skipped']['n']} ("
            + ", ".join(f"{k} {v}" for k, v in summary["skipped"]["reasons"].items())
            + ")"
        )
    if "duplicates" in summary:
        d = summary["duplicates"]
        lines.append(
            f"duplicate groups: {d['groups']} (conflicting labels: {d['conflicting']}, "
            f"across speakers: {d['cross_speaker']})"
        )
    if "failures" in summary:
        lines.append(f"failed to decode: {len(summary['failures'])}")
    if "cache" in summary:
        c, rate = summary["cache"], summary.get("clips_per_s")
        lines.append(
            f"cache: {c['hits']} hits, {c['misses']} misses in {summary['cache_seconds']:.1f} s"
            + (f" ({rate:.0f} clips/s)" if rate else "")
        )
    return "\n".join(lines)
