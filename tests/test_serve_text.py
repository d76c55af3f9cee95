"""`tailor serve` for text runs (issue 18): JSON texts and uploaded tables, the ONNX export and
PyTorch backends, the image server's error policy, fuzzed from the OpenAPI schema."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from modeltailor import load_classifier
from modeltailor.cli import main
from modeltailor.export import export_onnx
from modeltailor.serve import create_app

from .test_serve import assert_error, live

EXAMPLES = Path(__file__).parents[1] / "src" / "modeltailor" / "examples" / "text"
TEXTS = [
    "I was charged twice for my order",
    "Where is my parcel? It has been two weeks",
    "The app crashes when I log in",
    "Café İstanbul a𠮷b",
    " ".join(["the refund never arrived, please check the invoice."] * 120),  # many windows
]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("serve-text") / "probe"
    csv = EXAMPLES / "tickets_en.csv"
    assert (
        main(["train", str(csv), "--output", str(run), "--quiet", "--backbone", "minilm-l6"]) == 0
    )
    export_onnx(run)
    return run


@pytest.fixture(scope="module")
def urls(text_run):
    with live(create_app(text_run)) as onnx_url, live(create_app(text_run, "pytorch")) as torch:
        yield {"onnx": onnx_url, "pytorch": torch}


@pytest.mark.parametrize("backend", ["onnx", "pytorch"])
def test_json_texts_answer_what_the_python_api_does(urls, text_run, backend):
    want = load_classifier(text_run).predict_proba(TEXTS)
    r = httpx.post(f"{urls[backend]}/predict", json={"texts": TEXTS}, params={"k": 3}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] == backend
    labels = json.loads((text_run / "labels.json").read_text())
    for k, (row, p) in enumerate(zip(body["predictions"], want, strict=True)):
        assert row["file"] == f"text {k + 1}"
        assert row["label"] == labels[int(p.argmax())]
        assert abs(row["probability"] - float(p.max())) < 1e-4


def test_onnx_serves_the_fused_server_graph(urls):
    """The export's onnxruntime server graph is what answers (verified like model.onnx)."""
    meta = httpx.get(f"{urls['onnx']}/metadata", timeout=30).json()
    assert meta["model_file"] == "export/model.server.onnx"


def test_an_uploaded_table_is_one_example_per_row(urls, text_run):
    table = "id,text\n1,the app crashes on start\n2,please refund the double charge\n"
    files = [("files", ("new tickets.csv", table.encode(), "text/csv"))]
    r = httpx.post(f"{urls['onnx']}/predict", files=files, timeout=60)
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert [row["file"] for row in rows] == ["new tickets.csv:line 2", "new tickets.csv:line 3"]
    want = load_classifier(text_run).predict(
        ["the app crashes on start", "please refund the double charge"]
    )
    assert [row["label"] for row in rows] == list(want)


def test_bad_requests_name_the_problem(urls):
    url = f"{urls['onnx']}/predict"
    assert_error(httpx.post(url, json={"texts": []}), 422, "at least one")
    assert_error(httpx.post(url, json={"texts": ["ok", "  "]}), 422, "texts[1]", "empty")
    assert_error(httpx.post(url, json={"texts": [3]}), 422, "texts[0]")
    assert_error(httpx.post(url, json={"words": ["x"]}), 422, "texts")
    assert_error(httpx.post(url, content=b"{", headers={"content-type": "application/json"}), 400)
    assert_error(httpx.post(url, content=b"hi", headers={"content-type": "text/plain"}), 415)
    assert_error(httpx.post(url, json={"texts": ["x"] * 1001}), 400, "at most 1000")
    empty_row = "id,text\n1,fine\n2,\n"
    files = [("files", ("rows.csv", empty_row.encode(), "text/csv"))]
    body = assert_error(httpx.post(url, files=files), 422, "rows.csv:line 3")
    assert body["files"][0]["file"] == "rows.csv"
    photo = [("files", ("cat.png", b"\x89PNG....", "image/png"))]
    assert_error(httpx.post(url, files=photo), 415, "send texts")
    wav = [("files", ("a.wav", b"RIFF", "application/octet-stream"))]
    assert_error(httpx.post(url, files=wav), 422, ".csv")


def test_an_unservable_text_run_is_refused_in_one_line(tmp_path):
    from modeltailor.errors import RunError

    run = tmp_path / "baseline"
    csv = EXAMPLES / "tickets_en.csv"
    assert main(["train", str(csv), "--strategy", "baseline", "--output", str(run), "--quiet"]) == 0
    with pytest.raises(RunError, match="cannot serve: the TF-IDF baseline"):
        create_app(run)


def test_fuzzed_requests_never_get_a_server_error(urls):
    api = schemathesis.openapi.from_url(f"{urls['onnx']}/openapi.json")
    cases = st.one_of([api.as_strategy(mode) for mode in GenerationMode])
    seen: set[int] = set()

    @given(case=cases)
    @settings(
        max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case):
        response = case.call(timeout=60)
        seen.add(response.status_code)
        assert response.status_code < 500, response.text
        if response.status_code >= 400 and response.status_code not in (404, 405):
            assert isinstance(response.json()["detail"], str)

    check()
    assert 200 in seen and len(seen) > 1
    assert np.isfinite(len(seen))
