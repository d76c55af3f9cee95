"""`tailor`: the command line, a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modeltailor.defaults import DEFAULT_AUDIO_BACKBONE, DEFAULT_IMAGE_BACKBONE, DEFAULT_STRATEGY
from modeltailor.errors import ModelTailorError
from modeltailor.modalities import Modality, get_modality, list_modalities, modality_for_path
from modeltailor.modalities.base import AUGMENT_LEVELS

# Piped output (files, tests, CI logs) gets wide tables instead of rich's 80 columns.
_WIDTH = max(shutil.get_terminal_size((140, 24)).columns, 100)
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ModelTailorError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted: finished checkpoints are kept; add --resume to continue")
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tailor",
        description="Tailor a pretrained model to your own labelled data, offline.",
    )
    sub = p.add_subparsers(title="commands")

    t = sub.add_parser(
        "train",
        help="train on images or audio clips (a folder per class) or texts (CSV/TSV/JSONL, "
        ".txt folders)",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the augmentation table
    )
    t.add_argument(
        "data",
        help="images or audio clips: <class>/<files> (or train|val|test/<class>/...); text: a "
        ".csv/.tsv/.jsonl file, train.csv+val.csv+test.csv, or <class>/<files>.txt",
    )
    t.add_argument(
        "--exclude",
        metavar="FILE",
        help="leave out the items listed in FILE, one per line (e.g. the exclude.txt "
        "`tailor doctor` writes), before splitting; the files themselves are not touched",
    )
    _add_training_options(t)
    t.add_argument(
        "--budget",
        metavar="TIME",
        help="with --strategy auto: the time it may take, e.g. 10m, 90s, 1h (default: no "
        "limit); trained strategies stop at it, what does not fit is skipped and listed",
    )
    t.set_defaults(func=cmd_train)

    dr = sub.add_parser(
        "doctor",
        help="find duplicates, leakage, likely label errors, outliers and class problems "
        "before training (doctor.json, exclude.txt)",
    )
    dr.add_argument("data", help="labelled data, as for train")
    dr.add_argument(
        "--backbone",
        help="embeddings to examine the data with (default: what linear-probe training uses)",
    )
    dr.add_argument("--output", help="folder for doctor.json and exclude.txt "
                    "(default runs/doctor-<data>-<time>)")
    dr.add_argument("--runs-dir", default="runs")
    dr.add_argument(
        "--near-threshold",
        type=float,
        help="cosine of centred embeddings above which items are near duplicates "
        "(default 0.95, audio 0.985: measured in bench/bench_doctor_threshold.py and "
        "bench/bench_doctor.py)",
    )
    dr.add_argument("--seed", type=int, default=0, help="the split seed train will use")
    dr.add_argument("--val-fraction", type=float, default=0.1)
    dr.add_argument("--test-fraction", type=float, default=0.1)
    dr.add_argument("--batch-size", type=int, default=32)
    dr.add_argument("--json", action="store_true", help="print doctor.json to stdout")
    dr.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_modality_options(dr, "doctor")
    dr.set_defaults(func=cmd_doctor)

    e = sub.add_parser("evaluate", help="metrics of a trained run on labelled data")
    e.add_argument("run", help="run folder (runs/<name>)")
    e.add_argument("data", help="labelled data, as for train")
    e.add_argument("--json", action="store_true", help="print metrics as JSON")
    e.add_argument("--batch-size", type=int, default=32)
    _add_modality_options(e, "evaluate")
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="classify image or audio files, folders, or texts")
    pr.add_argument("run", help="run folder (runs/<name>)")
    pr.add_argument(
        "inputs",
        nargs="*",
        help="image or audio files/folders; text runs: a .csv/.tsv/.jsonl file or .txt "
        "files/folders",
    )
    pr.add_argument("--json", action="store_true", help="print predictions as JSON")
    pr.add_argument("--top-k", type=int, default=3)
    _add_modality_options(pr, "predict")
    pr.set_defaults(func=cmd_predict)

    x = sub.add_parser("export", help="verified export of a run: ONNX (int8), TFLite")
    x.add_argument("run", help="run folder (runs/<name>)")
    x.add_argument(
        "--format",
        default="onnx",
        choices=["onnx", "tflite", "web"],
        help="onnx (servers, desktop; --quantize int8), tflite (Android/iOS apps), "
        "web (static page: onnxruntime-web, file:// or any server)",
    )
    x.add_argument("--quantize", choices=["int8"], help="also write an int8 model")
    x.add_argument("--data", help="labelled folder to verify on (default: the run's val split)")
    x.add_argument("--force", action="store_true", help="write int8 even if accuracy drops >1pt")
    x.set_defaults(func=cmd_export)

    s = sub.add_parser("serve", help="REST API for a run: POST /predict, docs at /docs")
    s.add_argument("run", help="run folder (runs/<name>)")
    s.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept other machines")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-upload-mb", type=float, default=20, help="per request (default 20)")
    s.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnx", "pytorch"],
        help="auto: ONNX when the run has export/model.onnx, else PyTorch",
    )
    s.set_defaults(func=cmd_serve)

    c = sub.add_parser(
        "compare", help="every strategy x backbone x seed on one split, side by side"
    )
    c.add_argument("data", help="labelled images or texts, as for train")
    c.add_argument(
        "--strategies",
        default="linear-probe,fine-tune,scratch",
        help="comma-separated (text: e.g. baseline,linear-probe,fine-tune)",
    )
    c.add_argument(
        "--backbones",
        help=f"comma-separated (default: {DEFAULT_IMAGE_BACKBONE} for images, auto for text)",
    )
    c.add_argument("--seeds", default="0", help="comma-separated training seeds, e.g. 0,1,2")
    c.add_argument("--output", help="folder for the runs and compare.* (default runs/compare-…)")
    c.add_argument("--runs-dir", default="runs")
    c.add_argument("--epochs", type=int, help="maximum epochs for every strategy")
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--val-fraction", type=float, default=0.1)
    c.add_argument("--test-fraction", type=float, default=0.1)
    c.add_argument("--split-seed", type=int, default=0, help="the one split all runs share")
    _add_modality_options(c, "compare")
    c.set_defaults(func=cmd_compare)

    r = sub.add_parser(
        "report", help="(re)build a run's report.html, plots and model card (README.md), offline"
    )
    r.add_argument("run", help="run folder (runs/<name>)")
    r.set_defaults(func=cmd_report)

    b = sub.add_parser(
        "backbones", help="list the backbone catalogue, or describe one: tailor backbones NAME"
    )
    b.add_argument("name", nargs="?", help="one backbone: its layer groups, input, licence")
    b.add_argument("--modality", help="only this modality's backbones (image, text, audio...)")
    b.add_argument("--wide", action="store_true", help="every column (input, licence...)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_backbones)

    d = sub.add_parser("demo", help="the whole path on the bundled example images")
    d.add_argument("--output", help="run folder (default runs/demo-<time>)")
    d.add_argument("--strategy", default="linear-probe")
    d.set_defaults(func=cmd_demo)
    return p


def _add_training_options(t: argparse.ArgumentParser) -> None:

    t.add_argument(
        "--strategy",
        default=DEFAULT_STRATEGY,
        help="linear-probe | fine-tune | full | scratch | lora | baseline (text, audio) | "
        "few-shot (text) | auto (train: the baseline, a probe on every installed backbone, "
        "then a trained strategy on the best, under --budget; the best on validation wins) "
        "(default %(default)s)",
    )
    t.add_argument(
        "--backbone",
        help=f"see `tailor backbones` (default: {DEFAULT_IMAGE_BACKBONE} for images; minilm-l6 "
        "for text, e5-small-multilingual when CJK texts are common; "
        f"{DEFAULT_AUDIO_BACKBONE} for audio)",
    )
    t.add_argument("--weights", help="local weights file (safetensors or state dict)")
    t.add_argument("--output", help="run folder (default runs/<data>-<strategy>-<time>)")
    t.add_argument("--runs-dir", default="runs", help="where automatic run folders go")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, help="maximum epochs (strategy default otherwise)")
    t.add_argument("--lr", type=float, help="head learning rate (strategy default otherwise)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--num-workers", type=int, default=0, help="processes decoding images")
    t.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    t.add_argument(
        "--unfreeze",
        metavar="N|all",
        help="fine-tune/full: body layer groups trained after the head epochs, counted from "
        "the top (0 = head only; see `tailor backbones NAME`; default: the strategy's)",
    )
    t.add_argument(
        "--head-epochs",
        type=int,
        metavar="K",
        help="fine-tune/full: epochs that train only the head first (default: the strategy's)",
    )
    _add_augment_options(t)
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--test-fraction", type=float, default=0.1)
    t.add_argument(
        "--resume", action="store_true", help="continue --output from its last checkpoint"
    )
    t.add_argument("--devices", default="auto", help="Lightning devices (e.g. 2)")
    t.add_argument("--distributed", help="Lightning distributed strategy, e.g. ddp")
    t.add_argument("--precision", help="Lightning precision, e.g. bf16-mixed or 16-mixed (GPU)")
    t.add_argument(
        "--embed-precision",
        choices=("auto", "fp32", "bf16", "onnx"),
        default="auto",
        help="how the frozen backbone embeds (linear-probe): fp32 or bf16 in PyTorch, or fp32 "
        "in ONNX Runtime (images); auto = the fastest of these on this machine whose "
        "embeddings keep the probe's validation accuracy (checked once, then remembered)",
    )
    t.add_argument(
        "--calibrate",
        action="store_true",
        help="fit a softmax temperature on the validation data (honest probabilities)",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_modality_options(t, "train")


def _add_augment_options(t: argparse.ArgumentParser) -> None:
    """--augment LEVEL, with what each level does for each modality (their `augmentation`)."""
    import textwrap

    lines = [
        "How much the strategies that train layers vary the training inputs (linear-probe,",
        "baseline and few-shot embed each input once, as inference does). Per level:",
    ]
    for modality in list_modalities():
        for level, does in modality.augmentation.items():
            lines += textwrap.wrap(
                f"{modality.noun} {level}: {does}",
                width=88,
                initial_indent="  ",
                subsequent_indent="      ",
            )
    g = t.add_argument_group("augmentation", "\n".join(lines))
    g.add_argument(
        "--augment",
        choices=AUGMENT_LEVELS,
        help="none | light | default | strong (default: default; see above)",
    )
    g.add_argument(
        "--no-augment",
        dest="augment",
        action="store_const",
        const="none",
        help="the same as --augment none",
    )


def _add_modality_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Each registered modality adds the options only it reads (text columns, audio windows)."""
    for each in list_modalities():
        each.add_cli_options(parser, command)


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k != "func"}


def _detect_modality(args: argparse.Namespace) -> Modality:
    """The modality whose data `args.data` holds; another modality's flags are an error."""
    modality = modality_for_path(args.data)
    for other in list_modalities():
        flags = other.flags_set(args) if other is not modality else []
        if flags:
            raise ModelTailorError(
                f"{', '.join(flags)} apply to {other.noun} only; {args.data} holds "
                f"{modality.noun}"
            )
    return modality


def _load_labelled(
    args: argparse.Namespace, modality: Modality | None = None, class_names=None
):
    """The labelled dataset `args.data` holds, read by its modality (detected when None)."""
    modality = modality or _detect_modality(args)
    return modality.load(args.data, _data_options(args), class_names)


# -- train ------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from modeltailor.api import classifier_class
    from modeltailor.run import auto_run_name

    modality = _detect_modality(args)
    data = _load_labelled(args, modality)
    excluded = _apply_exclude(args, data) if args.exclude else None
    if excluded is not None:
        data = excluded.pop("data")
    data.validate(args.data)
    train_frac = 1.0 - args.val_fraction - args.test_fraction
    train, val, test = data.split(train_frac, args.val_fraction, args.test_fraction, seed=args.seed)
    train.validate("training split")
    run_path = (
        Path(args.output)
        if args.output
        else auto_run_name(
            args.data,
            args.backbone or _named_default(modality),
            args.strategy,
            Path(args.runs_dir),
        )
    )
    is_worker = os.environ.get("LOCAL_RANK", "0") != "0"  # a DDP process started by rank 0
    if run_path.exists() and any(run_path.iterdir()) and not args.resume and not is_worker:
        if (run_path / "model.safetensors").exists() or (run_path / "checkpoints").exists():
            raise ModelTailorError(
                f"{run_path}: a run is already there; choose another --output or add --resume"
            )
    if args.resume and not is_worker and run_path.is_dir():
        from modeltailor.run import RunDir, check_same_run, run_identity

        identity = run_identity(modality.name, args.backbone, args.strategy, train)
        check_same_run(RunDir(run_path), identity)  # before anything there is replaced
    report_skipped(data.skipped)

    def make(**chosen: Any):
        """The estimator the command line describes, with `chosen` settings over it."""
        options: dict[str, Any] = {
            "backbone": args.backbone,
            "strategy": args.strategy,
            "weights": args.weights,
            "epochs": args.epochs,
            "lr": args.lr,
            "batch_size": args.batch_size,
            "num_workers": args.num_workers,
            "seed": args.seed,
            "patience": args.patience,
            "unfreeze": _unfreeze(args.unfreeze),
            "head_epochs": args.head_epochs,
            "augment": args.augment or "default",
            "devices": _devices(args.devices),
            "distributed": args.distributed,
            "precision": args.precision,
            "embed_precision": args.embed_precision,
            "output": run_path,
            "resume": args.resume,
            "verbose": not args.quiet,
            **modality.estimator_options(args),
        }
        return classifier_class(modality.name)(**{**options, **chosen})

    started = time.perf_counter()
    if args.strategy == "auto":
        clf = _auto_select(args, modality, make, train, val)
    else:
        clf = make()
        clf.fit(train, val)
    if not clf.is_main_process_:
        return 0  # DDP worker: rank 0 evaluates and writes the run
    seconds = time.perf_counter() - started
    clf.fit_info_["train_seconds"] = round(seconds, 2)
    if excluded is not None:
        clf.fit_info_["excluded"] = excluded
    from modeltailor.doctor.checks import split_checks

    checks = split_checks({"train": train, "val": val, "test": test})
    clf.fit_info_["data_checks"] = checks
    clf.fit_info_.setdefault("warnings", []).extend(checks["warnings"])
    for warning in clf.fit_info_.get("warnings", []):
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    reported = {s.path for s in data.skipped}
    found_later = [s for s in clf.skipped_ if s.path not in reported]
    report_skipped(found_later)  # files whose pixel data failed to decode during training
    if args.calibrate:
        _calibrate(clf)
    metrics, predictions = _honest_metrics(clf, test)
    if test is not None and len(test):
        from modeltailor.run import split_record

        clf.splits_["test"] = split_record(test)
    run = clf.save(run_path, metrics)
    if "auto" in clf.fit_info_:
        _print_leaderboard(clf.fit_info_["auto"])
    _print_train_summary(clf, metrics, run.path, seconds)
    _write_report_files(run.path, predictions, clf.classes_)
    return 0


def _auto_select(args: argparse.Namespace, modality, make, train, val):
    """`--strategy auto`: the leaderboard's winner, fitted; the leaderboard in its fit info."""
    from modeltailor.auto import AutoSearch, parse_budget

    if args.resume or args.backbone or args.weights:
        raise ModelTailorError(
            "--strategy auto chooses the backbone and trains from scratch: drop "
            "--resume, --backbone and --weights (or pick a strategy yourself)"
        )
    budget = parse_budget(args.budget)

    def progress(stage, elapsed: float) -> None:
        if args.quiet:
            return
        what = f"{stage.strategy}" + (f" on {stage.backbone}" if stage.backbone else "")
        f1 = stage.val_macro_f1
        score = f": validation macro-F1 {f1:.3f}" if f1 is not None else ""
        line = f"[{elapsed:5.0f} s] {escape(what)}{score} ({escape(stage.status)})"
        out.print(line, highlight=False)

    # candidates train quietly, checkpointing in a temporary folder (the run folder is the
    # winner's alone)
    search = AutoSearch(
        lambda **kw: make(**kw, verbose=False, output=None), modality.name, budget, progress
    )
    clf, summary = search.run(train, val)
    clf.fit_info_["auto"] = summary
    return clf


def _print_leaderboard(summary: dict[str, Any]) -> None:
    budget = summary["budget_seconds"]
    limit = f" of a {budget:.0f}-s budget" if budget else ""
    title = f"--strategy auto: {summary['seconds']:.0f} s{limit}, ranked by {summary['scored_by']}"
    table = Table(title=title)
    columns = ("", "strategy", "backbone", "val macro-F1", "val log-loss", "val accuracy")
    for col in (*columns, "seconds", "status"):
        table.add_column(col, justify="right" if col.startswith(("val", "sec")) else "left")
    for row in summary["leaderboard"]:
        f1, acc, sec = row["val_macro_f1"], row["val_accuracy"], row["train_seconds"]
        loss = row.get("val_log_loss")
        table.add_row(
            "*" if row["chosen"] else "",
            row["strategy"],
            row["backbone"] or "-",
            f"{f1:.3f}" if f1 is not None else "-",
            f"{loss:.3f}" if loss is not None else "-",
            f"{acc:.3f}" if acc is not None else "-",
            f"{sec:.1f}" if sec is not None else "-",
            escape(row["status"]),
        )
    out.print(table)


def _apply_exclude(args: argparse.Namespace, data) -> dict[str, Any]:
    """Drop the items `--exclude FILE` lists; say how many, and which lines named nothing."""
    from modeltailor.data.exclude import exclude_items, read_exclude

    lines = read_exclude(args.exclude)
    kept, removed, unmatched = exclude_items(data, lines, args.exclude)
    out.print(
        f"excluded {len(removed)} of {len(data)} {escape(_noun(data))} listed in "
        f"{escape(args.exclude)}",
        highlight=False,
    )
    if unmatched:
        err.print(
            f"[yellow]warning:[/] {len(unmatched)} line(s) of {escape(args.exclude)} name "
            f"nothing in {escape(args.data)}, first: {escape(unmatched[0])}",
            highlight=False,
            soft_wrap=True,
        )
    return {
        "list": str(Path(args.exclude).resolve()),
        "removed": removed,
        "lines_matching_nothing": len(unmatched),
        "data": kept,
    }


def _noun(data) -> str:
    from modeltailor.modalities import get_modality

    name = getattr(data, "modality", None)
    return get_modality(name).noun if name else "examples"


def _calibrate(clf) -> None:
    clf.calibrate()
    c = clf.calibration_
    out.print(
        f"calibrated: temperature {c['temperature']:.3f}, validation ECE "
        f"{c['validation_ece_before']:.3f} -> {c['validation_ece_after']:.3f}",
        highlight=False,
    )


def _honest_metrics(clf, test) -> tuple[dict[str, Any], dict[str, Any]]:
    """Test figures come only from data training never touched; otherwise say so.

    Also returns each split's per-example probabilities, kept as the run's predictions.csv.
    """
    val = clf.val_data_
    result: dict[str, Any] = {"test": None, "validation": None}
    predictions: dict[str, Any] = {}
    if val is not None and len(val):
        result["validation"], predictions["validation"] = clf.evaluate(
            val, record=False, return_predictions=True
        )
    if test is not None and len(test):
        result["test"], predictions["test"] = clf.evaluate(
            test, record=False, return_predictions=True
        )
    elif result["validation"] is None:
        smallest = min(clf.data_["train"]["class_counts"].values())
        result["note"] = (
            "nothing was evaluated: with as few as "
            f"{smallest} example(s) in a class, no validation or test data could be held out; "
            "these are missing figures, not perfect ones. Add examples, or measure on data the "
            "model never saw with `tailor evaluate RUN DATA`"
        )
        err.print(f"[yellow]warning:[/] {escape(result['note'])}", highlight=False)
    else:
        result["note"] = (
            "no test split: only validation figures exist, and validation data was used for "
            "early stopping / head selection, so they are optimistic"
        )
    return result, predictions


def _print_train_summary(clf, metrics: dict[str, Any], run_path: Path, seconds: float) -> None:
    table = Table(title=f"{clf.strategy} on {clf.spec_.name}")
    table.add_column("split")
    for col in ("n", "accuracy", "macro F1", "ROC AUC"):
        table.add_column(col, justify="right")
    for split in ("validation", "test"):
        m = metrics.get(split)
        if m:
            auc = f"{m['roc_auc']:.3f}" if m.get("roc_auc") is not None else "-"
            table.add_row(split, str(m["n"]), f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}", auc)
    out.print(table)
    if metrics.get("note"):
        out.print(f"[yellow]note:[/] {metrics['note']}")
    base = clf.fit_info_.get("baseline")
    if base:
        out.print(escape(baseline_line(base)), highlight=False, soft_wrap=True)
    out.print(f"trained in {seconds:.1f} s; run saved to [bold]{run_path}[/]")


def baseline_line(base: dict[str, Any]) -> str:
    """'baseline: TF-IDF ... 0.950, chosen ... 0.962 (cross-validated macro-F1): verdict'."""
    if "macro_f1" not in base:
        return f"baseline: {base.get('verdict', 'not measured')}"
    scores = f"{base['name']} {base['macro_f1']:.3f}"
    if "chosen_macro_f1" in base:
        scores += f", chosen ({base['chosen']}) {base['chosen_macro_f1']:.3f}"
    how = base.get("scored_by") or "cross-validation"
    return f"baseline: {scores} (macro-F1, {how}): {base['verdict']}"


# -- report -----------------------------------------------------------------------------------
def _write_report_files(run_path: Path, predictions: dict[str, Any], classes: list[str]) -> None:
    """predictions.csv and report.html; the run is already saved, so a failure only warns."""
    from modeltailor.report import write_predictions, write_report

    try:
        write_predictions(run_path, predictions, classes)
        path = write_report(run_path)
    except Exception as exc:  # noqa: BLE001 - never lose a trained run to a plotting problem
        err.print(
            f"[yellow]warning:[/] the report could not be written ({escape(repr(exc))}); "
            f"the run is complete, retry with: tailor report {escape(str(run_path))}",
            highlight=False,
            soft_wrap=True,
        )
        return
    out.print(f"report: [bold]{escape(str(path))}[/]", highlight=False)


def cmd_report(args: argparse.Namespace) -> int:
    from modeltailor.report import write_report

    started = time.perf_counter()
    path = write_report(args.run)
    seconds = time.perf_counter() - started
    out.print(f"report written to [bold]{escape(str(path))}[/] in {seconds:.1f} s", highlight=False)
    out.print(f"model card: {escape(str(path.parent / 'README.md'))}", highlight=False)
    out.print(f"open {escape(path.resolve().as_uri())} in a browser", highlight=False)
    return 0


def _devices(value: str) -> int | str:
    return int(value) if str(value).isdigit() else value


def report_skipped(skipped) -> None:
    if not skipped:
        return
    err.print(f"[yellow]warning:[/] {len(skipped)} file(s) skipped:", highlight=False)
    for s in skipped[:10]:
        err.print(f"  {escape(s.path)}: {escape(s.reason)}", highlight=False, soft_wrap=True)
    if len(skipped) > 10:
        err.print(f"  ... and {len(skipped) - 10} more (all listed in the run's config.json)")


# -- evaluate / predict -----------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    from modeltailor.api import load_classifier

    clf = load_classifier(args.run)
    clf.batch_size = args.batch_size
    data = _load_labelled(args, clf.modality_, class_names=clf.classes_)
    if data.predefined:  # a folder with train/val/test: evaluate what it holds as one set
        data.predefined = None
    report_skipped(data.skipped)
    overlap = clf.overlap_with_training(data)
    seen = sum(overlap.values())
    metrics = clf.evaluate(data, record=False)
    metrics["overlap_with_training"] = overlap
    if seen:
        err.print(
            f"[yellow]warning:[/] {seen} of {len(data)} examples were used to train this model "
            f"({overlap}): these figures are optimistic",
            highlight=False,
        )
    if args.json:
        print(json.dumps(metrics, indent=2, ensure_ascii=False))
        return 0
    _print_metrics(metrics)
    return 0


def _print_metrics(m: dict[str, Any]) -> None:
    out.print(
        f"{escape(m['source'])}: n={m['n']}  accuracy={m['accuracy']:.4f}"
        + f"  macro-F1={m['macro_f1']:.4f}"
        + (f"  ROC AUC={m['roc_auc']:.4f}" if m.get("roc_auc") is not None else "")
        + f"  log loss={m['log_loss']:.4f}"
        + (f"  ECE={m['ece']:.4f}" if m.get("ece") is not None else ""),
        highlight=False,
    )
    table = Table()
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for name, c in m["per_class"].items():
        table.add_row(
            name, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", str(c["support"])
        )
    out.print(table)
    labels = m["labels"]
    cm = Table(title="confusion matrix (rows: true, columns: predicted)")
    cm.add_column("")
    for name in labels:
        cm.add_column(name, justify="right")
    for name, row in zip(labels, m["confusion_matrix"], strict=True):
        cm.add_row(name, *[str(v) for v in row])
    out.print(cm)


def cmd_predict(args: argparse.Namespace) -> int:
    from modeltailor.api import load_classifier

    clf = load_classifier(args.run)
    code = clf.modality_.predict_command(clf, args)
    if code is not None:
        return code
    if getattr(args, "text", None):
        raise ModelTailorError(f"{args.run} is an {clf.modality} run: --text needs a text run")
    if not args.inputs:
        raise ModelTailorError(f"give {clf.modality_.noun} files or folders to classify")
    rows, skipped = clf.predict_files(args.inputs, top_k=args.top_k)
    if args.json:
        doc = {"predictions": rows, "skipped": [s.__dict__ for s in skipped]}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        table = Table()
        table.add_column("file", overflow="fold")
        table.add_column("label")
        table.add_column("probability", justify="right")
        table.add_column(f"top {args.top_k}", overflow="fold")
        for r in rows:
            alts = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in r["top_k"])
            table.add_row(r["path"], r["label"], f"{r['probability']:.3f}", alts)
        out.print(table)
        report_skipped(skipped)
    if not rows:
        return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from modeltailor.run import RunDir

    run = RunDir(args.run)
    if run.has("config.json"):
        modality = get_modality(run.read_json("config.json").get("modality", "image"))
        spec = modality.export_spec()
        if spec is None or args.format not in spec.formats:
            what = f"exporting {modality.name} runs" + (f" as {args.format}" if spec else "")
            raise ModelTailorError(
                f"{run.path}: {what} is not supported yet; "
                f"`tailor predict {args.run}` works on any machine with modeltailor installed"
            )
    if args.format == "tflite":
        return _export_tflite(args)
    if args.format == "web":
        return _export_web(args)
    from modeltailor.export import export_onnx

    manifest = export_onnx(args.run, quantize=args.quantize, data=args.data, force=args.force)
    check = manifest["onnx"]["parity_vs_pytorch"]
    noun = modality.noun if run.has("config.json") else "examples"
    rows = check["examples"]
    examples = manifest["onnx"].get("examples", rows)
    counted = f"{examples} {noun}" + (f" ({rows} graph rows)" if rows != examples else "")
    out.print(
        f"ONNX: {manifest['onnx']['bytes'] / 1e6:.1f} MB, top-1 agreement with PyTorch "
        f"{check['top1_agreement']:.3f} on {counted}, max logit diff "
        f"{check['max_abs_logit_diff']:.1e}",
        highlight=False,
    )
    if "int8" in manifest:
        q = manifest["int8"]
        acc = (
            f"accuracy {q['accuracy_fp32']:.3f} -> {q['accuracy_int8']:.3f}, "
            if q["accuracy_fp32"] is not None
            else ""
        )
        out.print(
            f"int8: {q['bytes'] / 1e6:.1f} MB ({q['size_ratio']:.0%} of fp32), {acc}"
            f"settings {q['settings']}",
            highlight=False,
        )
    out.print(f"written to [bold]{Path(args.run) / 'export'}[/] (manifest.json)")
    return 0


def _export_tflite(args: argparse.Namespace) -> int:
    from modeltailor.export.tflite import export_tflite
    from modeltailor.run import RunDir

    if args.quantize:
        err.print("[yellow]warning:[/] --quantize applies to ONNX; the TFLite model is float32")
    manifest = export_tflite(args.run, data=args.data)
    t = manifest["tflite"]
    check = t["parity_vs_pytorch"]
    noun = get_modality(RunDir(args.run).read_json("config.json").get("modality", "image")).noun
    rows = check["examples"]
    examples = t.get("examples", rows)
    counted = f"{examples} {noun}" + (f" ({rows} windows)" if rows != examples else "")
    out.print(
        f"TFLite: {t['bytes'] / 1e6:.1f} MB, top-1 agreement with PyTorch "
        f"{check['top1_agreement']:.3f} on {counted}, max logit diff "
        f"{check['max_abs_logit_diff']:.1e}",
        highlight=False,
    )
    folder = Path(args.run) / "export"
    out.print(f"written to [bold]{folder}[/]: model.tflite, labels.txt, model.tflite.json")
    return 0


def _export_web(args: argparse.Namespace) -> int:
    from modeltailor.export.web import export_web

    if args.quantize:
        err.print("[yellow]warning:[/] --quantize applies to ONNX; the web page runs float32")
    web = export_web(args.run, data=args.data)["web"]
    folder = (Path(args.run) / "export" / "web").resolve()
    out.print(
        f"web page: {web['bytes'] / 1e6:.1f} MB, onnxruntime-web "
        f"{web['onnxruntime_web']['version']}, written to [bold]{escape(str(folder))}[/]",
        highlight=False,
    )
    out.print(
        f"open {escape((folder / 'index.html').as_uri())} in a browser, or serve the folder: "
        f"python -m http.server -d {escape(str(folder))}",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from modeltailor.serve import create_app

    app = create_app(args.run, args.backend, max_upload_bytes=int(args.max_upload_mb * 1e6))
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}"
    backend = app.state.predictor.backend
    out.print(f"serving {escape(args.run)} ({backend}) at {url}  (API docs: {url}/docs)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def _unfreeze(value: str | None) -> int | str | None:
    if value is None or value == "all":
        return value
    if not value.isdigit():
        raise ModelTailorError(f"--unfreeze {value}: give a number of layer groups or 'all'")
    return int(value)


def _named_default(modality: Modality) -> str:
    """What an automatic run name calls the default backbone: its name when it never depends
    on the data (images), else the modality."""
    return modality.named_default_backbone or modality.name


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def cmd_compare(args: argparse.Namespace) -> int:
    from modeltailor.compare import AUTO, HEADERS, compare, table_rows

    modality = _detect_modality(args)
    data = _load_labelled(args, modality)
    data.validate(args.data)
    if args.backbones is None:
        args.backbones = modality.named_default_backbone or AUTO
    report_skipped(data.skipped)
    seeds = [int(s) for s in _csv(args.seeds)]
    out_dir = Path(args.output) if args.output else _compare_dir(args)
    if (out_dir / "compare.json").exists():
        raise ModelTailorError(f"{out_dir}: a comparison is already there; choose --output")

    def progress(trial) -> None:
        what = f"{trial.strategy} on {trial.backbone}, seed {trial.seed}"
        if trial.error:
            err.print(f"[red]failed:[/] {escape(what)}: {escape(trial.error)}", highlight=False)
        else:
            out.print(
                f"{escape(what)}: accuracy {trial.accuracy:.3f} in {trial.train_seconds:.1f} s",
                highlight=False,
            )

    options = {"epochs": args.epochs, "batch_size": args.batch_size}
    result = compare(
        data,
        _csv(args.strategies),
        _csv(args.backbones),
        seeds,
        out_dir,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        split_seed=args.split_seed,
        options=options,
        on_trial=progress,
    )
    table = Table(title=f"scored on {result.scored_on}")
    for h in HEADERS:
        table.add_column(h, justify="left" if h in ("strategy", "backbone", "error") else "right")
    for row in table_rows(result):
        table.add_row(*[escape(c) for c in row])
    out.print(table)
    out.print(f"early stopping and head selection used {escape(result.validation)}")
    out.print(f"written to [bold]{escape(str(out_dir))}[/] (compare.json, compare.html)")
    return 0 if any(t.error is None for t in result.trials) else 1


def _compare_dir(args: argparse.Namespace) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(args.runs_dir) / f"compare-{Path(args.data).resolve().name}-{stamp}"


# -- doctor -----------------------------------------------------------------------------------
def cmd_doctor(args: argparse.Namespace) -> int:
    from modeltailor.doctor import examine
    from modeltailor.doctor.output import write_outputs

    modality = _detect_modality(args)
    data = _load_labelled(args, modality)
    data.validate(args.data, min_per_class=0)
    report_skipped(data.skipped)
    report = examine(
        data,
        modality,
        args.backbone,
        args.near_threshold,
        args.seed,
        args.val_fraction,
        args.test_fraction,
        args.batch_size,
        not args.quiet and not args.json,
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = (
        Path(args.output)
        if args.output
        else Path(args.runs_dir) / f"doctor-{Path(args.data).resolve().name}-{stamp}"
    )
    write_outputs(report, folder)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return 0
    _print_doctor(report, folder)
    return 0


def _print_doctor(report, folder: Path) -> None:
    counts = report.counts()
    table = Table(title=f"tailor doctor: {report.n_items} {escape(_noun_of(report))} "
                  f"({escape(report.backbone)} embeddings)")
    table.add_column("finding")
    table.add_column("count", justify="right")
    table.add_column("first example", overflow="fold")
    rows = [
        ("unreadable files", counts["unreadable"], report.unreadable, "item"),
        ("exact duplicate groups", counts["exact_duplicate_groups"], report.exact_duplicates,
         None),
        ("near duplicate groups", counts["near_duplicate_groups"], report.near_duplicates, None),
        ("groups with conflicting labels", counts["groups_with_conflicting_labels"],
         [g for g in report.exact_duplicates + report.near_duplicates
          if g["conflicting_labels"]], None),
        ("groups leaking across splits", counts["groups_leaking_across_splits"],
         report.leakage.get("groups", []), "splits"),
        ("likely label errors", counts["likely_label_errors"],
         report.label_issues.get("items", []), "item"),
        ("outliers", counts["outliers"], report.outliers.get("items", []), "item"),
    ]  # fmt: skip
    for name, n, found, key in rows:
        first = ""
        if found:
            f = found[0]
            if key == "splits":
                first = f"{f['kind']} group across {', '.join(f['splits'])}"
            elif key:
                first = str(f[key])
            else:
                first = " = ".join(m["item"] for m in f["items"][:3])
                first += f" ({', '.join(f['labels'])})"
        table.add_row(name, str(n), escape(first))
    out.print(table)
    balance = report.class_balance
    line = ", ".join(f"{escape(c)} {n}" for c, n in balance["counts"].items())
    out.print(f"classes: {line} (largest/smallest {balance['imbalance_ratio']})", highlight=False)
    for key, what in (("empty", "empty"), ("too_small_to_train", "too small to train (< 2)"),
                      ("too_small_to_split", "too small to get validation and test examples")):
        if balance[key]:
            out.print(f"[yellow]classes {what}:[/] {escape(', '.join(balance[key]))}",
                      highlight=False)
    if report.label_issues.get("skipped"):
        out.print(f"label errors not examined: {escape(report.label_issues['skipped'])}")
    out.print(
        f"{counts['suggested_removals']} suggested removal(s) in "
        f"[bold]{escape(str(folder / 'exclude.txt'))}[/] (reasons in doctor.json); train "
        f"without them: tailor train {escape(report.source)} --exclude "
        f"{escape(str(folder / 'exclude.txt'))}",
        highlight=False,
        soft_wrap=True,
    )
    out.print("nothing in the data was moved or deleted", highlight=False)


def _noun_of(report) -> str:
    return get_modality(report.modality).noun


# -- catalogue / demo -------------------------------------------------------------------------
def cmd_backbones(args: argparse.Namespace) -> int:
    from modeltailor.backbones import get_backbone, list_backbones

    if args.name:
        return _describe_backbone(get_backbone(args.name), args.json)
    if args.modality:
        get_modality(args.modality)  # an unknown name fails with the names that exist
    specs = list_backbones(args.modality)
    if args.json:
        print(json.dumps([_backbone_record(s) for s in specs], indent=2))
        return 0
    # The terminal's own width (COLUMNS), not the wide width of piped output: the one thing a
    # user must copy from this table is the name, so it is never cut; other columns fold.
    screen = out if args.wide else Console(width=shutil.get_terminal_size((80, 24)).columns)
    table = Table(title="backbones (any timm architecture also works with --weights FILE)")
    longest = max((len(s.name) for s in specs), default=4)
    table.add_column("name", no_wrap=True, min_width=longest)
    table.add_column("modality", overflow="fold")
    table.add_column("params", justify="right", overflow="fold")
    if args.wide:
        for col in ("input", "ImageNet top-1", "languages", "licence"):
            table.add_column(col, overflow="fold")
    table.add_column("installed", overflow="fold")
    missing = []
    for s in specs:
        installed = "yes" if s.is_installed() else "no (see below)"
        if not s.is_installed():
            missing.append(s)
        row = [s.name, s.modality, f"{s.params_m:.2f}M"]
        if args.wide:
            top1 = f"{s.imagenet_top1:.1f}%" if s.imagenet_top1 else "-"
            row += [s.input_summary(), top1, s.languages or "-", s.license]
        table.add_row(*row, installed)
    screen.print(table)
    for s in missing:
        screen.print(f"{s.name}: {escape(s.install_hint)}", highlight=False, soft_wrap=True)
    if not args.wide:
        screen.print("--wide for input, ImageNet top-1, languages and licence; "
                     "tailor backbones NAME for one backbone's layer groups", highlight=False)
    return 0


def _backbone_record(s) -> dict[str, Any]:
    return {
        "name": s.name,
        "modality": s.modality,
        "architecture": s.architecture,
        "params_m": s.params_m,
        "input_size": getattr(s.preprocessing, "input_size", None),
        "input": s.input_summary(),
        "languages": s.languages or None,
        "imagenet_top1": s.imagenet_top1,
        "license": s.license,
        "installed": s.is_installed(),
        "install_hint": s.install_hint,
        "strategies": list(s.strategies),
        "capabilities": sorted(s.capabilities.names()),
    }


def _layer_groups(spec) -> list[dict[str, Any]] | str:
    """Body layer groups, top first (what --unfreeze counts), with parameter counts; or why
    they cannot be listed. Built without pretrained weights: only the shapes are needed."""
    from modeltailor.backbones.model import TailoredModel

    if not spec.is_installed():
        return f"not installed ({spec.install_hint})"
    try:
        model = TailoredModel(spec.build(2, pretrained=False))
    except Exception as exc:  # noqa: BLE001 - a frozen-only graph has no groups to show
        return f"not listed ({type(exc).__name__}: {exc})"
    groups = []
    for depth, index in enumerate(reversed(range(model.num_body_groups)), start=1):
        params = model.body_group(index)
        names = model.body_group_names(index)
        groups.append({
            "from_top": depth,
            "parameters": sum(p.numel() for p in params),
            "first": names[0],
            "last": names[-1],
        })  # fmt: skip
    return groups


def _describe_backbone(spec, as_json: bool) -> int:
    from modeltailor.strategies import get_strategy

    fine_tune = spec.recipe(get_strategy("fine-tune")) if spec.supports("fine-tune") else None
    record = {
        **_backbone_record(spec),
        "preprocessing": spec.preprocessing.to_dict(),
        "weights_from": spec.package or spec.weights_file or spec.hub_id or "none (no weights)",
        "description": spec.description,
        "fine_tune_default": {
            "head_epochs": fine_tune.head_epochs,
            "unfreeze": "all" if fine_tune.unfrozen_groups < 0 else fine_tune.unfrozen_groups,
        }
        if fine_tune
        else None,
        "layer_groups": _layer_groups(spec),
    }
    if as_json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
        return 0
    screen = Console(width=shutil.get_terminal_size((80, 24)).columns)
    for key in ("name", "modality", "architecture", "description", "params_m", "input",
                "languages", "license", "weights_from", "installed", "install_hint",
                "strategies", "capabilities", "preprocessing", "fine_tune_default"):  # fmt: skip
        value = record[key]
        if value in (None, "", []):
            continue
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        screen.print(f"[bold]{key}[/]: {escape(str(value))}", highlight=False, soft_wrap=True)
    groups = record["layer_groups"]
    if isinstance(groups, str):
        screen.print(f"[bold]layer groups[/]: {escape(groups)}", highlight=False, soft_wrap=True)
        return 0
    table = Table(title="layer groups, top first (--unfreeze N trains the top N)")
    for col in ("from top", "parameters", "first parameter", "last parameter"):
        table.add_column(col, overflow="fold")
    for g in groups:
        table.add_row(str(g["from_top"]), f"{g['parameters']:,}", g["first"], g["last"])
    screen.print(table)
    return 0


def example_folder() -> Path:
    return Path(__file__).parent / "examples" / "fashion"


def cmd_demo(args: argparse.Namespace) -> int:
    from modeltailor.run import auto_run_name

    data = example_folder()
    run_path = (
        Path(args.output) if args.output else auto_run_name("demo", "", args.strategy, Path("runs"))
    )
    out.rule("1/3  train")
    out.print(f"training {args.strategy} on the bundled Fashion-MNIST sample ({data})")
    code = main(["train", str(data), "--strategy", args.strategy, "--output", str(run_path)])
    if code:
        return code
    out.rule("2/3  evaluate on the held-out test split")
    metrics = json.loads((run_path / "metrics.json").read_text(encoding="utf-8"))
    if metrics.get("test"):
        _print_metrics(metrics["test"])
    out.rule("3/3  predict")
    from modeltailor.data import load_image_folder

    _, _, test = load_image_folder(data).split(0.8, 0.1, 0.1, seed=0)
    samples = [test.items[i] for i in (0, len(test) // 2, len(test) - 1)]
    code = main(["predict", str(run_path), *map(str, samples)])
    out.print(
        f"\nThe run is in [bold]{run_path}[/]. Next: tailor predict {run_path} your_image.jpg"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
