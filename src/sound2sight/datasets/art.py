"""Artwork adapters -> :class:`~sound2sight.datasets.base.ArtItem` rows, and the split by artwork.

Sources:

- folder-per-label ``root/<label>/**/*.jpg`` (raw label = folder name);
- an ``image,label`` CSV (paths relative to the CSV's folder or a given root; a row whose
  path leaves the root or whose image is missing is skipped with the reason);
- an ArtEmis annotation CSV (one row per annotation; votes are mapped through the label map,
  unmapped votes such as ``something else`` are counted in ``Manifest.dropped``, the
  plurality wins, ties are skipped; image = ``<root>/<art_style>/<painting>.jpg``);
- a WikiArt-Emotions TSV (``ImageOnly: <emotion>`` shares summed per mapped class, argmax;
  ties and all-zero rows skipped; image found by ``<artist>_<title>`` stem from the URL);
- an unlabelled image folder (label ``""``).

Skip reasons start with a fixed phrase (``image not found``, ``path escapes the root``,
``vote tie``, ``score tie``, ``no mapped votes``, ``no mapped emotion``) so they can be counted.
``group`` is the painting id (the image's file stem); splits never cut a group.

>>> split_by_group([ArtItem(f"{i}.jpg", "sad", "sad", str(i)) for i in range(10)], seed=0)[0].split
'train'
"""

from __future__ import annotations

import csv
import logging
import os
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from sound2sight.datasets.base import ArtItem, Manifest
from sound2sight.labels import LabelMap

__all__ = [
    "IMAGE_EXTENSIONS",
    "load_art_folders",
    "load_unlabelled_images",
    "load_labels_csv",
    "load_artemis",
    "load_wikiart_emotions",
    "load_art_corpus",
    "split_by_group",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def _images(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [
            Path(dirpath) / n
            for n in sorted(filenames)
            if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return out


def _read_table(path: Path, required: Sequence[str], *, delimiter: str = ",") -> list[dict]:
    """Rows of a CSV/TSV; a missing column or bad encoding is a ValueError naming the file.

    Cells beyond the header (a row with too many fields) are ignored.
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        try:
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in required if c not in header]
            if missing:
                raise ValueError(
                    f"{path}: missing column(s) {', '.join(missing)} "
                    f"(found: {', '.join(header) or 'no header'})"
                )
            return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"{path}: not a UTF-8 CSV/TSV file ({exc})") from exc


def _inside(root: Path, rel: str) -> Path | None:
    """``root/rel`` when it stays inside ``root`` (lexically), else ``None``."""
    base = os.path.abspath(root)
    full = os.path.abspath(os.path.join(base, rel))
    return Path(full) if os.path.commonpath([base, full]) == base else None


def load_art_folders(root: str | os.PathLike, *, label_map: LabelMap | None = None) -> Manifest:
    """Folder-per-label images ``root/<label>/**/<image>``.

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> for rel in ("joy/a.png", "calm/b.png"):
    ...     (d / rel).parent.mkdir(); _ = (d / rel).write_bytes(b"")
    >>> m = load_art_folders(d); [(i.label, i.group) for i in m.items], dict(m.dropped)
    ([('happy', 'a')], {'calm': 1})
    """
    root, labels, man = Path(root), label_map or LabelMap(), Manifest()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: art folder not found")
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = labels(folder.name)
        for path in _images(folder):
            if label is None:
                man.dropped[folder.name] += 1
            else:
                man.items.append(ArtItem(str(path), label, folder.name, path.stem, "folder"))
    return man


def load_unlabelled_images(root: str | os.PathLike) -> Manifest:
    """Every image below ``root`` as an unlabelled row (``label == ""``).

    >>> import tempfile; d = Path(tempfile.mkdtemp()); _ = (d / "x.png").write_bytes(b"")
    >>> [(i.label, i.group, i.source) for i in load_unlabelled_images(d).items]
    [('', 'x', 'unlabelled')]
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    return Manifest(items=[ArtItem(str(p), "", "", p.stem, "unlabelled") for p in _images(root)])


def load_labels_csv(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    label_map: LabelMap | None = None,
) -> Manifest:
    """An ``image,label[,source,...]`` CSV; image paths are relative to ``root`` (default: the CSV's folder).

    >>> import tempfile; d = Path(tempfile.mkdtemp()); _ = (d / "a.jpg").write_bytes(b"")
    >>> _ = (d / "l.csv").write_text("image,label\\na.jpg,anger\\n../../etc/passwd,sad\\n")
    >>> m = load_labels_csv(d / "l.csv"); [i.label for i in m.items], [r for _, r in m.skipped]
    (['angry'], ['path escapes the root'])
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    labels, man = label_map or LabelMap(), Manifest()
    for row in _read_table(path, ("image", "label")):
        full = _inside(root, row["image"])
        if full is None:
            man.skipped.append((row["image"], "path escapes the root"))
        elif not full.is_file():
            man.skipped.append((str(full), "image not found"))
        elif (label := labels(row["label"])) is None:
            man.dropped[row["label"] or "(empty)"] += 1
        else:
            source = row.get("source") or "labels-csv"
            man.items.append(ArtItem(str(full), label, row["label"], full.stem, source))
    return man


def _find_image(root: Path, stem_path: Path) -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        p = stem_path.with_name(stem_path.name + ext)
        if p.is_file():
            return p
    return None


def load_artemis(
    path: str | os.PathLike, *, root: str | os.PathLike, label_map: LabelMap | None = None
) -> Manifest:
    """ArtEmis annotations (``art_style,painting,emotion,...``): plurality of mapped votes.

    Unmapped votes are counted per raw emotion in ``dropped``; paintings with a tie, with no
    mapped vote, or without an image at ``<root>/<art_style>/<painting>.<ext>`` are skipped.

    >>> import tempfile; d = Path(tempfile.mkdtemp()); (d / "S").mkdir(); _ = (d / "S/p.jpg").write_bytes(b"")
    >>> _ = (d / "a.csv").write_text("art_style,painting,emotion\\nS,p,awe\\nS,p,fear\\nS,p,something else\\n")
    >>> m = load_artemis(d / "a.csv", root=d); len(m), m.skipped[0][1], dict(m.dropped)
    (0, 'vote tie: happy 1, sad 1', {'something else': 1})
    """
    root, labels, man = Path(root), label_map or LabelMap(), Manifest()
    votes: dict[tuple[str, str], Counter] = defaultdict(Counter)
    raws: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for row in _read_table(Path(path), ("art_style", "painting", "emotion")):
        key = (row["art_style"], row["painting"])
        label = labels(row["emotion"])
        count = votes[key]  # every painting is accounted for, even with no mapped vote
        if label is None:
            man.dropped[row["emotion"]] += 1
        else:
            count[label] += 1
            raws[key][row["emotion"]] += 1
    for (style, painting), count in sorted(votes.items()):
        where = f"{style}/{painting}"
        ranked = count.most_common()
        if not ranked:
            man.skipped.append((where, "no mapped votes"))
        elif len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            tied = sorted(k for k, v in ranked if v == ranked[0][1])
            man.skipped.append((where, "vote tie: " + ", ".join(f"{k} {count[k]}" for k in tied)))
        elif (full := _inside(root, where)) is None:
            man.skipped.append((where, "path escapes the root"))
        elif (image := _find_image(root, full)) is None:
            man.skipped.append((str(full) + ".jpg", "image not found"))
        else:
            label = ranked[0][0]
            raw = "+".join(
                f"{e}:{n}" for e, n in sorted(raws[(style, painting)].items()) if labels(e) == label
            )
            man.items.append(ArtItem(str(image), label, raw, painting, "artemis"))
    return man


def _url_stem(url: str) -> str:
    """``.../images/<artist>/<title>.jpg[!Large.jpg]`` -> ``<artist>_<title>``."""
    parts = url.split("?")[0].rstrip("/").split("/")
    title = parts[-1].split("!")[0]
    title = title.rsplit(".", 1)[0] if "." in title else title
    return f"{parts[-2]}_{title}" if len(parts) >= 2 else title


def load_wikiart_emotions(
    path: str | os.PathLike, *, root: str | os.PathLike, label_map: LabelMap | None = None
) -> Manifest:
    """WikiArt-Emotions TSV: per class, the sum of its mapped ``ImageOnly:`` shares; argmax.

    Works for the 0/1 files (Ag3, Ag4, Ag5) and for the proportions file (All).  Images are
    looked up anywhere below ``root`` by the stem ``<artist>_<title>`` of the ``Image URL``
    (then by ``<ID>``).  Rows with a tie or no mapped emotion are skipped.
    """
    path, root, labels, man = Path(path), Path(root), label_map or LabelMap(), Manifest()
    rows = _read_table(path, ("ID", "Image URL"), delimiter="\t")
    columns = [c for c in (rows[0] if rows else {}) if c.startswith("ImageOnly:")]
    if rows and not columns:
        raise ValueError(f"{path}: missing the 'ImageOnly: <emotion>' columns")
    mapped = {c: labels(c.split(":", 1)[1]) for c in columns}
    index = {p.stem: p for p in reversed(_images(root))}  # first in sorted order wins
    for row in rows:
        scores: Counter = Counter()
        for col, label in mapped.items():
            if label is not None and row[col]:
                scores[label] += float(row[col])
        ranked = [(k, v) for k, v in scores.most_common() if v > 0]
        where = row["Image URL"] or row["ID"]
        if not ranked:
            man.skipped.append((where, "no mapped emotion"))
            continue
        if len(ranked) > 1 and abs(ranked[0][1] - ranked[1][1]) < 1e-9:
            tied = sorted(k for k, v in ranked if abs(v - ranked[0][1]) < 1e-9)
            man.skipped.append(
                (where, "score tie: " + ", ".join(f"{k} {scores[k]:g}" for k in tied))
            )
            continue
        image = index.get(_url_stem(row["Image URL"])) or index.get(row["ID"])
        if image is None:
            man.skipped.append((where, "image not found"))
            continue
        label = ranked[0][0]
        raw = "+".join(
            c.split(":", 1)[1].strip()
            for c, lab in mapped.items()
            if lab == label and row[c] and float(row[c]) > 0
        )
        man.items.append(ArtItem(str(image), label, raw, image.stem, "wikiart-emotions"))
    return man


def load_art_corpus(
    root: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    label_map: LabelMap | None = None,
) -> Manifest:
    """Folder-per-label under ``root``, or the annotation file ``labels`` (kind sniffed from its header).

    ``labels`` may be an ``image,label`` CSV, an ArtEmis CSV or a WikiArt-Emotions TSV;
    images resolve against ``root``.
    """
    if not labels:
        return load_art_folders(root, label_map=label_map)
    labels = Path(labels)
    with open(labels, encoding="utf-8-sig", errors="replace") as fh:  # _read_table checks it
        header = fh.readline()
    if "\t" in header and "ImageOnly:" in header:
        return load_wikiart_emotions(labels, root=root, label_map=label_map)
    if {"art_style", "painting", "emotion"} <= {h.strip() for h in header.split(",")}:
        return load_artemis(labels, root=root, label_map=label_map)
    return load_labels_csv(labels, root=root, label_map=label_map)


def split_by_group(
    items: list[ArtItem],
    *,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> list[ArtItem]:
    """Seeded train/val/test split by ``group``, stratified by label (unlabelled rows too).

    Within each label, groups are shuffled and dealt by ``fractions``; a label with at least
    three groups gets at least one val and one test group.  Sets ``item.split`` in place.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions {fractions} must be >= 0 and sum to 1")
    votes: dict[str, Counter] = defaultdict(Counter)
    for it in items:
        votes[it.group][it.label] += 1
    by_label: dict[str, list[str]] = defaultdict(list)
    for group in sorted(votes):
        by_label[votes[group].most_common(1)[0][0]].append(group)
    split_of: dict[str, str] = {}
    for label, groups in sorted(by_label.items()):
        random.Random(f"{seed}:{label}").shuffle(groups)
        n = len(groups)
        n_val, n_test = (round(n * fractions[1]), round(n * fractions[2]))
        if n >= 3:
            n_val, n_test = (
                max(1, n_val) if fractions[1] else 0,
                max(1, n_test) if fractions[2] else 0,
            )
        for i, group in enumerate(groups):
            split_of[group] = "test" if i < n_test else ("val" if i < n_test + n_val else "train")
    for it in items:
        it.split = split_of[it.group]
    return items
