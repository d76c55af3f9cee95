"""Process-level malloc settings: training keeps freed memory, a server hands it back.

Each check runs in a fresh interpreter, so the pytest process keeps its own settings.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from modeltailor._runtime import _libc

pytestmark = pytest.mark.skipif(_libc() is None, reason="glibc malloc only")

CHILD = r"""
import json, threading
import modeltailor  # applies tune_malloc
from modeltailor import _runtime

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

out = {"imported": _runtime.malloc_mode()}
before = rss_mb()
blocks = [b"x" * (4 << 20) for _ in range(64)]  # 256 MB in blocks glibc would normally mmap
del blocks
out["kept_mb"] = rss_mb() - before  # training settings: freed, but still resident
out["released"] = _runtime.release_memory()
out["after_release_mb"] = rss_mb() - before
out["serve"] = [_runtime.serve_malloc(), _runtime.serve_malloc()]
out["mode"] = _runtime.malloc_mode()
out["releasers"] = sum(t.name == "release-memory" for t in threading.enumerate())
print(json.dumps(out))
"""


def test_training_keeps_freed_memory_and_server_mode_hands_it_back():
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=True
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["imported"] == "training"
    assert out["kept_mb"] > 200  # what made `tailor serve` grow (issue 22, item 11)
    assert out["released"] is True
    assert out["after_release_mb"] < 50
    assert out["serve"] == [True, True]  # idempotent
    assert out["mode"] == "server"
    assert out["releasers"] == 1  # one background thread however often it is called
