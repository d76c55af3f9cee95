/*
 * What every modeltailor web page does the same way: decode the embedded base64, start
 * onnxruntime-web on the embedded wasm, show the status line and the top predictions, take
 * dropped files. One copy for the image (app.js), text (text_app.js) and audio (audio_app.js)
 * pages.
 *
 * Everything arrives through classic <script> tags (no fetch, no module workers), because
 * browsers refuse both for pages opened from file://. The runtime's wasm binary and the model
 * are base64 inside .js files; the runtime's small ES-module glue is imported from a blob: URL.
 * Inference is single-threaded: threads need cross-origin isolation, which file:// never has.
 */
(function (root) {
  "use strict";

  const $ = (id) => document.getElementById(id);

  function base64Bytes(text) {
    if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(text);
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function setStatus(state, text) {
    const status = $("status");
    status.dataset.state = state;
    status.textContent = text;
    document.body.dataset.state = state;
  }

  /* The model's base64 parts (window.MODELTAILOR_MODEL_PARTS), decoded into one buffer of
   * `size` bytes; each part is dropped once decoded. */
  function modelBytes(size) {
    const parts = window.MODELTAILOR_MODEL_PARTS;
    const model = new Uint8Array(size);
    let at = 0;
    for (let i = 0; i < parts.length; i++) {
      const bytes = base64Bytes(parts[i]);
      parts[i] = null;
      model.set(bytes, at);
      at += bytes.length;
    }
    window.MODELTAILOR_MODEL_PARTS = null;
    if (at !== model.length) throw new Error("the embedded model is incomplete (" + at + " bytes)");
    return model;
  }

  /* An onnxruntime-web session on the embedded wasm runtime and `model` (bytes). */
  async function createSession(model) {
    const runtime = window.MODELTAILOR_ORT_WASM;
    const glue = URL.createObjectURL(new Blob([runtime.mjs], { type: "text/javascript" }));
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmBinary = base64Bytes(runtime.wasm);
    ort.env.wasm.wasmPaths = { mjs: glue };
    runtime.wasm = null;
    try {
      return await ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
    } finally {
      URL.revokeObjectURL(glue);
    }
  }

  function softmax(logits) {
    let max = -Infinity;
    for (const v of logits) max = Math.max(max, v);
    const exps = Array.from(logits, (v) => Math.exp(v - max));
    const total = exps.reduce((a, b) => a + b, 0);
    return exps.map((v) => v / total);
  }

  /* The k most probable labels, as [{label, probability}], most probable first. */
  function topK(labels, probabilities, k) {
    const order = probabilities.map((p, i) => i).sort((a, b) => probabilities[b] - probabilities[a]);
    return order.slice(0, k).map((i) => ({ label: labels[i], probability: probabilities[i] }));
  }

  function percent(p) {
    if (p < 0.0005) return "<0.1%";
    if (p > 0.9995) return ">99.9%";
    return (100 * p).toFixed(1) + "%";
  }

  /* The top predictions as <li class="prediction"> rows with a bar each, into `list`. */
  function renderTop(list, top) {
    list.replaceChildren(
      ...top.map((t, rank) => {
        const li = document.createElement("li");
        li.className = "prediction";
        li.dataset.rank = String(rank + 1);
        li.dataset.label = t.label;
        li.dataset.probability = String(t.probability);
        const label = document.createElement("span");
        label.className = "label";
        label.textContent = t.label;
        const pct = document.createElement("span");
        pct.className = "pct";
        pct.textContent = percent(t.probability);
        const bar = document.createElement("span");
        bar.className = "bar";
        const fill = document.createElement("span");
        fill.style.width = (100 * t.probability).toFixed(2) + "%";
        bar.append(fill);
        li.append(label, pct, bar);
        return li;
      })
    );
  }

  /* `drop` (a <label> around file `input`) calls onFiles with the files chosen or dropped;
   * dropping beside the target must not navigate away from the page. */
  function wireDrop(drop, input, onFiles) {
    input.addEventListener("change", (e) => onFiles([...e.target.files]));
    drop.addEventListener("dragover", (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      onFiles([...e.dataTransfer.files]);
    });
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());
  }

  function csvField(value) {
    const s = String(value);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  /* Save `text` as a UTF-8 CSV with a BOM (so Excel reads non-ASCII labels correctly). */
  function downloadCsv(text, name) {
    const blob = new Blob(["\ufeff" + text], { type: "text/csv;charset=utf-8" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  }

  root.ModeltailorPage = {
    $, base64Bytes, setStatus, modelBytes, createSession, softmax, topK, percent, renderTop,
    wireDrop, csvField, downloadCsv,
  };
})(globalThis);
