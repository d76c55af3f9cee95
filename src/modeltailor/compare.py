"""`tailor compare`: every strategy x backbone x seed on one split, side by side.

The classic transfer-learning experiment (new head vs fine-tuning vs training from scratch) as
one command. All runs share one decoded, verified dataset, one split and the embedding cache,
and are scored on data none of them touched: the test split, or, when the data has none, the
validation folder laid out on disk (then 10% of the training data is held out for early
stopping and head selection instead). A run that fails is reported with its error; the others
still finish.
"""

from __future__ import annotations

import html
import logging
import math
import statistics
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modeltailor.data.dataset import LabeledDataset
from modeltailor.errors import ModelTailorError
from modeltailor.run import atomic_write_bytes, atomic_write_json

logger = logging.getLogger(__name__)


@dataclass
class Trial:
    """One training: a strategy on a backbone with a seed, and what came of it."""

    strategy: str
    backbone: str
    seed: int
    accuracy: float | None = None
    macro_f1: float | None = None
    train_seconds: float | None = None
    trainable_params: int | None = None
    epochs_run: int | None = None
    run: str | None = None
    error: str | None = None


@dataclass
class Comparison:
    scored_on: str
    validation: str
    trials: list[Trial] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """One row per strategy x backbone: mean and standard deviation over seeds."""
        groups: dict[tuple[str, str], list[Trial]] = {}
        for t in self.trials:
            groups.setdefault((t.strategy, t.backbone), []).append(t)
        return [_summarise(s, b, ts) for (s, b), ts in groups.items()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scored_on": self.scored_on,
            "validation": self.validation,
            "rows": self.rows(),
            "trials": [asdict(t) for t in self.trials],
        }


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd


def _summarise(strategy: str, backbone: str, trials: list[Trial]) -> dict[str, Any]:
    ok = [t for t in trials if t.error is None]
    row: dict[str, Any] = {"strategy": strategy, "backbone": backbone, "seeds": len(trials)}
    for key in ("accuracy", "macro_f1", "train_seconds", "epochs_run"):
        mean, sd = _mean_sd([getattr(t, key) for t in ok if getattr(t, key) is not None])
        row[key], row[f"{key}_sd"] = mean, sd
    row["trainable_params"] = ok[0].trainable_params if ok else None
    row["failed"] = len(trials) - len(ok)
    row["error"] = next((t.error for t in trials if t.error), None)
    return row


#: `--backbones auto`: the classifier picks (text: MiniLM, or e5 for mostly-CJK data).
AUTO = "auto"


def held_out_split(
    data: LabeledDataset, val_fraction: float, test_fraction: float, seed: int
) -> tuple[LabeledDataset, LabeledDataset | None, LabeledDataset, str, str]:
    """(train, val, test, what test is, what val is): test is never used for any choice."""
    train_frac = 1.0 - val_fraction - test_fraction
    train, val, test = data.split(train_frac, val_fraction, test_fraction, seed=seed)
    if test is not None and len(test):
        return train, val, test, f"the test split ({len(test)} examples)", "the validation split"
    if val is None or not len(val):
        raise ModelTailorError(f"{data.source}: too few examples for a held-out test split")
    # Data laid out as train/ + val/ only: val/ becomes the untouched test set.
    inner_train, inner_val, _ = train.split(0.9, 0.1, 0.0, seed=seed)
    return (
        inner_train,
        inner_val,
        val,
        f"the val/ folder ({len(val)} examples), never used for training or selection",
        "10% of the training examples, held out for early stopping and head selection",
    )


def trainable_parameters(clf) -> int:
    """Parameters the strategy trains at its widest point (head + unfrozen body groups)."""
    from modeltailor.strategies import get_strategy

    model = clf.model_
    strategy = get_strategy(clf.strategy)
    widest = 0  # a probe trains its head only
    if not strategy.uses_feature_cache:
        horizon = max(strategy.head_epochs + 1, 1)
        widest = strategy.trainable_groups(model.num_body_groups, horizon)
    count = model.set_trainable(widest)
    model.eval()
    return count


def run_trial(trial: Trial, train, val, test, options: dict[str, Any], out_dir: Path) -> Trial:
    from modeltailor.api import classifier_for
    from modeltailor.run import split_record

    run_dir = out_dir / f"{trial.backbone}-{trial.strategy}-seed{trial.seed}"
    clf = classifier_for(train)(
        backbone=None if trial.backbone == AUTO else trial.backbone,
        strategy=trial.strategy,
        seed=trial.seed,
        output=run_dir,
        verbose=False,
        **options,
    )
    started = time.perf_counter()
    clf.fit(train, val)
    trial.train_seconds = round(time.perf_counter() - started, 2)
    clf.fit_info_["train_seconds"] = trial.train_seconds
    metrics = clf.evaluate(test, record=False)
    trial.accuracy, trial.macro_f1 = metrics["accuracy"], metrics["macro_f1"]
    trial.epochs_run = clf.fit_info_.get("epochs_run", 0)
    trial.trainable_params = trainable_parameters(clf)
    clf.splits_["test"] = split_record(test)
    clf.save(run_dir, {"test": metrics, "validation": None})
    trial.run = str(run_dir)
    return trial


def compare(
    data: LabeledDataset,
    strategies: list[str],
    backbones: list[str],
    seeds: list[int],
    out_dir: str | Path,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    options: dict[str, Any] | None = None,
    on_trial=None,
) -> Comparison:
    """Train every combination on one split; `on_trial(trial)` is called as each finishes."""
    out_dir = Path(out_dir)
    train, val, test, scored_on, validation = held_out_split(
        data, val_fraction, test_fraction, split_seed
    )
    result = Comparison(scored_on, validation)
    for backbone in backbones:
        for strategy in strategies:
            for seed in seeds:
                trial = Trial(strategy, backbone, seed)
                try:
                    run_trial(trial, train, val, test, options or {}, out_dir)
                except Exception as exc:  # one failed run must not lose the others
                    trial.error = f"{type(exc).__name__}: {exc}"
                    if not isinstance(exc, ModelTailorError):
                        logger.warning("%s failed:\n%s", trial, traceback.format_exc())
                result.trials.append(trial)
                if on_trial:
                    on_trial(trial)
    write_outputs(result, out_dir)
    _write_cards(result)
    return result


def _write_cards(result: Comparison) -> None:
    """Each run's model card, written once compare.json exists, so it can put the
    baseline's score (scored on the same split) beside the run's own."""
    from modeltailor.report.card import write_model_card

    for trial in result.trials:
        if trial.run and trial.error is None:
            try:
                write_model_card(trial.run)
            except Exception:  # noqa: BLE001 - the comparison stands without its cards
                logger.warning("%s: the model card could not be written", trial.run, exc_info=True)


# -- outputs -------------------------------------------------------------------------------
def write_outputs(result: Comparison, out_dir: Path) -> None:
    atomic_write_json(out_dir / "compare.json", result.to_dict())
    png = accuracy_vs_time_png(result)
    if png:
        atomic_write_bytes(out_dir / "compare.png", png)
    atomic_write_bytes(out_dir / "compare.html", compare_html(result, png).encode("utf-8"))


def accuracy_vs_time_png(result: Comparison) -> bytes | None:
    """Accuracy against training time, mean +- sd over seeds per strategy x backbone."""
    from modeltailor.report.plots import accuracy_vs_time

    rows = [r for r in result.rows() if r["accuracy"] is not None]
    return accuracy_vs_time(rows) if rows else None


def _fmt(mean: float | None, sd: float | None, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    text = f"{mean:.{digits}f}"
    return f"{text} ± {sd:.{digits}f}" if sd else text


def table_rows(result: Comparison) -> list[list[str]]:
    """The printed/HTML table: one row per strategy x backbone."""
    rows = []
    for r in result.rows():
        params = f"{r['trainable_params']:,}" if r["trainable_params"] is not None else "-"
        rows.append(
            [
                r["strategy"],
                r["backbone"],
                _fmt(r["accuracy"], r["accuracy_sd"], 3),
                _fmt(r["macro_f1"], r["macro_f1_sd"], 3),
                _fmt(r["train_seconds"], r["train_seconds_sd"], 1),
                params,
                _fmt(r["epochs_run"], r["epochs_run_sd"], 1),
                f"{r['seeds'] - r['failed']}/{r['seeds']}",
                r["error"] or "",
            ]
        )
    return rows


HEADERS = [
    "strategy",
    "backbone",
    "accuracy",
    "macro-F1",
    "train s",
    "trainable params",
    "epochs",
    "runs ok",
    "error",
]


def compare_html(result: Comparison, png: bytes | None) -> str:
    from modeltailor.report.html import data_uri

    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in table_rows(result)
    )
    img = (
        f'<img id="plot" alt="accuracy vs training time" src="{data_uri(png)}">'
        if png
        else "<p>No run finished: nothing to plot.</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>modeltailor compare</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }}
th:first-child, td:first-child, td:nth-child(2), td:last-child {{ text-align: left; }}
td:last-child {{ color: #a00; max-width: 30rem; }}
.note {{ color: #555; }}
</style></head>
<body>
<h1>Strategies compared</h1>
<p class="note">Scored on {html.escape(result.scored_on)}; early stopping and head selection
used {html.escape(result.validation)}. Mean ± standard deviation over seeds.</p>
<table id="results"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{img}
</body></html>
"""
