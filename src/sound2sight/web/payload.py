"""What goes over the wire: request bodies in, JSON results and client errors out.

>>> try:
...     probe_seconds(b"not audio")
... except ValueError as exc:  # AudioError
...     print("cannot decode audio" in str(exc))
True
>>> clean_message("/home/me/run/x.wav: no speech detected")
'<file>: no speech detected'
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ClientError",
    "png_data_url",
    "result_to_json",
    "probe_seconds",
    "artwork_credit",
    "neighbour_to_json",
    "clean_message",
    "too_large",
]

_ARTIST_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)+$")  # WikiArt: "first-last", lower case
_PATH_RE = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[/\\](?:[\w.\- ]+[/\\])*[\w.\-]+")


class ClientError(Exception):
    """An HTTP error the server answers with ``{"error": message}`` and ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def png_data_url(img: np.ndarray) -> str:
    """``(H, W, 3)`` uint8 -> ``data:image/png;base64,...``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def artwork_credit(name: str) -> dict[str, str | None]:
    """Artist and title from a WikiArt-style file name ``<artist-name>_<title-words>.jpg``.

    Hyphens become spaces and words are capitalised; a name without a hyphenated artist
    prefix (e.g. a procedural demo painting) gives ``artist=None`` and the name as title.

    >>> artwork_credit("arshile-gorky_the-liver-is-the-cock-s-comb.jpg")
    {'artist': 'Arshile Gorky', 'title': 'The Liver Is The Cock S Comb'}
    >>> artwork_credit("art_sad_0003.png")
    {'artist': None, 'title': 'Art Sad 0003'}
    """
    stem = Path(name).stem
    artist, sep, title = stem.partition("_")

    def words(s: str) -> str:
        return " ".join(w.capitalize() for w in re.split(r"[-_\s]+", s) if w)

    if sep and title and _ARTIST_RE.match(artist):
        return {"artist": words(artist), "title": words(title)}
    return {"artist": None, "title": words(stem)}


def neighbour_to_json(nb: Any) -> dict:
    """One ``Neighbour`` as JSON: label, score, thumbnail, file *name* (never its path), credit."""
    name = Path(str(nb.path)).name
    h, w = np.asarray(nb.thumbnail).shape[:2]
    return {
        "label": nb.label,
        "score": round(float(nb.score), 4),
        "thumbnail": png_data_url(nb.thumbnail),
        "thumbnail_size": [int(w), int(h)],
        "name": name,
        **artwork_credit(name),
    }


def result_to_json(result: Any) -> dict:
    """The JSON body of ``POST /api/paint`` for a pipeline ``Result``.

    Neighbours carry only their file *name* (never the path on the server); sizes are
    ``[width, height]`` in pixels, as generated.

    >>> from sound2sight.pipeline import Neighbour, Result
    >>> r = Result("sad", {"angry": .1, "happy": .2, "sad": .7}, np.zeros(128),
    ...            [np.zeros((8, 8, 3), np.uint8)], [Neighbour("/a/b.png", "sad", .9,
    ...            np.zeros((4, 4, 3), np.uint8))], uncertain=("sad", "happy"))
    >>> body = result_to_json(r)
    >>> body["emotion"], body["images"][0][:22], body["neighbours"][0]["name"]
    ('sad', 'data:image/png;base64,', 'b.png')
    >>> body["image_sizes"], body["uncertain"], body["image_neighbours"], body["provenance"]
    ([[8, 8]], ['sad', 'happy'], [], {})
    """
    uncertain = getattr(result, "uncertain", None)
    return {
        "emotion": result.emotion,
        "probabilities": {k: round(float(v), 6) for k, v in result.probabilities.items()},
        "uncertain": list(uncertain) if uncertain else None,
        "images": [png_data_url(im) for im in result.images],
        "image_sizes": [[int(im.shape[1]), int(im.shape[0])] for im in result.images],
        "neighbours": [neighbour_to_json(nb) for nb in result.neighbours],
        "image_neighbours": [
            [neighbour_to_json(nb) for nb in row]
            for row in getattr(result, "image_neighbours", None) or []
        ],
        "provenance": {
            str(k): str(v) for k, v in (getattr(result, "provenance", None) or {}).items()
        },
        "n_windows": int(result.n_windows),
        "timings_ms": {k: round(float(v), 2) for k, v in result.timings_ms.items()},
    }


def too_large(length: int, limit: int) -> str:
    """The 413 message."""
    return f"upload too large: {length / 1e6:.1f} MB, the limit is {limit / 1e6:.1f} MB"


def clean_message(message: str) -> str:
    """Drop file system paths from a message shown to a client."""
    return _PATH_RE.sub("<file>", message)[:500]


def probe_seconds(data: bytes) -> float:
    """Duration of encoded audio from its header; raises ``AudioError`` when undecodable."""
    import soundfile as sf

    from sound2sight.voice.audio import AudioError

    try:
        with sf.SoundFile(io.BytesIO(data)) as fh:
            return fh.frames / max(fh.samplerate, 1)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        detail = str(exc).split(":")[-1].strip() or "unknown format"
        raise AudioError(
            f"upload: cannot decode audio ({detail}); send WAV, FLAC, OGG or MP3"
        ) from exc
