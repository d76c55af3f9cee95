/*
 * modeltailor web export: pick or drop an image, see the top predictions.
 *
 * Everything arrives through classic <script> tags (no fetch, no module workers), because
 * browsers refuse both for pages opened from file://. The ONNX Runtime wasm binary and the
 * model are base64 inside ort-wasm.js and model.js; page_common.js starts the runtime on them.
 * No request leaves the page at run time.
 */
(function () {
  "use strict";

  const P = window.ModeltailorPage;
  const app = window.MODELTAILOR_APP;
  const $ = P.$;
  const setStatus = P.setStatus;
  let session = null;
  let runs = 0;

  /* The model is one base64 string (model.js); the decoded bytes are all the session needs. */
  function createSession() {
    const model = P.base64Bytes(window.MODELTAILOR_MODEL);
    window.MODELTAILOR_MODEL = null;
    return P.createSession(model);
  }

  /* Pixels exactly as the file stores them: EXIF orientation applied, no colour management. */
  async function decode(file) {
    const bitmap = await createImageBitmap(file, {
      imageOrientation: "from-image",
      premultiplyAlpha: "none",
      colorSpaceConversion: "none",
    });
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
    return { rgba: image.data, width: image.width, height: image.height };
  }

  async function predict(rgba, width, height) {
    const x = ModelTailorPreprocess.preprocess(rgba, width, height, app.preprocessing);
    const input = new ort.Tensor("float32", x.tensor, [1, 3, x.size, x.size]);
    const output = await session.run({ [session.inputNames[0]]: input });
    const logits = Array.from(output[session.outputNames[0]].data);
    const probabilities = P.softmax(logits);
    return { top: P.topK(app.labels, probabilities, app.top_k), logits, probabilities };
  }

  function render(file, top) {
    P.renderTop($("predictions"), top);
    $("filename").textContent = file.name;
    $("result").hidden = false;
  }

  /*
   * `tailor predict` decodes big JPEGs at 1/2, 1/4 or 1/8 size (Pillow draft mode, fast DCT
   * scaling) which a browser cannot do, so its figures can differ for such files: say so.
   */
  async function draftNote(file, width, height) {
    const head = new Uint8Array(await file.slice(0, 3).arrayBuffer());
    const jpeg = head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff;
    const d = app.jpeg_draft_size;
    const scale = Math.min(Math.floor(width / d), Math.floor(height / d));
    const note = $("note");
    note.hidden = !(jpeg && scale >= 2);
    note.textContent = note.hidden
      ? ""
      : "Large JPEG: the Python tools decode it at reduced size (Pillow draft mode), " +
        "so their probabilities can differ a little from these.";
  }

  function showPreview(file) {
    const img = $("preview");
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(file);
  }

  async function classify(file) {
    if (!file) return;
    const run = ++runs;
    setStatus("busy", "Classifying " + file.name + "\u2026");
    try {
      showPreview(file);
      const image = await decode(file);
      if (!session && !(await ready)) throw new Error("the model did not load");
      const started = performance.now();
      const result = await predict(image.rgba, image.width, image.height);
      if (run !== runs) return; // a newer image was chosen meanwhile
      // For pages that embed this one, and for tests: every class, not only the top 3.
      window.MODELTAILOR_LAST = { file: file.name, labels: app.labels, ...result };
      render(file, result.top);
      await draftNote(file, image.width, image.height);
      $("status").dataset.file = file.name;
      $("status").dataset.run = String(run);
      const ms = Math.round(performance.now() - started);
      setStatus("done", image.width + "\u00d7" + image.height + " px, classified in " + ms + " ms.");
    } catch (err) {
      console.error(err);
      setStatus("error", "Could not classify " + file.name + ": " + (err.message || err));
    }
  }

  function wireInputs() {
    P.wireDrop($("drop"), $("file"), (files) => classify(files[0]));
    window.addEventListener("paste", (e) => {
      const item = [...e.clipboardData.items].find((i) => i.type.startsWith("image/"));
      if (item) classify(item.getAsFile());
    });
  }

  function describe() {
    const pre = app.preprocessing;
    document.title = app.title;
    $("title").textContent = app.title;
    $("about").textContent =
      app.labels.length + " classes \u00b7 input " + pre.center_crop + "\u00d7" + pre.center_crop +
      " (" + pre.interpolation + " resize) \u00b7 onnxruntime-web " + app.onnxruntime_web;
  }

  describe();
  wireInputs();
  const ready = createSession().then(
    (s) => {
      session = s;
      if ($("status").dataset.state === "loading") setStatus("ready", "Ready: choose or drop an image.");
      return true;
    },
    (err) => {
      console.error(err);
      setStatus("error", "Could not load the model: " + (err.message || err));
      return false;
    }
  );
})();
