"""Audio benchmark on the Free Spoken Digit Dataset (issue 6).

    python bench/bench_audio.py [--data ../shared/data/fsdd] [--out bench/results]
        [--protocols standard,speaker] [--trials baseline,probe-tiny,...] [--speakers a,b]

Two protocols, the test part never used for training, early stopping or model selection
(each trial holds out validation data from its training part, seed 0, for that: 10%
stratified in the standard protocol, one of the five training speakers in the speaker one):
- `standard`: index 0-4 of every speaker and digit is the test set (the usual FSDD split);
- `speaker`: train on five speakers, test on the sixth, for each speaker; mean and worst.

Per trial: accuracy, macro-F1, fit seconds, clips/s. The bare encoder pass (decode + windows +
the frozen encoder, no cache, no head) over the same training clips is timed in the same run,
so the linear probe's end-to-end overhead is a ratio measured on one machine state: the
probe's first fit runs on an empty embedding cache. One trial at a time (2 cores). Prints one
JSON line per measurement and appends them to `<out>/audio.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: name -> (strategy, backbone); backbone None = the toolkit's choice for the strategy.
TRIALS = {
    "baseline": ("baseline", None),
    "probe-default": ("linear-probe", None),  # what a plain `tailor train clips/` uses
    "probe-tiny": ("linear-probe", "whisper-tiny-en-encoder"),
    "probe-base": ("linear-probe", "whisper-base-encoder"),
    "probe-speech-embedding": ("linear-probe", "speech-embedding"),
    "fine-tune-tiny": ("fine-tune", "whisper-tiny-en-encoder"),
    "fine-tune-base": ("fine-tune", "whisper-base-encoder"),
    "scratch": ("scratch", None),
}


def emit(out: Path, row: dict) -> None:
    print(json.dumps(row), flush=True)
    with (out / "audio.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def index_of(path: Path) -> int:
    return int(re.match(r"\d+_[a-z]+_(\d+)\.wav$", path.name).group(1))


def speaker_of(path: Path) -> str:
    return re.match(r"\d+_([a-z]+)_\d+\.wav$", path.name).group(1)


def protocols(data, which: list[str], speakers: list[str] | None):
    """(protocol, fold name, train part, test part) in order."""
    if "standard" in which:
        test = [i for i, p in enumerate(data.items) if index_of(p) <= 4]
        train = [i for i, p in enumerate(data.items) if index_of(p) > 4]
        train_part, test_part = data.subset(train), data.subset(test)
        train_part.groups = test_part.groups = None  # every speaker on both sides, as usual
        yield "standard", "index 0-4", train_part, test_part
    if "speaker" in which:
        names = sorted({speaker_of(p) for p in data.items})
        for s in speakers or names:
            test = [i for i, p in enumerate(data.items) if speaker_of(p) == s]
            train = [i for i, p in enumerate(data.items) if speaker_of(p) != s]
            yield "speaker", s, data.subset(train), data.subset(test)


def bare_pass(backbone: str, train, window: float) -> dict:
    """Decode + window + frozen encoder over `train`, nothing cached, no head."""
    from dataclasses import replace

    import torch

    from modeltailor.backbones import get_backbone
    from modeltailor.backbones.model import TailoredModel
    from modeltailor.data.audio import _CACHE
    from modeltailor.training.inputs import pooled_outputs

    spec = get_backbone(backbone)
    spec = replace(spec, preprocessing=replace(spec.preprocessing, window_seconds=window))
    model = TailoredModel(spec.build(0)).eval()
    _CACHE.items.clear()
    _CACHE.used = 0
    started = time.perf_counter()
    with torch.inference_mode():
        rows, _ = pooled_outputs(
            model.embed, model.net.input_pipeline(), list(train.items), 32, 0, {}
        )
    seconds = time.perf_counter() - started
    rate = len(rows) / seconds
    return {"seconds": round(seconds, 2), "clips": len(rows), "clips_per_second": round(rate, 1)}


def run_trial(name: str, train, test, epochs: int | None) -> tuple[dict, object]:
    from modeltailor import AudioClassifier
    from modeltailor.data.audio import _CACHE

    strategy, backbone = TRIALS[name]
    part, val, _ = train.split(0.9, 0.1, 0.0, seed=0)
    _CACHE.items.clear()  # every trial decodes its clips itself
    _CACHE.used = 0
    started = time.perf_counter()
    clf = AudioClassifier(backbone, strategy, verbose=False, epochs=epochs).fit(part, val)
    fit_s = time.perf_counter() - started
    metrics, predicted = clf.evaluate(test, record=False, return_predictions=True)
    info = clf.fit_info_
    row = {
        "trial": name,
        "strategy": strategy,
        "backbone": clf.config()["backbone"],
        "window_seconds": clf.preprocessing_.window_seconds,
        "n_train": len(part),
        "n_val": len(val),
        "n_test": len(test),
        "accuracy": round(metrics["accuracy"], 4),
        "macro_f1": round(metrics["macro_f1"], 4),
        "fit_seconds": round(fit_s, 1),
        "train_clips_per_second": round(len(part) / fit_s, 1),
        "kept": (info.get("head_init") or {}).get("kept"),
        "validation": (info.get("head_init") or {}).get("validation"),
        "epochs_run": info.get("epochs_run"),
        "errors": misclassified(predicted, clf.classes_),
    }
    return row, clf


def misclassified(predicted: dict, classes: list[str], most: int = 12) -> list[str]:
    """`file: true -> predicted (p)` for the first `most` test clips the model got wrong:
    on the nearly solved standard split the errors are a handful of clips worth listening to."""
    rows = []
    for item, label, p in zip(
        predicted["items"], predicted["labels"], predicted["proba"], strict=True
    ):
        guess = int(np.argmax(p))
        if guess != label:
            rows.append(f"{Path(item).name}: {classes[label]} -> {classes[guess]} ({p[guess]:.2f})")
    return rows[:most]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fsdd"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--protocols", default="standard,speaker")
    p.add_argument("--trials", default="baseline,probe-tiny,probe-base,probe-speech-embedding")
    p.add_argument("--speakers", help="speaker folds to run (default: all six)")
    p.add_argument("--epochs", type=int, help="cap the trained strategies' epochs")
    p.add_argument("--bare", default="whisper-tiny-en-encoder", help="encoders to time bare")
    args = p.parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"{args.data}: FSDD not found", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # An empty embedding cache: the probe's first fit pays for its embeddings, as a user's does.
    os.environ["MODELTAILOR_CACHE"] = tempfile.mkdtemp(prefix="bench-audio-cache-")
    sys.path.insert(0, str(ROOT / "src"))
    from modeltailor import load_audio_folder

    # Speaker groups: in the speaker protocol validation is a held-out speaker too, so early
    # stopping and LP-FT's keep rule judge unseen voices, not more clips of known ones.
    data = load_audio_folder(args.data, group_by=r"_([a-z]+)_")
    emit(out, {"event": "data", "clips": len(data), "skipped": len(data.skipped)})
    trials = [t for t in args.trials.split(",") if t]
    speakers = args.speakers.split(",") if args.speakers else None
    per: dict[tuple[str, str], list[float]] = {}
    bare_done: set[str] = set()
    for protocol, fold, train, test in protocols(data, args.protocols.split(","), speakers):
        for name in trials:
            row, clf = run_trial(name, train, test, args.epochs)
            row = {"protocol": protocol, "fold": fold, **row}
            emit(out, row)
            per.setdefault((protocol, name), []).append(row["accuracy"])
            backbone = row["backbone"]
            if TRIALS[name][0] == "linear-probe" and backbone not in bare_done:
                if backbone in args.bare.split(","):
                    # train = the probe's training + validation clips: both are embedded
                    bare = bare_pass(backbone, train, row["window_seconds"])
                    bare_done.add(backbone)
                    emit(
                        out,
                        {
                            "event": "bare encoder pass",
                            "backbone": backbone,
                            **bare,
                            "probe_fit_seconds": row["fit_seconds"],
                            "probe_over_bare": round(row["fit_seconds"] / bare["seconds"], 3),
                        },
                    )
    for (protocol, name), accs in per.items():
        emit(
            out,
            {
                "event": "summary",
                "protocol": protocol,
                "trial": name,
                "folds": len(accs),
                "mean_accuracy": round(float(np.mean(accs)), 4),
                "worst_accuracy": round(float(np.min(accs)), 4),
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
