"""Speech-corpus adapters: native file names -> :class:`~sound2sight.datasets.base.AudioItem`.

Each corpus is one small parser from a file name to ``(raw_label, speaker_id)``; labels go
through :class:`~sound2sight.labels.LabelMap`, and what the map does not know is dropped
and counted in :attr:`Manifest.dropped`.  Names that do not follow the corpus's convention
land in :attr:`Manifest.skipped` with the reason.  Speakers are ``"<CORPUS>:<id>"``, with
``CORPUS`` and ``id`` spelt as in the shared ``folds.csv`` (``RAVDESS:01``, ``CREMA-D:1001``,
``TESS:OAF``, ``SAVEE:DC``).

Layouts (any extension in :data:`sound2sight.voice.audio.AUDIO_EXTENSIONS`, at any depth):

- RAVDESS  ``Actor_NN/03-01-EE-II-SS-RR-NN.wav`` (emotion ``EE``, actor = last field)
- CREMA-D  ``<actor>_<sentence>_<EMO>_<level>.wav`` (level may be ``X``, as in ``1040_ITH_SAD_X``)
- TESS     ``{OAF,YAF}_<word>_<emotion>.wav`` (emotion = last word; ``ps`` = pleasant surprise)
- SAVEE    ``<SPK>_<code><nn>.wav`` (codes a, d, f, h, n, sa, su) or ``<SPK>/<code><nn>.wav``
- folder   ``root/<label>/<file>``: speaker = the file name's prefix before the first ``_``
  (the whole stem when there is none); or ``root/<label>/<speaker>/<file>``: speaker = that
  subfolder.  The corpus name is the root folder's name.

>>> parse_crema_d(Path("1040_ITH_SAD_X.mp3")), parse_savee(Path("DC_sa03.flac"))
(('SAD', '1040'), ('sa', 'DC'))
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sound2sight.cache import file_sha256
from sound2sight.datasets.base import AudioItem, Manifest
from sound2sight.labels import LabelMap
from sound2sight.voice.audio import AUDIO_EXTENSIONS

__all__ = [
    "CORPORA",
    "parse_ravdess",
    "parse_crema_d",
    "parse_tess",
    "parse_savee",
    "load_corpus_folder",
    "load_label_folders",
    "load_audio_corpus",
    "find_duplicates",
]

log = logging.getLogger(__name__)


class CorpusNameError(ValueError):
    """A file name that does not follow its corpus's convention."""


_RAVDESS = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_CREMA = re.compile(r"^(\d{4})_([A-Za-z]{3})_([A-Za-z]{3})_([A-Za-z]{1,2})$")
_SAVEE = re.compile(r"^(?:([A-Za-z]{2})_)?(sa|su|a|d|f|h|n)(\d{2})$")


def parse_ravdess(path: Path) -> tuple[str, str]:
    """``03-01-05-01-02-01-12.wav`` -> ``('05', '12')`` (emotion code, actor)."""
    m = _RAVDESS.match(path.stem)
    if not m:
        raise CorpusNameError(
            "not a RAVDESS name (expected 7 two-digit fields, e.g. 03-01-05-01-02-01-12)"
        )
    return m.group(3), m.group(7)


def parse_crema_d(path: Path) -> tuple[str, str]:
    """``1001_DFA_ANG_XX.mp3`` -> ``('ANG', '1001')`` (emotion code, actor)."""
    m = _CREMA.match(path.stem)
    if not m:
        raise CorpusNameError("not a CREMA-D name (expected <actor>_<sentence>_<EMO>_<level>)")
    return m.group(3).upper(), m.group(1)


def parse_tess(path: Path) -> tuple[str, str]:
    """``OAF_back_angry.wav`` -> ``('angry', 'OAF')`` (last word, speaker)."""
    parts = path.stem.split("_")
    if len(parts) < 3 or not all(parts):
        raise CorpusNameError("not a TESS name (expected <speaker>_<word>_<emotion>)")
    return parts[-1], parts[0].upper()


def parse_savee(path: Path) -> tuple[str, str]:
    """``DC_sa03.wav`` (or ``DC/sa03.wav``) -> ``('sa', 'DC')`` (emotion code, speaker)."""
    m = _SAVEE.match(path.stem)
    if not m:
        raise CorpusNameError(
            "not a SAVEE name (expected <SPK>_<code><nn>, code one of a d f h n sa su, e.g. DC_sa03)"
        )
    speaker = m.group(1) or path.parent.name
    if not re.fullmatch(r"[A-Za-z]{2}", speaker):
        raise CorpusNameError(
            "SAVEE name without a speaker (expected <SPK>_<code><nn> or <SPK>/<code><nn>)"
        )
    return m.group(2), speaker.upper()


@dataclass(frozen=True)
class CorpusLayout:
    name: str  # corpus column of folds.csv, e.g. "CREMA-D"
    parse: Callable[
        [Path], tuple[str, str]
    ]  # file -> (raw label, speaker id); raises CorpusNameError


CORPORA: dict[str, CorpusLayout] = {
    "ravdess": CorpusLayout("RAVDESS", parse_ravdess),
    "crema_d": CorpusLayout("CREMA-D", parse_crema_d),
    "tess": CorpusLayout("TESS", parse_tess),
    "savee": CorpusLayout("SAVEE", parse_savee),
}


def _key(name: str) -> str:
    """Folder name -> adapter key: ``CREMA-D`` / ``crema_d`` / ``CremaD`` -> ``cremad``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_FOLDER = {_key(k): k for k in CORPORA}


def _audio_files(root: Path) -> list[Path]:
    """Every audio file below ``root`` (sorted, hidden entries excluded)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS):
                out.append(Path(dirpath) / name)
    return out


def _item(path: Path, raw: str, speaker: str, corpus: str, labels: LabelMap, man: Manifest) -> None:
    label = labels(raw)
    if label is None:
        man.dropped[raw] += 1
    else:
        man.items.append(AudioItem(str(path), label, raw, f"{corpus}:{speaker}", corpus))


def load_corpus_folder(
    root: str | os.PathLike, fmt: str, *, label_map: LabelMap | None = None
) -> Manifest:
    """Parse one corpus folder (``fmt`` in :data:`CORPORA`) into a manifest.

    Examples
    --------
    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> for n in ("OAF_back_angry", "YAF_dog_ps", "bad"): _ = (d / f"{n}.wav").write_bytes(b"")
    >>> m = load_corpus_folder(d, "tess"); len(m), dict(m.dropped), len(m.skipped)
    (1, {'ps': 1}, 1)
    """
    if fmt not in CORPORA:
        raise ValueError(f"unknown corpus format {fmt!r} (one of {', '.join(CORPORA)})")
    root, layout, labels = Path(root), CORPORA[fmt], label_map or LabelMap()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: corpus folder not found")
    man = Manifest()
    for path in _audio_files(root):
        try:
            raw, speaker = layout.parse(path)
        except CorpusNameError as exc:
            man.skipped.append((str(path), str(exc)))
            continue
        _item(path, raw, speaker, layout.name, labels, man)
    log.info(
        "%s: %d clips, %d dropped, %d skipped",
        layout.name,
        len(man),
        sum(man.dropped.values()),
        len(man.skipped),
    )
    return man


def load_label_folders(root: str | os.PathLike, *, label_map: LabelMap | None = None) -> Manifest:
    """Folder-per-label layout ``root/<label>/[<speaker>/]<file>`` (see the module docstring).

    Examples
    --------
    >>> import tempfile; d = Path(tempfile.mkdtemp()) / "demo"
    >>> for rel in ("sad/spk1_a.wav", "calm/spk2_b.wav", "angry/spk3/x.wav"):
    ...     (d / rel).parent.mkdir(parents=True, exist_ok=True); _ = (d / rel).write_bytes(b"")
    >>> m = load_label_folders(d); [(i.label, i.speaker) for i in m.items], dict(m.dropped)
    ([('angry', 'demo:spk3'), ('sad', 'demo:spk1')], {'calm': 1})
    """
    root, labels = Path(root), label_map or LabelMap()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: corpus folder not found")
    corpus, man = root.resolve().name, Manifest()
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in _audio_files(folder):
            rel = path.relative_to(folder).parts
            if len(rel) > 2:
                man.skipped.append((str(path), "too deep: expected <label>/[<speaker>/]<file>"))
                continue
            speaker = rel[0] if len(rel) == 2 else path.stem.split("_", 1)[0]
            _item(path, folder.name, speaker, corpus, labels, man)
    loose = [p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(AUDIO_EXTENSIONS)]
    man.skipped.extend((str(p), "not inside a <label>/ folder") for p in sorted(loose))
    return man


def load_audio_corpus(
    root: str | os.PathLike, *, fmt: str = "auto", label_map: LabelMap | None = None
) -> Manifest:
    """Build the manifest of a speech corpus folder.

    Parameters
    ----------
    root : path-like
        A folder holding RAVDESS / CREMA-D / TESS / SAVEE subfolders (any subset; other
        subfolders are ignored), one such corpus folder, or a folder-per-label corpus.
    fmt : str
        ``auto`` (detect as above) or one of ``ravdess``, ``crema_d``, ``tess``, ``savee``,
        ``folder``.
    label_map : LabelMap | None
        Normalisation map (default :class:`LabelMap`).

    Returns
    -------
    Manifest
        Items sorted by path; ``dropped``, ``skipped`` filled.

    Examples
    --------
    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> (d / "RAVDESS" / "Actor_01").mkdir(parents=True)
    >>> _ = (d / "RAVDESS/Actor_01/03-01-05-01-01-01-01.wav").write_bytes(b"")
    >>> [(i.label, i.speaker) for i in load_audio_corpus(d).items]
    [('angry', 'RAVDESS:01')]
    """
    root, labels = Path(root), label_map or LabelMap()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: audio corpus folder not found")
    if fmt == "folder":
        return load_label_folders(root, label_map=labels)
    if fmt != "auto":
        return load_corpus_folder(root, fmt, label_map=labels)
    if _key(root.resolve().name) in _BY_FOLDER:
        return load_corpus_folder(root, _BY_FOLDER[_key(root.resolve().name)], label_map=labels)
    subdirs = {_key(p.name): p for p in sorted(root.iterdir()) if p.is_dir()}
    found = {_BY_FOLDER[k]: p for k, p in subdirs.items() if k in _BY_FOLDER}
    if not found:
        return load_label_folders(root, label_map=labels)
    others = sorted(p.name for k, p in subdirs.items() if k not in _BY_FOLDER)
    if others:
        log.info("%s: ignoring non-corpus folder(s) %s", root, ", ".join(others))
    man = Manifest()
    for fmt_name in CORPORA:  # fixed order: RAVDESS, CREMA-D, TESS, SAVEE
        if fmt_name in found:
            man.extend(load_corpus_folder(found[fmt_name], fmt_name, label_map=labels))
    return man


def find_duplicates(
    items: Sequence[AudioItem], *, keys: Sequence[str | None] | None = None
) -> list[dict]:
    """Groups of byte-identical files (SHA-256), flagging groups whose labels disagree.

    Parameters
    ----------
    items : sequence of AudioItem
    keys : sequence of (str | None) | None
        Precomputed SHA-256 per item (e.g. ``MelBatch.keys``); ``None`` entries are ignored.
        Hashed here (in threads) when not given.

    Returns
    -------
    list of dict
        ``{"sha256", "paths", "labels", "raw_labels", "speakers", "conflict", "cross_speaker"}``
        per group of two or more identical files, conflicting groups first.

    Examples
    --------
    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> for n in ("a", "b"): _ = (d / n).write_bytes(b"same")
    >>> its = [AudioItem(str(d / "a"), "sad", "04", "X:1", "X"), AudioItem(str(d / "b"), "happy", "03", "X:2", "X")]
    >>> [g["conflict"] for g in find_duplicates(its)]
    [True]
    """
    if keys is None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            keys = list(pool.map(lambda it: _safe_hash(it.path), items))
    groups: dict[str, list[AudioItem]] = defaultdict(list)
    for it, key in zip(items, keys, strict=True):
        if key is not None:
            groups[key].append(it)
    out = []
    for key, its in groups.items():
        if len(its) > 1:
            out.append(
                {
                    "sha256": key,
                    "paths": [it.path for it in its],
                    "labels": [it.label for it in its],
                    "raw_labels": [it.raw_label for it in its],
                    "speakers": [it.speaker for it in its],
                    "conflict": len({it.label for it in its}) > 1,
                    "cross_speaker": len({it.speaker for it in its}) > 1,
                }
            )
    out.sort(key=lambda g: (not g["conflict"], g["paths"][0]))
    for g in out:
        if g["conflict"]:
            log.warning(
                "identical audio with different labels: %s",
                ", ".join(
                    f"{Path(p).name} ({lab})"
                    for p, lab in zip(g["paths"], g["labels"], strict=True)
                ),
            )
    return out


def _safe_hash(path: str) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None
