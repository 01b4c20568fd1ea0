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
    "multipart_field",
    "clean_message",
    "too_large",
]

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


def result_to_json(result: Any) -> dict:
    """The JSON body of ``POST /api/paint`` for a pipeline ``Result``.

    Neighbours carry only their file *name* (never the path on the server).

    >>> from sound2sight.pipeline import Neighbour, Result
    >>> r = Result("sad", {"angry": .1, "happy": .2, "sad": .7}, np.zeros(128),
    ...            [np.zeros((8, 8, 3), np.uint8)], [Neighbour("/a/b.png", "sad", .9,
    ...            np.zeros((4, 4, 3), np.uint8))])
    >>> body = result_to_json(r)
    >>> body["emotion"], body["images"][0][:22], body["neighbours"][0]["name"]
    ('sad', 'data:image/png;base64,', 'b.png')
    """
    return {
        "emotion": result.emotion,
        "probabilities": {k: round(float(v), 6) for k, v in result.probabilities.items()},
        "images": [png_data_url(im) for im in result.images],
        "neighbours": [
            {
                "label": nb.label,
                "score": round(float(nb.score), 4),
                "thumbnail": png_data_url(nb.thumbnail),
                "name": Path(str(nb.path)).name,
            }
            for nb in result.neighbours
        ],
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

    from sound2sight.audio import AudioError

    try:
        with sf.SoundFile(io.BytesIO(data)) as fh:
            return fh.frames / max(fh.samplerate, 1)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        detail = str(exc).split(":")[-1].strip() or "unknown format"
        raise AudioError(
            f"upload: cannot decode audio ({detail}); send WAV, FLAC, OGG or MP3"
        ) from exc


def multipart_field(body: bytes, content_type: str, field: str) -> bytes:
    """The bytes of form field ``field`` in a ``multipart/form-data`` body."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise ClientError(400, "multipart/form-data without a boundary")
    delimiter = b"--" + m.group(1).encode("latin-1")
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):  # closing delimiter
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        name = re.search(rb'name="([^"]*)"', head)
        if name and name.group(1).decode("latin-1") == field:
            return content[:-2] if content.endswith(b"\r\n") else content
    raise ClientError(400, f"multipart upload has no '{field}' field")
