"""Texts: CSV/TSV/JSONL tables or a folder per class of .txt files; token windows for encoders."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modeltailor.errors import ModelTailorError
from modeltailor.modalities import register_modality
from modeltailor.modalities.base import ExportSpec, Modality

#: Run sub-folder of a text run's TF-IDF side head (vocabulary JSON + head weights).
SIDE_FOLDER = "tfidf_side"


def text_of(item: Any) -> str:
    return item.text if hasattr(item, "text") else str(item)


#: Tokens of a fingerprint: one CJK character (scripts written without spaces), else a word.
FINGERPRINT_TOKENS = r"(?u)[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]|\b\w\w*\b"


@functools.cache
def _fingerprint_hasher():
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        n_features=1024,
        ngram_range=(2, 2),
        token_pattern=FINGERPRINT_TOKENS,
        binary=True,
        norm="l2",
        alternate_sign=True,
        dtype=np.float32,
    )


def text_fingerprint(text: str) -> np.ndarray:
    """Unit vector of the text's word bigrams (signed feature hashing: the cosine of two
    fingerprints is their bigram-set cosine within about +-0.03); a text of one word has none."""
    return _fingerprint_hasher().transform([unicodedata.normalize("NFKC", text)]).toarray()[0]


@dataclass(frozen=True)
class TextPreprocessing:
    """How text becomes model input (stored in every run's config, keys the embedding cache).

    Texts longer than `max_length` tokens are split into windows of `max_length` tokens
    (special tokens and `prefix` included) sharing `window_overlap` of a window with the next,
    and the window embeddings (or logits) are averaged. A text of more than `max_windows`
    windows (about 14,000 MiniLM tokens, 50 KB of English) keeps that many, evenly spaced from
    its first window to its last: a 5 MB text costs seconds, not minutes and gigabytes. Runs
    saved before the cap existed read None: no cap, as they were trained.
    """

    max_length: int
    prefix: str = ""
    pooling: str = "mean"
    normalize: bool = True
    window_overlap: float = 0.125
    max_windows: int | None = 64
    modality: str = "text"

    def for_inference(self, test_size: int | None) -> TextPreprocessing:
        return self

    def summary(self) -> str:
        return f"{self.max_length} tokens" if self.max_length else "whole text"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextPreprocessing:
        return cls(
            max_length=int(d["max_length"]),
            prefix=d.get("prefix", ""),
            pooling=d.get("pooling", "mean"),
            normalize=bool(d.get("normalize", True)),
            window_overlap=float(d.get("window_overlap", 0.125)),
            max_windows=d.get("max_windows"),
        )


class TextModality(Modality):
    name = "text"
    noun = "texts"
    options = ("augment", "combine_tfidf")
    priority = 10
    #: What each `--augment` level does to training texts (training.inputs.TextWindows).
    augmentation = {
        "none": "a long text always trains on its first window; tokens as written",
        "light": "a random window of a long text each epoch (texts of one window unchanged)",
        "default": "as light: the measured default",
        "strong": "as light, and 10% of each window's word pieces dropped at random "
        "(never the special tokens or the model's prefix)",
    }

    def preprocessing_from_dict(self, d):
        return TextPreprocessing.from_dict(d)

    # -- data in ---------------------------------------------------------------------------
    def recognises(self, path) -> bool:
        from modeltailor.data.text import looks_like_text_data

        return looks_like_text_data(path)

    def load(self, path, options, class_names=None):
        from modeltailor.data.text import load_text

        return load_text(
            path,
            options.get("text_column"),
            options.get("label_column"),
            options.get("encoding"),
            class_names,
        )

    def as_items(self, X: Any) -> list:
        from modeltailor.data.text import TextItem

        if isinstance(X, str):
            raise TypeError("pass a list of texts, not one string")
        return [
            x if isinstance(x, TextItem) else TextItem(str(x), f"text {i + 1}")
            for i, x in enumerate(X)
        ]

    # -- backbones -----------------------------------------------------------------------------
    def default_backbone(self, clf, train) -> str:
        from modeltailor.backbones.text import default_text_backbone
        from modeltailor.strategies import get_strategy

        if get_strategy(clf.strategy).classical:
            return "tfidf"
        return default_text_backbone([text_of(item) for item in train.items])

    def fit_details(self, clf, model, train) -> dict[str, Any]:
        from modeltailor.backbones.text import multi_window_share

        encoder = model.net
        if not hasattr(encoder, "encode"):
            return {}  # not a windowed encoder (the TF-IDF baseline reads whole texts)
        pre = encoder.pre
        encoded = encoder.encode([text_of(i) for i in train.items], capped=False)
        cut = [str(item) for item, w in zip(train.items, encoded, strict=True)
               if pre.max_windows and len(w) > pre.max_windows]  # fmt: skip
        details: dict[str, Any] = {
            "long_texts": {
                "policy": "split into windows of max_length tokens, overlapping by "
                f"{pre.window_overlap:g} of a window; at most max_windows per text, evenly "
                "spaced over it; embeddings (linear-probe) or logits (trained strategies) "
                "averaged per text",
                "max_length": pre.max_length,
                "max_windows": pre.max_windows,
                "share_of_training_texts_windowed": round(multi_window_share(encoded), 4),
                "training_texts_over_max_windows": len(cut),
                "examples_over_max_windows": cut[:20],
            }
        }
        if cut:
            details["warnings"] = [
                f"{len(cut)} training text(s) longer than {pre.max_windows} windows of "
                f"{pre.max_length} tokens (first: {cut[0]}) were read as {pre.max_windows} "
                "windows spread over the text (config.json: fit.long_texts)"
            ]
        return details

    # -- TF-IDF side features ------------------------------------------------------------------
    def extend_head(self, clf, model, train, val, pre, result, settings) -> None:
        from modeltailor.training.hybrid import fit_hybrid_head, select_text_head_cv
        from modeltailor.training.inference import embed_examples

        if not clf.combine_tfidf or not hasattr(model.net, "encode"):
            return

        def embed(data):
            s = settings
            return embed_examples(model, pre, data, s.batch_size, s.num_workers, s.verbose)

        if result.features is None:  # LP-FT kept the trained network: embed with its tuned body
            result.features = (embed(train), embed(val))
            trained = result.info["head_init"]["validation"]["trained"]
            result.head_choice = {**trained, "C": None, "selected_by": "the trained network"}
        x_train, x_val = result.features
        selection = result.info.get("selection")
        if result.head_choice.get("cv") is not None and selection is not None:
            # the probe's head was chosen by CV: side features and the baseline alone too
            side, record = select_text_head_cv(
                model, x_train, train, result.head_choice, val, settings, selection
            )
            clf.side_ = side
            result.info["tfidf_side"] = record
            return
        side, record = fit_hybrid_head(
            model, x_train, train, x_val, val, result.head_choice, settings
        )
        clf.side_ = side
        result.info["tfidf_side"] = record

    def side_logits(self, clf, items: list) -> np.ndarray | None:
        side = getattr(clf, "side_", None)
        return None if side is None else side.logits([text_of(item) for item in items])

    # -- the run folder ------------------------------------------------------------------------
    def save_assets(self, clf, run) -> None:
        from modeltailor.backbones.text import ASSETS_FOLDER

        clf.model_.net.save_assets(run.path / ASSETS_FOLDER)
        side = getattr(clf, "side_", None)
        if side is not None:
            from safetensors.torch import save_file

            folder = run.path / SIDE_FOLDER
            side.save_assets(folder)
            head = {k: v.contiguous() for k, v in side.get_classifier().state_dict().items()}
            save_file(head, str(folder / "head.safetensors"))

    def load_assets(self, clf, run) -> None:
        folder = run.path / SIDE_FOLDER
        clf.side_ = None
        if folder.is_dir():
            from safetensors.torch import load_file

            from modeltailor.backbones.tfidf import TfidfText

            side = TfidfText.load(folder, len(clf.classes_))
            side.get_classifier().load_state_dict(load_file(str(folder / "head.safetensors")))
            clf.side_ = side.eval()

    def network_for(self, run, cfg: dict[str, Any]):
        from modeltailor.backbones.text import ASSETS_FOLDER, load_text_network

        pre = self.preprocessing_from_dict(cfg["preprocessing"])
        return load_text_network(run.path / ASSETS_FOLDER, pre, cfg["num_classes"])

    # -- command line --------------------------------------------------------------------------
    def add_cli_options(self, parser: argparse.ArgumentParser, command: str) -> None:
        if command == "predict":
            parser.add_argument(
                "--text", action="append", help="text to classify (repeatable; text runs)"
            )
            parser.add_argument(
                "--text-column", help="column holding the text (text runs; default: text)"
            )
            parser.add_argument("--encoding", help="input encoding, e.g. cp932 (default: detected)")
            return
        g = parser.add_argument_group("text data")
        g.add_argument("--text-column", help="column holding the text (default: 'text', any case)")
        g.add_argument("--label-column", help="column holding the label (default: 'label')")
        g.add_argument("--encoding", help="file encoding, e.g. cp932 (default: detected)")

    def predict_command(self, clf, args: argparse.Namespace) -> int | None:
        """--text strings, or a file/folder: CSV in -> the same rows plus label and probability."""
        from rich.table import Table

        from modeltailor.cli import out, report_skipped

        if args.text and args.inputs:
            raise ModelTailorError("give either --text or input files, not both")
        if args.text:
            rows = clf.predict_texts(args.text, top_k=args.top_k)
            if args.json:
                print(json.dumps({"predictions": rows}, indent=2, ensure_ascii=False))
                return 0
            table = Table()
            table.add_column("text", overflow="fold")
            table.add_column("label")
            table.add_column("probability", justify="right")
            for r in rows:
                table.add_row(r["text"], r["label"], f"{r['probability']:.3f}")
            out.print(table)
            return 0
        if len(args.inputs) != 1:
            raise ModelTailorError(
                "give one input: a .csv/.tsv/.jsonl file, a .txt file or a folder"
            )
        from modeltailor.data.text import read_text_rows

        data = read_text_rows(args.inputs[0], args.text_column, args.encoding)
        report_skipped(data.skipped)
        preds = clf.predict_texts(data.texts, top_k=args.top_k)
        if args.json:
            doc = [
                {**row, "origin": o, "label": p["label"], "probability": p["probability"]}
                for row, o, p in zip(data.rows, data.origins, preds, strict=True)
            ]
            skipped = [s.__dict__ for s in data.skipped]
            print(
                json.dumps(
                    {"predictions": doc, "skipped": skipped}, indent=2, ensure_ascii=False
                )
            )
        else:
            _write_prediction_rows(data, preds)
        return 0 if preds else 1

    # -- model card ----------------------------------------------------------------------------
    pipeline_tag = "text-classification"
    card_predict_args = (
        '--text "the text to classify"',
        "texts.csv    # the rows, plus label and probability",
    )
    card_python_example = '"the text to classify"'
    card_states_languages = True

    def card_language(self, spec: Any) -> str | None:
        from modeltailor.report.card import language_code

        return language_code(spec)

    def card_input_limits(self, pre: dict[str, Any], fit: dict[str, Any]) -> list[str]:
        from modeltailor.report.card import _md, _pct

        long_texts = fit.get("long_texts")
        if long_texts:
            cap = long_texts.get("max_windows")
            over = long_texts.get("training_texts_over_max_windows")
            windows = f"at most {cap} windows per text" if cap else "no limit on windows per text"
            share = _pct(long_texts.get("share_of_training_texts_windowed"))
            return [
                f"- **Long texts**: {_md(str(long_texts.get('policy', '')))} (max_length "
                f"{long_texts.get('max_length')} tokens, {windows}); {share} of the training "
                "texts needed more than one window"
                + (
                    f", {over} more than {cap} (read as {cap} windows spread over the text)."
                    if over
                    else "."
                )
            ]
        if pre.get("max_length"):
            return [
                f"- **Input length**: texts are read in windows of {pre['max_length']} tokens "
                f"(at most {pre.get('max_windows', '?')} windows per text)."
            ]
        return [
            "- **Input length**: the whole text is read (TF-IDF); words or characters that "
            "were not in the training vocabulary are ignored."
        ]

    # -- report --------------------------------------------------------------------------------
    def snippet(self, item: Any) -> str | None:
        return getattr(item, "text", None)

    # -- doctor --------------------------------------------------------------------------------
    #: Cosine of word-bigram fingerprints at or above which two texts are near duplicates:
    #: >= 95% shared bigrams for texts of equal length. On spamassassin a copy with changed
    #: case, whitespace and an 8-word signature line scores >= 0.95 when the text has at least
    #: ~85 words (65% of e-mails; shorter ones are left to the embeddings), and the bigram sets
    #: of distinct e-mails pass it only for templated mail (`bench/bench_doctor.py duplicates`).
    fingerprint_threshold = 0.95

    def fingerprint(self, item: Any) -> np.ndarray:
        """Word-bigram set of the case-folded text, hashed with random signs into 1,024
        numbers: whitespace and case are gone and an appended line moves it little, unlike a
        sentence embedding, which a signature line can move past the near threshold."""
        return text_fingerprint(text_of(item))

    # -- serving -------------------------------------------------------------------------------
    upload_types = (
        "text/",
        "application/json",
        "application/jsonl",
        "application/x-ndjson",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )

    def read_upload(self, path, name: str) -> list[tuple[str, Any]]:
        """A table (.csv/.tsv/.jsonl/.xlsx: the `text` column, or the only one) or a .txt
        file: one example per row, named `<upload>:line N`; an unusable row refuses it."""
        from modeltailor.data.text import TextItem, read_text_rows
        from modeltailor.errors import DataError
        from modeltailor.modalities.base import InputError

        if path.suffix.lower() not in (".csv", ".tsv", ".jsonl", ".xlsx", ".txt"):
            raise InputError("send texts as .csv, .tsv, .jsonl, .xlsx or .txt (by file name)")
        try:
            rows = read_text_rows(path)
        except DataError as exc:
            raise InputError(str(exc).replace(str(path), name)) from exc
        if rows.skipped:
            first = rows.skipped[0]
            where = str(first.path).replace(str(path), name)
            raise InputError(f"{len(rows.skipped)} unusable row(s), first {where}: {first.reason}")
        if not rows.texts:
            raise InputError("no texts in the file")
        origins = [o.replace(str(path), name) for o in rows.origins]
        return [(o, TextItem(t, o)) for t, o in zip(rows.texts, origins, strict=True)]

    def json_items(self, texts: list[str]) -> list[tuple[str, Any]]:
        from modeltailor.data.text import TextItem

        names = [f"text {i + 1}" for i in range(len(texts))]
        return [(n, TextItem(t, n)) for n, t in zip(names, texts, strict=True)]

    # -- export --------------------------------------------------------------------------------
    def export_spec(self) -> ExportSpec:
        from modeltailor.export import text as export_text
        from modeltailor.export.web_text import text_page_files

        return ExportSpec(
            input_names=["input_ids", "attention_mask"],
            wrap=lambda model, pre, t: export_text.TextGraph(model, t),
            inputs=export_text.text_inputs,
            example=export_text.example_windows,
            describe=export_text.describe,
            dynamic_axes={
                "input_ids": {0: "batch", 1: "length"},
                "attention_mask": {0: "batch", 1: "length"},
            },
            formats=("onnx", "tflite", "web"),
            noun=self.noun,
            refuse=export_text.refusal,
            assets=export_text.write_assets,
            web_page=text_page_files,
            page_inputs=("tokenizer.json",),
            verification=validation_texts,
            quantization="dynamic",
            tflite=export_text.tflite_spec(),
            opset=23,
        )


def validation_texts(run, split: str, limit: int) -> tuple[list, list[str]]:
    """The split's texts as splits.json keeps them (a table's rows have no file to reread)."""
    from modeltailor.data.text import TextItem
    from modeltailor.export.base import ExportError

    splits = run.read_json("splits.json") if run.has("splits.json") else {}
    rec = splits.get(split) or {}
    if "texts" not in rec:
        raise ExportError(
            f"{run.path}: splits.json keeps no {split} texts (a run from before they were "
            "kept, or trained without validation data); pass --data FILE with labelled texts"
        )
    items = [TextItem(t, o) for t, o in zip(rec["texts"], rec["items"], strict=True)]
    return items[:limit], rec["labels"][:limit]


def _write_prediction_rows(data, preds: list[dict]) -> None:
    """The input rows plus `label` and `probability` columns, as CSV on stdout (prefixed
    `predicted_` when the input already has a column of either name)."""
    import csv

    clash = {"label", "probability"} & {c.lower() for c in data.columns}
    label, proba = (
        ("predicted_label", "predicted_probability") if clash else ("label", "probability")
    )
    writer = csv.DictWriter(sys.stdout, fieldnames=[*data.columns, label, proba])
    writer.writeheader()
    for row, p in zip(data.rows, preds, strict=True):
        writer.writerow({**row, label: p["label"], proba: f"{p['probability']:.6f}"})


TEXT = register_modality(TextModality())

