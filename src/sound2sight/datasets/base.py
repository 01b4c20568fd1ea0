"""Manifest rows, manifest CSV files and speaker-disjoint splits.

>>> items = [AudioItem(f"{s}_{i}.wav", "sad", "sad", s, "demo") for s in "abcdef" for i in range(2)]
>>> items = assign_folds(items, n_folds=3, seed=0)
>>> items = split_by_speaker(items, test_fold=0, val_fraction=0.25, seed=0)
>>> check_speaker_disjoint(items)
>>> sorted({it.split for it in items})
['test', 'train', 'val']
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sound2sight.io import atomic_write_text

__all__ = [
    "AudioItem",
    "ArtItem",
    "Manifest",
    "write_manifest",
    "read_manifest",
    "assign_folds",
    "read_folds_csv",
    "split_by_speaker",
    "check_speaker_disjoint",
    "LeakError",
    "counts_table",
]


@dataclass
class AudioItem:
    path: str  # absolute path of the audio file
    label: str  # normalised emotion (one of EMOTIONS)
    raw_label: str  # the corpus's own label or code
    speaker: str  # speaker id, prefixed by corpus (e.g. "RAVDESS:03")
    corpus: str  # corpus name
    fold: int = -1  # speaker fold (-1 = unassigned)
    split: str = ""  # train | val | test | "" (unassigned)


@dataclass
class ArtItem:
    path: str  # absolute path of the image
    label: str  # normalised emotion, or "" for an unlabelled painting
    raw_label: str  # the source's own label ("" if none)
    group: str  # split unit (artwork or artist id)
    source: str = ""  # which adapter / annotation produced the label
    split: str = ""  # train | val | test | ""


@dataclass
class Manifest:
    """Rows plus what an adapter dropped, so nothing disappears unreported."""

    items: list = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)  # raw label -> count outside the label map
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    duplicates: list[dict] = field(default_factory=list)  # groups of identical files

    def __len__(self) -> int:
        return len(self.items)

    def extend(self, other: Manifest) -> Manifest:
        self.items.extend(other.items)
        self.dropped.update(other.dropped)
        self.skipped.extend(other.skipped)
        self.duplicates.extend(other.duplicates)
        return self


def write_manifest(items: Sequence, path: str | os.PathLike) -> Path:
    """Write rows (all of one dataclass type) as CSV, atomically."""
    if not items:
        raise ValueError(f"{path}: refusing to write an empty manifest")
    names = [f.name for f in dataclasses.fields(items[0])]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for it in items:
        writer.writerow(dataclasses.asdict(it))
    return atomic_write_text(path, buf.getvalue())


def read_manifest(path: str | os.PathLike, kind: type = AudioItem) -> list:
    """Read a manifest CSV written by :func:`write_manifest`."""
    types = {f.name: f.type for f in dataclasses.fields(kind)}
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        rows = list(csv.DictReader(fh))  # surrogateescape: non-UTF-8 file names round-trip
    out = []
    for row in rows:
        missing = set(types) - set(row)
        if missing:
            raise ValueError(f"{path}: manifest lacks column(s) {sorted(missing)}")
        out.append(
            kind(
                **{
                    k: int(v) if types[k] in ("int", int) else v
                    for k, v in row.items()
                    if k in types
                }
            )
        )
    return out


def read_folds_csv(path: str | os.PathLike) -> dict[str, int]:
    """``corpus,speaker,fold`` CSV -> {"corpus:speaker": fold}."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"corpus", "speaker", "fold"} <= set(rows[0]):
        raise ValueError(f"{path}: folds CSV needs columns corpus,speaker,fold")
    return {f"{r['corpus']}:{r['speaker']}": int(r["fold"]) for r in rows}


def _stable_fold(speaker: str, n_folds: int, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}:{speaker}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % n_folds


def assign_folds(
    items: list[AudioItem],
    *,
    n_folds: int = 5,
    folds: dict[str, int] | None = None,
    seed: int = 0,
) -> list[AudioItem]:
    """Give every speaker one fold: from ``folds`` when given, else balanced by speaker.

    Speakers are shuffled with ``seed`` and dealt round-robin within each corpus, so
    every fold gets a share of every corpus.  Speakers missing from ``folds`` raise.
    """
    if folds is not None:
        missing = sorted({it.speaker for it in items} - set(folds))
        if missing:
            raise ValueError(f"folds file has no fold for speaker(s) {missing[:5]}")
        for it in items:
            it.fold = folds[it.speaker]
        return items
    by_corpus: dict[str, list[str]] = defaultdict(list)
    for spk in sorted({(it.corpus, it.speaker) for it in items}):
        by_corpus[spk[0]].append(spk[1])
    rng = random.Random(seed)
    fold_of: dict[str, int] = {}
    offset = 0
    for corpus in sorted(by_corpus):
        speakers = by_corpus[corpus]
        rng.shuffle(speakers)
        for i, spk in enumerate(speakers):
            fold_of[spk] = (i + offset) % n_folds
        offset += len(speakers)
    for it in items:
        it.fold = fold_of[it.speaker]
    return items


def split_by_speaker(
    items: list[AudioItem], *, test_fold: int = 0, val_fraction: float = 0.15, seed: int = 0
) -> list[AudioItem]:
    """Test = speakers of ``test_fold``; validation = a seeded share of the other speakers."""
    train_speakers = sorted({it.speaker for it in items if it.fold != test_fold})
    rng = random.Random(seed)
    rng.shuffle(train_speakers)
    n_val = max(1, round(len(train_speakers) * val_fraction)) if len(train_speakers) > 1 else 0
    val = set(train_speakers[:n_val])
    for it in items:
        it.split = "test" if it.fold == test_fold else ("val" if it.speaker in val else "train")
    return items


class LeakError(ValueError):
    """A speaker (or artwork group) appears in more than one split."""


def check_speaker_disjoint(items: Iterable, *, key: str = "speaker") -> None:
    """Refuse a split where one speaker (or ``group``) appears on two sides."""
    where: dict[str, set[str]] = defaultdict(set)
    for it in items:
        if it.split:
            where[getattr(it, key)].add(it.split)
    leaks = {s: sorted(v) for s, v in where.items() if len(v) > 1}
    if leaks:
        first = next(iter(sorted(leaks)))
        raise LeakError(
            f"{len(leaks)} {key}(s) appear in several splits, e.g. {first!r} in {leaks[first]}"
        )


def counts_table(items: Iterable, *, by: str = "split") -> dict[str, dict[str, int]]:
    """{label: {split or corpus: count}} for reporting."""
    table: dict[str, Counter] = defaultdict(Counter)
    for it in items:
        table[it.label or "(unlabelled)"][getattr(it, by) or "-"] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}
