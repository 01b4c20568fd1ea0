"""Atomic writes and safe loading.

Every file the project writes goes to a temporary sibling first and is moved into
place with :func:`os.replace`, so a crash never leaves a half-written file behind.
Checkpoints load with ``torch.load(..., weights_only=True)``, which refuses pickles
that would run code.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "atomic_save_npy",
    "safe_torch_load",
]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600 files; results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text (file names that are not UTF-8 keep their raw bytes)."""
    return atomic_write_bytes(path, text.encode("utf-8", errors="surrogateescape"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_save_npy(path: str | os.PathLike, array) -> Path:
    """Atomically save one numpy array in ``.npy`` format."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file, then rename into place."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def safe_torch_load(path: str | os.PathLike, *, map_location: str = "cpu") -> Any:
    """Load a checkpoint with ``weights_only=True``.

    Raises
    ------
    ValueError
        Naming the file, when it is not a loadable checkpoint (corrupt, truncated, or a
        pickle that would execute code).
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise  # their messages already name the file
    except pickle.UnpicklingError as exc:  # torch's own text suggests weights_only=False: not here
        why = (str(exc).split("WeightsUnpickler error:", 1)[-1].strip().splitlines() or [""])[0]
        raise ValueError(
            f"{path}: refused to load: the pickle holds more than tensors and plain containers "
            f"and could run code ({why.split('. Please')[0]})"
        ) from exc
    except Exception as exc:  # truncated or corrupt: OSError, IndexError, RuntimeError, ...
        raise ValueError(
            f"{path}: not a safe, loadable checkpoint, corrupt or truncated "
            f"({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else 'empty'})"
        ) from exc
