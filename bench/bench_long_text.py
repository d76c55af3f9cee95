"""Long-text benchmark (issue 22): linear-probe on data holding one 5 MB text.

Before the window cap this took 660 s and 3.3 GB; a text is now read as at most
`max_windows` windows spread over it. Prints one JSON line: fit seconds, peak RSS, windows.

    python bench/bench_long_text.py [--megabytes 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import modeltailor  # noqa: F401  (applies the malloc fix first)
from modeltailor import TextClassifier, load_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--megabytes", type=float, default=5.0)
    args = ap.parse_args()
    words = "the invoice for the parcel was sent twice and nobody answered my e-mail "
    huge = (words * int(args.megabytes * 1e6 / len(words) + 1))[: int(args.megabytes * 1e6)]
    rows = ["text,label"] + [f"short note number {i} about a parcel,a" for i in range(10)]
    rows += [f"another short note {i} about an invoice,b" for i in range(9)] + [f"{huge},b"]
    folder = Path(tempfile.mkdtemp(prefix="bench-long-text-"))
    (folder / "long.csv").write_text("\n".join(rows), encoding="utf-8")
    data = load_text(folder / "long.csv")
    started = time.perf_counter()
    clf = TextClassifier(backbone="minilm-l6", verbose=False).fit(data)
    seconds = time.perf_counter() - started
    long = clf.fit_info_["long_texts"]
    print(json.dumps({
        "bench": "long text linear-probe",
        "megabytes": args.megabytes,
        "fit_seconds": round(seconds, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "max_windows": long["max_windows"],
        "texts_over_max_windows": long["training_texts_over_max_windows"],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
