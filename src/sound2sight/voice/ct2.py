"""Read a CTranslate2 ``model.bin`` without CTranslate2.

The layout (binary version 6, written by ``ctranslate2.specs.ModelSpec._serialize``):
``uint32`` version, a string (``uint16`` length including the NUL, UTF-8 bytes, NUL) naming
the spec, ``uint32`` revision, ``uint32`` variable count; then per variable its name, a
``uint8`` rank, ``rank`` ``uint32`` dimensions, a ``uint8`` dtype id (float32, int8, int16,
int32, float16, bfloat16), a ``uint32`` byte count and the raw little-endian bytes; last a
``uint32`` alias count and ``(alias, target)`` name pairs.

>>> import io, struct
>>> def s(t): return struct.pack("H", len(t) + 1) + t.encode() + b"\\0"
>>> blob = (struct.pack("I", 6) + s("WhisperSpec") + struct.pack("II", 3, 1) + s("w")
...         + struct.pack("B", 2) + struct.pack("II", 2, 3) + struct.pack("B", 0)
...         + struct.pack("I", 24)
...         + np.arange(6, dtype=np.float32).tobytes() + struct.pack("I", 0))
>>> spec = parse_ct2(blob, name="demo")
>>> spec.name, spec.variables["w"].shape
('WhisperSpec', (2, 3))
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CT2Error", "CT2Model", "parse_ct2"]

_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class CT2Error(ValueError):
    """A CTranslate2 file that cannot be read; the message names the file."""


@dataclass
class CT2Model:
    name: str  # spec name, e.g. "WhisperSpec"
    revision: int  # spec revision
    version: int  # binary format version
    variables: dict[str, np.ndarray] = field(default_factory=dict)  # name -> array (views)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> variable name


def parse_ct2(data: bytes | memoryview, *, name: str) -> CT2Model:
    """Parse the bytes of a ``model.bin``; arrays are zero-copy views into ``data``.

    Raises
    ------
    CT2Error
        Truncated or malformed data, an unknown dtype or a version this reader does not know.
    """
    buf = memoryview(data)
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(buf):
            raise CT2Error(f"{name}: truncated CTranslate2 file (ends at byte {len(buf)})")
        out = struct.unpack_from(fmt, buf, pos)
        pos += size
        return out if len(out) > 1 else out[0]

    def string() -> str:
        nonlocal pos
        n = take("H")
        if n == 0 or pos + n > len(buf):
            raise CT2Error(f"{name}: truncated or malformed name at byte {pos}")
        text = bytes(buf[pos : pos + n - 1]).decode("utf-8", errors="replace")
        pos += n
        return text

    version = take("I")
    if not 3 <= version <= 6:
        raise CT2Error(f"{name}: not a CTranslate2 model.bin (binary version {version})")
    spec, revision, n_vars = string(), take("I"), take("I")
    model = CT2Model(name=spec, revision=revision, version=version)
    for _ in range(n_vars):
        var = string()
        rank = take("B")
        shape = tuple(take("I") for _ in range(rank))
        type_id, n_bytes = take("B"), take("I")
        if type_id >= len(_DTYPES):
            raise CT2Error(f"{name}: variable {var!r} has unknown dtype id {type_id}")
        if pos + n_bytes > len(buf):
            raise CT2Error(f"{name}: truncated CTranslate2 file (variable {var!r} cut short)")
        dtype = _DTYPES[type_id]
        raw = buf[pos : pos + n_bytes]
        pos += n_bytes
        if dtype == "bfloat16":  # numpy has no bfloat16: widen to float32 via the high bits
            arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=dtype)
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise CT2Error(f"{name}: variable {var!r}: {arr.size} values for shape {shape}")
        model.variables[var] = arr.reshape(shape)
    if version >= 5:
        for _ in range(take("I")):
            alias = string()
            model.aliases[alias] = string()
    return model
