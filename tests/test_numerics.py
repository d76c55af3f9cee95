"""Numeric paths of frozen extraction (issue 21): fp32 stays exactly today's, bf16 is used only
where the hardware is fast at it and a check keeps accuracy, and the two never share a cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from modeltailor import ImageClassifier, load_image_folder
from modeltailor.backbones import get_backbone
from modeltailor.backbones.model import TailoredModel
from modeltailor.errors import ModelTailorError
from modeltailor.training import numerics
from modeltailor.training.features import CACHE_FORMAT, EmbeddingCache, extract_embeddings
from modeltailor.training.inputs import (
    PREFETCH_BATCHES,
    pipeline_for,
    pooled_outputs,
    prefetched,
    spare_core,
)
from tests.conftest import copy_classes, hymenoptera

HAS_BF16 = numerics.bf16_hardware("cpu") is not None


@pytest.fixture()
def own_cache(tmp_path, monkeypatch) -> Path:
    """A cache root of this test's own: decisions written by one test never reach another."""
    root = tmp_path / "cache"
    monkeypatch.setenv("MODELTAILOR_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def lite0():
    spec = get_backbone("efficientnet_lite0")
    return spec, spec.inference_preprocessing(), TailoredModel(spec.build(2))


@pytest.fixture(scope="module")
def few_images(tmp_path_factory, fashion_dir):
    folder = copy_classes(
        fashion_dir, tmp_path_factory.mktemp("few"), {"bag": "bag", "shirt": "shirt"}, 6
    )
    return load_image_folder(folder)


def test_bf16_hardware_is_read_from_the_cpu_flags():
    assert numerics.bf16_hardware("cpu", frozenset({"sse4_2", "avx2", "avx512f"})) is None
    assert numerics.bf16_hardware("cpu", frozenset({"avx512f", "avx512_bf16"})) == "avx512_bf16"
    both = frozenset({"avx512_bf16", "amx_tile", "amx_bf16"})
    assert numerics.bf16_hardware("cpu", both) == "amx_bf16"


def test_cpu_flags_are_found_on_this_machine():
    flags = numerics.cpu_flags()
    if Path("/proc/cpuinfo").exists():
        assert "fpu" in flags or "fp" in flags or "neon" in flags or "asimd" in flags


def test_settings_are_checked(own_cache, lite0):
    spec, pre, model = lite0
    with pytest.raises(ModelTailorError, match="embed_precision='fp16'"):
        numerics.plan_numerics("fp16", spec, pre, model, "cpu")


def test_forcing_a_path_is_obeyed_where_it_applies(own_cache, lite0):
    spec, pre, model = lite0
    assert numerics.plan_numerics("fp32", spec, pre, model, "cpu").path == "fp32"
    forced = numerics.plan_numerics("bf16", spec, pre, model, "cpu")
    assert (forced.path, forced.check) == ("bf16", False)
    # an ONNX graph has no torch layers to autocast: forcing bf16 on it is refused, with why
    onnx_spec = get_backbone("speech-embedding")
    onnx_model = TailoredModel(onnx_spec.build(2))
    refused = numerics.plan_numerics("bf16", onnx_spec, onnx_spec.preprocessing, onnx_model, "cpu")
    assert refused.path == "fp32" and "not a torch graph" in refused.reason


def test_without_bf16_hardware_auto_checks_onnx_runtime_else_keeps_fp32(
    own_cache, lite0, monkeypatch
):
    spec, pre, model = lite0
    monkeypatch.setattr(numerics, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    # texts are not traced: only bf16 hardware could give them another path
    text_pre = get_backbone("minilm-l6").inference_preprocessing()
    assert "not traced" in numerics.onnx_applies(text_pre, "cpu")
    assert "CPU only" in numerics.onnx_applies(pre, "cuda")
    plan = numerics.plan_numerics("auto", spec, pre, model, "cpu")
    assert (plan.path, plan.check, plan.hardware) == ("onnx", True, None)
    assert plan.candidates == ("onnx",)
    monkeypatch.setattr(numerics, "onnx_applies", lambda pre, device: "onnxruntime is missing")
    plan = numerics.plan_numerics("auto", spec, pre, model, "cpu")
    assert (plan.path, plan.check, plan.hardware) == ("fp32", False, None)
    assert "no bf16 hardware" in plan.reason and "onnxruntime is missing" in plan.reason


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has neither AMX nor AVX-512 BF16")
def test_auto_tries_onnx_and_bf16_for_images_on_this_machine_then_follows_its_decision(
    own_cache, lite0
):
    spec, pre, model = lite0
    plan = numerics.plan_numerics("auto", spec, pre, model, "cpu")
    assert plan.check and plan.candidates == (("onnx", "bf16") if HAS_BF16 else ("onnx",))
    decided = {"numeric_path": "fp32", "why": "nothing was faster here"}
    numerics.save_decision(plan, spec, pre, decided)
    again = numerics.plan_numerics("auto", spec, pre, model, "cpu")
    assert (again.path, again.check) == ("fp32", False)
    assert "nothing was faster here" in again.reason
    # "slower" seen on fewer fits than SPEED_CHECKS may have been a busy machine: check again
    numerics.save_decision(plan, spec, pre, {**decided, "slower_checks": 1})
    retry = numerics.plan_numerics("auto", spec, pre, model, "cpu")
    assert (retry.path, retry.check) == ("onnx", True) and "again" in retry.reason


def test_speed_and_accuracy_rules():
    fast = {"fp32": [1.0, 1.0, 5.0], "bf16": [0.7, 0.7, 0.7]}  # one burst of load on fp32
    assert numerics.speed_decision(fast) == (True, 1.429)
    assert numerics.speed_decision({"fp32": [1.0, 1.0], "bf16": [0.95, 0.97]})[0] is False
    assert numerics.speed_decision({"fp32": [], "bf16": []}) == (False, 0.0)
    assert numerics.speed_decision({"fp32": [1.0, 1.0], "onnx": [0.5, 0.5]}, "onnx") == (True, 2.0)
    assert numerics.accuracy_decision(0.95, 0.94)
    assert not numerics.accuracy_decision(0.95, 0.935)
    assert not numerics.accuracy_decision(0.935, 0.95)


def test_cache_keys_differ_by_numeric_path_and_fp32_keeps_its_old_key(tmp_path, lite0):
    spec, pre, _ = lite0
    fp32 = EmbeddingCache(spec, pre, root=tmp_path)
    bf16 = EmbeddingCache(spec, pre, root=tmp_path, numerics="bf16")
    assert fp32.dir != bf16.dir
    assert json.loads((bf16.dir / "key.json").read_text())["numerics"] == "bf16"
    old_key = {
        "format": CACHE_FORMAT,
        "architecture": spec.architecture,
        "weights": spec.weights_identity(),
        "preprocessing": pre.to_dict(),
    }
    digest = hashlib.sha1(json.dumps(old_key, sort_keys=True).encode()).hexdigest()[:16]
    assert fp32.dir.name.endswith(digest)  # caches written before numeric paths stay valid


def test_fp32_embeddings_are_exactly_todays_and_bf16_ones_are_kept_apart(
    tmp_path, lite0, few_images
):
    spec, pre, model = lite0
    items = list(few_images.items)
    with torch.inference_mode():
        today, _ = pooled_outputs(model.eval().embed, pipeline_for(model, pre), items, 32, 0, {})
    fp32_cache = EmbeddingCache(spec, pre, root=tmp_path)
    x32, bad = extract_embeddings(model, few_images, pre, fp32_cache, verbose=False)
    assert not bad and np.array_equal(x32, today)
    bf16_cache = EmbeddingCache(spec, pre, root=tmp_path, numerics="bf16")
    x16, _ = extract_embeddings(model, few_images, pre, bf16_cache, verbose=False)
    assert not np.array_equal(x16, x32)
    cos = (x16 * x32).sum(1) / np.linalg.norm(x16, axis=1) / np.linalg.norm(x32, axis=1)
    assert cos.min() > 0.99
    # each cache holds its own rows: reading again gives each path's rows back
    assert np.array_equal(extract_embeddings(model, few_images, pre, fp32_cache)[0], x32)
    assert np.array_equal(extract_embeddings(model, few_images, pre, bf16_cache)[0], x16)


def test_a_probe_records_its_numeric_path(own_cache, few_images):
    train, val, _ = few_images.split(0.5, 0.5, 0.0)
    forced = ImageClassifier(verbose=False, embed_precision="bf16").fit(train, val)
    used = forced.fit_info_["embeddings"]
    assert used["numeric_path"] == "bf16" and used["setting"] == "bf16"
    assert used["items_embedded"] == len(train) + len(val)
    assert forced.score(val) >= 0.5  # in-process predictions read the bf16 cache
    auto = ImageClassifier(verbose=False).fit(train, val)
    assert auto.fit_info_["embeddings"]["numeric_path"] == "fp32"
    if HAS_BF16:  # 6 validation images decide nothing, and nothing is recorded
        assert "too few" in auto.fit_info_["embeddings"]["reason"]
        assert not (own_cache / "numerics").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_BF16, reason="this CPU has neither AMX nor AVX-512 BF16")
def test_auto_checks_bf16_and_onnx_once_on_real_photos_and_records_why(own_cache):
    train, val, _ = load_image_folder(hymenoptera()).split()
    first = ImageClassifier(verbose=False).fit(train, val)
    used = first.fit_info_["embeddings"]
    assert used["reason"].startswith("checked now")
    assert used["check"]["check_items"] == len(val) and used["check"]["bf16_speedup"] > 0
    assert used["check"]["onnx_speedup"] > 0
    if used["numeric_path"] != "fp32":
        path = used["numeric_path"]
        check = used["check"]
        drop = check["accuracy_fp32_embeddings"] - check[f"accuracy_{path}_embeddings"]
        assert abs(drop) <= numerics.MAX_ACCURACY_DROP + 1e-9
    (decision,) = (own_cache / "numerics").glob("*.json")
    assert json.loads(decision.read_text())["numeric_path"] == used["numeric_path"]
    again = ImageClassifier(verbose=False).fit(train, val)
    used_again = again.fit_info_["embeddings"]
    if "slower_checks" in used["check"]:  # "bf16 slower" is checked again (busy machine?)
        assert used_again["reason"].startswith("checked now")
        return
    assert used_again["numeric_path"] == used["numeric_path"]
    assert used_again["reason"].startswith("decided on this machine")
    assert used_again["items_embedded"] == 0  # every row came from that path's cache


def test_onnx_runtime_embeddings_match_torch_and_a_probe_can_be_forced_onto_them(
    own_cache, lite0, few_images, monkeypatch
):
    from modeltailor.modalities import get_modality
    from modeltailor.training import onnx_embed

    spec, pre, model = lite0
    x32, _ = extract_embeddings(model, few_images, pre, EmbeddingCache(spec, pre), verbose=False)
    ort_cache = EmbeddingCache(spec, pre, numerics="onnx")
    assert ort_cache.dir != EmbeddingCache(spec, pre).dir
    x_ort, bad = extract_embeddings(model, few_images, pre, ort_cache, verbose=False)
    assert not bad and np.abs(x_ort - x32).max() <= 1e-3 * max(1.0, np.abs(x32).max())
    assert len(list((own_cache / "graphs").glob("*.onnx"))) == 1  # traced once, kept
    # the graph is checked against this network once per process, again once it changes
    checks = []
    check = onnx_embed.OrtEmbedder._check
    monkeypatch.setattr(
        onnx_embed.OrtEmbedder, "_check", lambda s, n, e: checks.append(1) or check(s, n, e)
    )
    example = get_modality("image").embedding_example(pre)
    onnx_embed.OrtEmbedder(model, spec, example, own_cache)
    assert checks == []
    with torch.no_grad():
        next(model.parameters()).mul_(1.0)  # an in-place change, as an optimiser step
    onnx_embed.OrtEmbedder(model, spec, example, own_cache)
    assert checks == [1]
    train, val, _ = few_images.split(0.5, 0.5, 0.0)
    forced = ImageClassifier(verbose=False, embed_precision="onnx").fit(train, val)
    used = forced.fit_info_["embeddings"]
    assert used["numeric_path"] == "onnx" and used["items_embedded"] == 0  # its cache's rows
    assert forced.score(val) >= 0.5


def test_a_graph_that_disagrees_with_torch_is_never_used(own_cache, few_images, monkeypatch):
    from modeltailor.training import onnx_embed

    monkeypatch.setattr(onnx_embed, "MAX_RELATIVE_DIFFERENCE", -1.0)  # any difference fails
    train, val, _ = few_images.split(0.5, 0.5, 0.0)
    clf = ImageClassifier(verbose=False, embed_precision="onnx").fit(train, val)
    used = clf.fit_info_["embeddings"]
    assert used["numeric_path"] == "fp32" and "differ from PyTorch's" in used["reason"]
    assert not list((own_cache / "graphs").glob("*.onnx"))  # the wrong graph was removed


def test_prefetched_batches_arrive_in_order_and_errors_reach_the_reader():
    assert list(prefetched(iter(range(10)))) == list(range(10))

    def failing():
        yield 1
        raise ValueError("unreadable batch")

    with pytest.raises(ValueError, match="unreadable batch"):
        list(prefetched(failing()))
    reads = []

    def endless():
        while True:
            reads.append(1)
            yield len(reads)

    first = prefetched(endless())
    assert next(first) == 1
    first.close()  # stopping early stops the reading thread
    stopped_at = len(reads)
    assert stopped_at <= 1 + PREFETCH_BATCHES + 1


def test_a_reading_thread_is_used_only_when_torch_leaves_a_core_free():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert spare_core() == (len(os.sched_getaffinity(0)) > 1)
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        assert not spare_core()
    finally:
        torch.set_num_threads(threads)
