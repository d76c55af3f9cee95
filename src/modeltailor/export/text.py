"""Text models as graphs of integers: token windows in, logits out; the tokenizer beside them.

The graph takes `input_ids` and `attention_mask` (int64, batch and length dynamic) of the
windows `TextEncoder.encode` makes, and returns each window's logits divided by the run's
calibration temperature. An app tokenises with the run's `tokenizer.json` (no special tokens),
cuts the ids into windows as `preprocessing.json` states, runs the graph and averages the
windows' logits per text, exactly as `tailor predict` does. A tokenizer inside the graph would
be simpler to call but is not portable: onnxruntime-extensions' tokenizer ops are missing from
the stock onnxruntime-web build, and its BertTokenizer normalises Japanese and accented text
differently from the Python tokenizer.

A linear-probe run may carry a TF-IDF side head (`modalities/text.py`): its logits are added to
the windows' mean. It ships as `tfidf_side.json` (vocabulary, IDF, analyzer settings, weights
already divided by the temperature); `side_logits_from_json` is its reference implementation,
checked against scikit-learn when the export is written.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modeltailor.backbones.text import pack
from modeltailor.run import atomic_write_json

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
SIDE_FILE = "tfidf_side.json"
#: How far the JSON side head may drift from scikit-learn's (float32 sums in another order).
SIDE_TOLERANCE = 1e-4
_SPACES = re.compile(r"\s\s+")  # scikit-learn's char analyzer collapses whitespace runs


class TextGraph(nn.Module):
    """(input_ids, attention_mask) -> logits / temperature. token_type_ids are all zeros for
    single-segment input, which is what the encoder uses when none are given (inside)."""

    def __init__(self, model: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(pack(input_ids, attention_mask))
        return logits / self.temperature if self.temperature != 1.0 else logits


def text_inputs(items: list, clf: Any) -> tuple[dict[str, np.ndarray], list[int]]:
    """Every window of every text as padded rows, and the text each row belongs to."""
    from modeltailor.modalities.text import text_of

    encoder = clf.model_.net
    windows = encoder.encode([text_of(item) for item in items])
    rows = [(owner, w) for owner, wins in enumerate(windows) for w in wins]
    length = max((len(w) for _, w in rows), default=2)
    pad = encoder.tokenizer.pad_token_id or 0
    ids = np.full((len(rows), length), pad, np.int64)
    mask = np.zeros((len(rows), length), np.int64)
    for r, (_, w) in enumerate(rows):
        ids[r, : len(w)] = w
        mask[r, : len(w)] = 1
    return {"input_ids": ids, "attention_mask": mask}, [owner for owner, _ in rows]


def example_windows(pre: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A traced batch: two windows of different real lengths (ids every vocabulary has)."""
    ids = torch.full((2, 16), 101, dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    mask[1, 10:] = 0
    return ids, mask


def refusal(clf: Any) -> str | None:
    """Why a text run has no graph to export (None: it has)."""
    net = clf.model_.net
    kind = type(net).__name__
    if kind == "TfidfText":
        return (
            "the TF-IDF baseline is not exportable yet (it is a comparison point); "
            "export a linear-probe, fine-tune or lora run"
        )
    if not hasattr(net, "encode") or not hasattr(net, "tokenizer"):
        return (
            f"{clf.spec_.name if hasattr(clf, 'spec_') else kind} runs as a numpy model with no "
            "graph to export; train on minilm-l6 or e5-small-multilingual to ship it"
        )
    return None


def describe(pre: Any) -> dict[str, Any]:
    """preprocessing.json's fixed part: how a text becomes the graph's rows and back."""
    return {
        "input": "input_ids and attention_mask: int64 (windows, length), batch and length "
        "dynamic; token_type_ids are zeros inside the graph",
        "max_length": pre.max_length,
        "window_overlap": pre.window_overlap,
        "max_windows": pre.max_windows,
        "prefix": pre.prefix,
        "windows": "tokenise the prefix followed by the text without special tokens; drop "
        "the prefix ids (prefix_ids) from the front (when the ids do not start with them, the "
        "prefix merged with the text: tokenise the text alone instead); cut the rest into "
        "chunks of window_content_tokens ids, each starting step = window_content_tokens - "
        "int(window_content_tokens * window_overlap) after the previous, plus a last chunk "
        "ending at the text's end; keep at most max_windows chunks, evenly spaced "
        "(round-half-even of i * (chunks - 1) / (max_windows - 1)); each window is "
        "[cls] + prefix_ids + chunk + [sep]. The tokenizer's own truncation settings are "
        "not used.",
        "combine": "the mean of a text's window logits (plus the TF-IDF side head's logits "
        "when tfidf_side is present); softmax for probabilities",
        "output": "logits per window (divided by the calibration temperature), classes in "
        "labels.json order",
    }


def write_assets(job: Any, out_dir: Path) -> dict[str, Any]:
    """tokenizer.json + tokenizer_config.json (and tfidf_side.json) into the export folder;
    what preprocessing.json says about them."""
    clf = job.classifier
    encoder = clf.model_.net
    tok = encoder.tokenizer
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        for name in TOKENIZER_FILES:
            shutil.copyfile(Path(tmp) / name, out_dir / name)
    digest = hashlib.sha256((out_dir / "tokenizer.json").read_bytes()).hexdigest()
    doc: dict[str, Any] = {
        "tokenizer": {
            "file": "tokenizer.json",
            "config": "tokenizer_config.json",
            "sha256": digest,
            "class": type(tok).__name__,
            "add_special_tokens": False,
        },
        "special_tokens": {
            role: {"token": getattr(tok, f"{role}_token"), "id": getattr(tok, f"{role}_token_id")}
            for role in ("cls", "sep", "pad")
        },
        "prefix_ids": list(encoder._prefix_ids),
        "window_content_tokens": encoder.window_budget,
    }
    side = getattr(clf, "side_", None)
    if side is not None:
        doc["tfidf_side"] = write_side(job, out_dir / SIDE_FILE)
    else:
        (out_dir / SIDE_FILE).unlink(missing_ok=True)  # an older export's
    return doc


def write_side(job: Any, path: Path) -> dict[str, Any]:
    """The TF-IDF side head as JSON (no pickle): what an app needs to add its logits. Its
    logits from the JSON alone must equal scikit-learn's on the verification texts."""
    from modeltailor.export.base import ExportError
    from modeltailor.modalities.text import text_of

    side, temperature = job.classifier.side_, job.classifier.temperature_
    vec = side.vectorizer
    head = side.get_classifier()
    weight = head.weight.detach().double().numpy() / temperature
    bias = head.bias.detach().double().numpy() / temperature
    doc = {
        "analyzer": vec.analyzer,
        "ngram_range": list(vec.ngram_range),
        "lowercase": bool(vec.lowercase),
        "token_pattern": vec.token_pattern if vec.analyzer == "word" else None,
        "sublinear_tf": bool(vec.sublinear_tf),
        "norm": vec.norm,
        "terms": vec.get_feature_names_out().tolist(),
        "idf": [float(v) for v in vec.idf_],
        "weight": [[float(v) for v in row] for row in weight],
        "bias": [float(v) for v in bias],
        "combine": "logits = mean of the window logits + weight @ tfidf(text) + bias",
    }
    got = side_logits_from_json(doc, [text_of(item) for item in job.items])
    diff = float(np.abs(got - job.side).max()) if len(got) else 0.0
    if diff > SIDE_TOLERANCE:
        raise ExportError(
            f"the TF-IDF side head computed from {path.name} differs from scikit-learn's by "
            f"{diff:.2e} on the verification texts; nothing was written"
        )
    atomic_write_json(path, doc)
    return {
        "file": path.name,
        "features": len(doc["terms"]),
        "analyzer": vec.analyzer,
        "max_abs_logit_diff_vs_sklearn": diff,
    }


def side_logits_from_json(doc: dict[str, Any], texts: list[str]) -> np.ndarray:
    """The side head's logits computed from tfidf_side.json alone: what an app implements.

    Word analyzer: lowercase, the token regex, n-grams joined by one space; char analyzer:
    lowercase, runs of whitespace made one space, n-grams of characters. tf = 1 + ln(count)
    (sublinear), times idf, L2-normed.
    """
    index = {term: i for i, term in enumerate(doc["terms"])}
    idf = np.asarray(doc["idf"], np.float64)
    weight = np.asarray(doc["weight"], np.float64)
    bias = np.asarray(doc["bias"], np.float64)
    low, high = doc["ngram_range"]
    pattern = re.compile(doc["token_pattern"]) if doc["token_pattern"] else None
    out = np.zeros((len(texts), len(bias)), np.float64)
    for row, text in enumerate(texts):
        text = text.lower() if doc["lowercase"] else text
        units: list[str] = pattern.findall(text) if pattern else list(_SPACES.sub(" ", text))
        joiner = " " if pattern else ""
        counts: dict[int, int] = {}
        for n in range(low, high + 1):
            for start in range(len(units) - n + 1):
                k = index.get(joiner.join(units[start : start + n]))
                if k is not None:
                    counts[k] = counts.get(k, 0) + 1
        if counts:
            cols = np.fromiter(counts, np.int64)
            tf = np.fromiter(counts.values(), np.float64)
            tf = 1 + np.log(tf) if doc["sublinear_tf"] else tf
            values = tf * idf[cols]
            if doc["norm"] == "l2":
                values /= np.linalg.norm(values) or 1.0
            out[row] = weight[:, cols] @ values
        out[row] += bias
    return out


def read_side(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / SIDE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def tflite_spec() -> Any:
    """TFLite for apps: one window of `max_length` ids (int32), padded with the pad id and
    mask 0; the app tokenises and windows as preprocessing.json says."""
    from modeltailor.modalities.base import TfliteSpec

    def example(job: Any) -> tuple:
        length = job.preprocessing.max_length
        return torch.zeros(1, length, dtype=torch.int64), torch.ones(1, length, dtype=torch.int64)

    def app_input(job: Any) -> dict[str, Any]:
        length = job.preprocessing.max_length
        return {
            "shape": [1, length],
            "inputs": ["input_ids", "attention_mask"],
            "dtype": "int32",
            "padding": "one window per call: its ids, then the tokenizer's pad id up to "
            "max_length; attention_mask 1 over the window's ids and 0 over the padding",
            "tokenizer": "tokenizer.json and tokenizer_config.json beside the model; the "
            "window rule and special tokens are in preprocessing.json",
            "combine": "the mean of a text's window logits (plus tfidf_side.json's logits "
            "when present), then softmax",
        }

    return TfliteSpec(example=example, app_input=app_input)
