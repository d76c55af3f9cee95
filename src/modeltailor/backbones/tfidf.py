"""The `baseline` for text: TF-IDF n-grams + logistic regression, no pretraining at all.

It is a catalogue entry like any backbone, so it trains, evaluates, saves, loads and predicts
through the same classifier, run folder and batch inference: `TfidfText` is a module whose
"features" are TF-IDF vectors (computed by scikit-learn, batch by batch) and whose head is the
Linear layer the logistic regression is copied into. The vocabulary and IDF weights are saved
as JSON beside the weights, never pickled.

Word 1-2-grams for space-separated languages; character 1-3-grams when the training texts
are mostly CJK (Japanese has no spaces, so "words" would be whole sentences).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modeltailor.backbones.catalogue import (
    CLASSICAL,
    BackboneSpec,
    TextPreprocessing,
    register_backbone,
)
from modeltailor.errors import BackboneError

ASSETS_FILE = "tfidf.json"
MAX_FEATURES = 200_000
#: Regularisation grid of the baseline's logistic regression (sparse, unscaled features).
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
WORD_SETTINGS: dict[str, Any] = {
    "analyzer": "word",
    "ngram_range": [1, 2],
    "min_df": 2,
    "sublinear_tf": True,
    "lowercase": True,
}
CHAR_SETTINGS: dict[str, Any] = {
    "analyzer": "char",
    "ngram_range": [1, 3],
    "min_df": 2,
    "sublinear_tf": True,
    "lowercase": True,
}


class TfidfText(nn.Module):
    """TF-IDF features + a Linear head, with the small timm-like contract of TailoredModel."""

    always_frozen: tuple[str, ...] = ()

    def __init__(self, settings: dict[str, Any], num_classes: int = 0) -> None:
        super().__init__()
        self.settings = dict(settings)
        self.vectorizer = None
        self.num_features = 0
        self.num_classes = num_classes
        self.head: nn.Module = nn.Identity()

    # -- fitting the vocabulary ------------------------------------------------------------
    def fit_vocabulary(self, texts: Sequence[str]):
        """Learn vocabulary + IDF on training texts; returns their TF-IDF matrix (sparse)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        kw = {**self.settings, "ngram_range": tuple(self.settings["ngram_range"])}
        min_df = kw["min_df"] if len(texts) >= 20 else 1  # a handful of examples: keep all
        self.vectorizer = TfidfVectorizer(
            **{**kw, "min_df": min_df}, max_features=MAX_FEATURES, dtype=np.float32
        )
        matrix = self.vectorizer.fit_transform(list(texts))
        self.num_features = matrix.shape[1]
        self.reset_classifier(self.num_classes)
        return matrix

    def transform(self, texts: Sequence[str]):
        if self.vectorizer is None:
            raise BackboneError("the TF-IDF vocabulary is not fitted")
        return self.vectorizer.transform(list(texts))

    # -- timm-like contract -------------------------------------------------------------------
    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        return {"stem": r"^$"}  # no body: only the head has parameters

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        if num_classes > 0 and self.num_features > 0:
            self.head = nn.Linear(self.num_features, num_classes)
        else:
            self.head = nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features if pre_logits else self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(x)

    def input_pipeline(self):
        return TfidfPipeline(self)

    @torch.inference_mode()
    def logits(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Head outputs for raw texts, a batch of dense TF-IDF rows at a time."""
        out = [
            self.head(torch.from_numpy(self.transform(texts[s : s + batch_size]).toarray()))
            .float()
            .numpy()
            for s in range(0, len(texts), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)

    def fit_classical(self, model, train, val, settings) -> dict[str, Any]:
        return fit_baseline(model, train, val, settings)

    # -- saving ------------------------------------------------------------------------------
    def save_assets(self, folder: Path) -> None:
        """Vocabulary (terms in column order) and IDF weights as JSON."""
        from modeltailor.run import atomic_write_json

        if self.vectorizer is None:
            raise BackboneError("nothing to save: the TF-IDF vocabulary is not fitted")
        folder.mkdir(parents=True, exist_ok=True)
        terms = self.vectorizer.get_feature_names_out().tolist()
        doc = {
            "settings": self.settings,
            "terms": terms,
            "idf": [float(v) for v in self.vectorizer.idf_],
        }
        atomic_write_json(folder / ASSETS_FILE, doc)

    @classmethod
    def load(cls, folder: Path, num_classes: int) -> TfidfText:
        from sklearn.feature_extraction.text import TfidfVectorizer

        path = folder / ASSETS_FILE
        if not path.is_file():
            raise BackboneError(f"{path}: missing (the baseline's vocabulary)")
        doc = json.loads(path.read_text(encoding="utf-8"))
        net = cls(doc["settings"], num_classes)
        kw = {**doc["settings"], "ngram_range": tuple(doc["settings"]["ngram_range"])}
        vocabulary = {term: i for i, term in enumerate(doc["terms"])}
        vec = TfidfVectorizer(**{**kw, "min_df": 1}, vocabulary=vocabulary, dtype=np.float32)
        vec.idf_ = np.asarray(doc["idf"], dtype=np.float32)
        net.vectorizer = vec
        net.num_features = len(vocabulary)
        net.reset_classifier(num_classes)
        return net


class TfidfPipeline:
    """Dense TF-IDF rows, one per text, computed a batch at a time (memory stays flat)."""

    channels_last = False

    def __init__(self, net: TfidfText) -> None:
        self.net = net

    def units(self, items: Sequence[Any]) -> int:
        return len(items)

    def inference_batches(self, items, batch_size, num_workers, bad):
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            x = self.net.transform([item.text for item in chunk]).toarray()
            yield torch.from_numpy(x), list(range(start, start + len(chunk))), len(chunk)

    def training_loaders(self, *args, **kwargs):
        raise BackboneError("the TF-IDF baseline is fitted in closed form, not by the loop")


def fit_baseline(model, train, val, settings) -> dict[str, Any]:
    """Vocabulary on the training texts, then a logistic regression whose C is chosen by
    stratified k-fold cross-validation over train + validation, fitted on the training texts
    and copied into the Linear head."""
    from modeltailor.training.heads import (
        baseline_score,
        fit_logreg_head,
        selection_record,
        stack_groups,
    )

    net: TfidfText = model.net
    texts = [item.text for item in train.items]
    net.settings = pick_settings(texts)
    x_train = net.fit_vocabulary(texts)
    model.refresh_groups()
    x_val = y_val = None
    if val is not None and len(val):
        x_val, y_val = net.transform([i.text for i in val.items]), np.asarray(val.labels)
    fitted = fit_logreg_head(
        model,
        x_train,
        np.asarray(train.labels),
        x_val,
        y_val,
        len(train.class_names),
        settings,
        C_GRID,
        scale=False,
        cv=True,
        groups=stack_groups(train, val, len(train), 0 if y_val is None else len(y_val)),
    )
    selection = selection_record(fitted, "TF-IDF baseline alone")
    selection["baseline"] = baseline_score(selection, "TF-IDF + logistic regression")
    return {
        "head": "logistic regression (L2) on TF-IDF features, copied into the linear head",
        "features": {**net.settings, "vocabulary_size": net.num_features},
        **{k: fitted[k] for k in ("C", "selected_by")},
        "class_weights": "balanced" if fitted["balanced"] else None,
        "rows": fitted["rows"],
        "selection": selection,
    }


def pick_settings(texts: Sequence[str]) -> dict[str, Any]:
    """Word n-grams, or character n-grams when CJK texts are common (no spaces to split on)."""
    from modeltailor.backbones.text import CJK_LETTER_SHARE, CJK_TEXT_SHARE, cjk_share

    cjk = np.mean([cjk_share(t) >= CJK_LETTER_SHARE for t in texts]) if texts else 0.0
    return dict(CHAR_SETTINGS if cjk >= CJK_TEXT_SHARE else WORD_SETTINGS)


def build_tfidf(spec: BackboneSpec, num_classes: int, pretrained: bool = True) -> TfidfText:
    return TfidfText(WORD_SETTINGS, num_classes)


register_backbone(
    BackboneSpec(
        name="tfidf",
        modality="text",
        architecture="tfidf-logreg",
        preprocessing=TextPreprocessing(max_length=0, pooling="none", normalize=False),
        params_m=0.0,
        license="-",
        description="no pretraining: TF-IDF word 1-2-grams (char 1-3 for CJK) + logistic "
        "regression; what pretraining is measured against",
        # its n-gram features are computed outside any graph: not exportable yet
        capabilities=replace(CLASSICAL, exportable=False),
        languages="any (characters for CJK)",
        builder=build_tfidf,
    )
)
