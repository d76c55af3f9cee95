"""Near-duplicate threshold for `tailor doctor`: cosine between an item and a modified copy
(re-encoded + resized JPEG; text with changed case/whitespace; clip with changed gain) versus
the cosine of each original item with its nearest *other* original item, per modality, on the
bundled examples. Prints the distributions the threshold in doctor/ is chosen from.

    PYTHONPATH=src python bench/bench_doctor_threshold.py [--out /tmp/doctor-threshold]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from modeltailor.cli import example_folder
from modeltailor.doctor.duplicates import nearest_other, normalise
from modeltailor.doctor.embed import embed_dataset
from modeltailor.modalities import modality_for_path

EXAMPLES = example_folder().parent


def image_copies(dst: Path) -> list[tuple[Path, Path]]:
    from PIL import Image

    shutil.copytree(EXAMPLES / "fashion", dst / "images")
    pairs = []
    for k, f in enumerate(sorted((dst / "images").glob("*/*.png"))[::8]):
        with Image.open(f) as im:
            size = (im.width * 3 // 2, im.height * 3 // 2) if k % 2 else (im.width * 3 // 4,) * 2
            copy = f.with_name(f.stem + "_copy.jpg")
            im.convert("RGB").resize(size, Image.BICUBIC).save(copy, quality=70 + 5 * (k % 5))
        pairs.append((f, copy))
    return pairs


def text_copies(dst: Path, name: str) -> list[tuple[str, str]]:
    import csv

    src = EXAMPLES / "text" / name
    rows = list(csv.DictReader(src.open(encoding="utf-8")))
    extra = []
    for k, r in enumerate(rows[::3]):
        t = r["text"]
        spaced = "  " + t.replace(" ", "  ") + " "
        t2 = t.upper() if k % 3 == 0 else (spaced if k % 3 == 1 else t.lower())
        extra.append({"text": t2, "label": r["label"]})
    out = dst / name
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, ["text", "label"])
        w.writeheader()
        w.writerows(rows + extra)
    return [(_squash(r["text"]), _squash(e["text"])) for r, e in zip(rows[::3], extra, strict=True)]


def _squash(text: str) -> str:
    return " ".join(text.split())


def audio_copies(dst: Path) -> list[tuple[Path, Path]]:
    import soundfile as sf

    shutil.copytree(EXAMPLES / "audio" / "digits", dst / "audio")
    pairs = []
    for k, f in enumerate(sorted((dst / "audio").glob("*/*.wav"))[::4]):
        wave, rate = sf.read(f)
        gain = (0.5, 2.0, 0.25)[k % 3]
        copy = f.with_name(f.stem + "_gain.wav")
        sf.write(copy, np.clip(wave * gain, -1, 1), rate)
        pairs.append((f, copy))
    return pairs


def measure(root: Path, pairs, key, centre: bool) -> dict:
    modality = modality_for_path(root)
    data = modality.load(root, {})
    x, bad, name = embed_dataset(data, modality, None, verbose=False)
    assert not bad, bad
    if centre:
        x = x - x.mean(axis=0)
    x = normalise(x)
    index = {key(item): i for i, item in enumerate(data.items)}
    copy_sims = np.array([float(x[index[a]] @ x[index[b]]) for a, b in pairs])
    copies = {index[b] for _, b in pairs}
    originals = np.array([i for i in range(len(x)) if i not in copies])
    nn = nearest_other(x[originals])
    return {"backbone": name, "copies": copy_sims, "nearest_distinct": nn}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tmp = Path(args.out or tempfile.mkdtemp(prefix="doctor-threshold-"))
    tmp.mkdir(parents=True, exist_ok=True)
    cases = {
        "images (JPEG re-encoded, resized)": (tmp / "images", image_copies(tmp), Path),
        "audio (gain x0.25-x2)": (tmp / "audio", audio_copies(tmp), Path),
    }
    for name in ("tickets_en.csv", "tickets_ja.csv"):
        (tmp / name.split(".")[0]).mkdir(exist_ok=True)
        pairs = text_copies(tmp / name.split(".")[0], name)
        cases[f"text {name} (case/whitespace)"] = (
            tmp / name.split(".")[0] / name, pairs, lambda item: _squash(item.text)
        )
    for what, (root, pairs, key) in cases.items():
        for centre in (False, True):
            r = measure(root, pairs, key, centre)
            c, n = r["copies"], r["nearest_distinct"]
            q = np.quantile(n, [0.5, 0.9, 0.99, 1.0])
            print(
                f"{'centred ' if centre else ''}{what} on {r['backbone']}: copies min "
                f"{c.min():.4f} median {np.median(c):.4f} "
                f"(n={len(c)}); nearest distinct item median {q[0]:.4f} p90 {q[1]:.4f} "
                f"p99 {q[2]:.4f} max {q[3]:.4f} (n={len(n)})"
            )


if __name__ == "__main__":
    main()
