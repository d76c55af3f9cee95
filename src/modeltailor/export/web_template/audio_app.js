/*
 * modeltailor web export, audio: choose, drop or record clips, see labels and probabilities.
 *
 * As `tailor predict` does: decode the clip at its own sample rate (Web Audio's
 * decodeAudioData in an OfflineAudioContext running at the rate the file's header states, so
 * the browser does not resample), average the channels, resample to the run's rate with the
 * port of scipy's resample_poly (audio_dsp.js), cut half-overlapping windows, run model.onnx
 * on them with onnxruntime-web (the log-mel front end and the calibration temperature are
 * inside the graph), average the windows' logits, softmax. A recording (getUserMedia) is the
 * raw microphone signal at the AudioContext's rate, through the same steps.
 */
(function () {
  "use strict";

  const P = window.ModeltailorPage;
  const A = window.ModeltailorAudio;
  const app = window.MODELTAILOR_APP;
  const pre = app.preprocessing;
  const $ = P.$;
  let session = null;
  let runs = 0;
  let recordings = 0;
  let recorder = null;
  const results = []; // every clip classified, in table order
  window.MODELTAILOR_RESULTS = results;

  /* Decoded channels at the file's own rate (the browser's resampler is not Python's). */
  async function decodeFile(file) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    if (!bytes.length) throw new Error("empty file");
    const rate = A.nativeRate(bytes);
    const usable = rate && rate >= 3000 ? rate : null; // OfflineAudioContext's lower limit
    const ctx = new OfflineAudioContext(1, 1, usable || app.fallback_rate);
    let buffer;
    try {
      buffer = await ctx.decodeAudioData(bytes.buffer.slice(0));
    } catch (err) {
      throw new Error("this browser cannot decode it (" + (err.message || err) + ")");
    }
    if (!buffer.length) throw new Error("empty clip (zero samples)");
    const channels = [];
    for (let c = 0; c < buffer.numberOfChannels; c++) channels.push(buffer.getChannelData(c));
    channels.forEach(A.exactInt16);
    const notes = [];
    if (!usable) {
      notes.push("its sample rate could not be read from its header, so the browser resampled it");
    }
    const declared = A.oggSamples(bytes);
    if (declared && buffer.length < declared) {
      notes.push("the browser decoded " + buffer.length + " of its " + declared + " samples (its Ogg " +
        "decoder drops the end)");
    }
    return { channels, rate: buffer.sampleRate, notes };
  }

  /* Channels at `rate` -> the run's mono samples, as decode_audio makes them. */
  function toModelRate(channels, rate) {
    const wave = A.downmix(channels);
    for (const v of wave) if (!Number.isFinite(v)) throw new Error("the clip holds NaN or infinite samples");
    return A.resample(wave, rate, pre.sample_rate);
  }

  /* Mono samples at the run's rate -> {labels, logits, probabilities, top, windows}. */
  async function predictWave(wave) {
    const size = pre.window_samples;
    const w = A.clipWindows(wave, size, pre.window_step_samples);
    const rows = [];
    for (let s = 0; s < w.count; s += app.window_batch) {
      const n = Math.min(app.window_batch, w.count - s);
      const part = (x) => new ort.Tensor("float32", x.subarray(s * size, (s + n) * size), [n, size]);
      const output = await session.run({ samples: part(w.samples), mask: part(w.mask) });
      rows.push(...output[session.outputNames[0]].data);
    }
    const logits = A.meanRows(Float32Array.from(rows), w.count);
    const probabilities = P.softmax(logits);
    const top = P.topK(app.labels, probabilities, app.top_k);
    return { labels: app.labels, logits, probabilities, top, windows: w.count };
  }

  async function whenReady() {
    if (!session && !(await ready)) throw new Error("the model did not load");
  }

  function show(entry) {
    P.renderTop($("predictions"), entry.top);
    $("clip-name").textContent = entry.name + " \u00b7 " + entry.seconds.toFixed(2) + " s" +
      (entry.windows > 1 ? " \u00b7 " + entry.windows + " windows" : "");
    const player = $("player");
    if (player.src) URL.revokeObjectURL(player.src);
    player.src = URL.createObjectURL(entry.blob);
    $("audio-result").hidden = false;
    const note = $("note");
    note.hidden = !entry.notes.length;
    note.textContent = note.hidden ? "" : entry.name + ": " + entry.notes.join("; ") +
      ", so the probabilities can differ a little from tailor predict's.";
  }

  function addRow(entry) {
    const tr = document.createElement("tr");
    const ok = !entry.error;
    tr.className = ok ? "row" : "row skipped";
    if (ok) {
      tr.dataset.label = entry.top[0].label;
      tr.dataset.probability = String(entry.top[0].probability);
    }
    const cells = [
      String(results.length), entry.name, ok ? entry.seconds.toFixed(2) : "",
      ok ? entry.top[0].label : "(skipped: " + entry.error + ")", ok ? P.percent(entry.top[0].probability) : "",
    ];
    cells.forEach((c, k) => {
      const td = document.createElement("td");
      td.className = ["n", "text", "seconds", "label", "pct"][k];
      td.textContent = c;
      tr.append(td);
    });
    document.querySelector("#rows tbody").append(tr);
    $("table").hidden = false;
    const done = results.filter((r) => !r.error).length;
    $("table-status").textContent = done + " clip" + (done === 1 ? "" : "s") + " classified" +
      (results.length > done ? ", " + (results.length - done) + " skipped" : "");
  }

  /* Classify decoded channels and record the result (the table, the top list, the CSV). */
  async function classifyChannels(name, channels, rate, blob, notes) {
    const wave = toModelRate(channels, rate);
    const result = await predictWave(wave);
    const entry = { name, seconds: wave.length / pre.sample_rate, notes, blob, ...result };
    results.push(entry);
    addRow(entry);
    show(entry);
    return entry;
  }

  async function classifyFiles(files) {
    if (!files.length) return;
    const run = ++runs;
    const started = performance.now();
    let failed = 0;
    try {
      await whenReady();
      for (const [i, file] of files.entries()) {
        setBusy("Classifying " + file.name + (files.length > 1 ? " (" + (i + 1) + " of " + files.length + ")" : "") + "\u2026");
        try {
          const d = await decodeFile(file);
          await classifyChannels(file.name, d.channels, d.rate, file, d.notes);
        } catch (err) {
          console.warn(file.name, err);
          failed++;
          results.push({ name: file.name, error: err.message || String(err) });
          addRow(results[results.length - 1]);
        }
      }
    } catch (err) {
      console.error(err);
      P.setStatus("error", "Could not classify: " + (err.message || err));
      return;
    }
    finish(run, files.length - failed + " of " + files.length + " clip" + (files.length === 1 ? "" : "s") +
      " classified in " + Math.round(performance.now() - started) + " ms" + (failed ? "; see the table for the others." : "."));
  }

  function setBusy(text) {
    P.setStatus("busy", text);
  }

  function finish(run, text) {
    $("status").dataset.run = String(run);
    $("download").disabled = !results.some((r) => !r.error);
    P.setStatus("done", text);
  }

  // -- recording ---------------------------------------------------------------------------

  /* An AudioWorklet that hands every block of the microphone's samples to the page. */
  const TAP = `registerProcessor("modeltailor-tap", class extends AudioWorkletProcessor {
    process(inputs) {
      const input = inputs[0];
      if (input && input.length) this.port.postMessage(input.map((c) => c.slice(0)));
      return true;
    }
  });`;

  /* A node that hands every block of the microphone's samples to `onBlock`. An AudioWorklet
   * from a data: URL (file:// pages may not load blob: worklets); where a browser refuses even
   * that, the older ScriptProcessorNode, which does the same on the main thread. */
  async function tapNode(ctx, onBlock) {
    try {
      await ctx.audioWorklet.addModule("data:text/javascript;charset=utf-8," + encodeURIComponent(TAP));
      const node = new AudioWorkletNode(ctx, "modeltailor-tap");
      node.port.onmessage = (e) => onBlock(e.data);
      return node;
    } catch (err) {
      console.warn("no AudioWorklet, recording with a ScriptProcessorNode:", err);
    }
    const node = ctx.createScriptProcessor(4096, 2, 1);
    node.onaudioprocess = (e) => {
      const b = e.inputBuffer;
      onBlock(Array.from({ length: b.numberOfChannels }, (_, c) => Float32Array.from(b.getChannelData(c))));
    };
    return node;
  }

  async function startRecording() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      P.setStatus("error", "This browser gives no microphone to this page (it needs file://, " +
        "https:// or localhost).");
      return;
    }
    const button = $("record");
    button.disabled = true;
    try {
      await whenReady();
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
      const ctx = new AudioContext();
      const blocks = [];
      const node = await tapNode(ctx, (block) => {
        blocks.push(block);
        if (!recorder) return;
        recorder.samples += block[0].length;
        const shown = recordedSeconds().toFixed(1);
        if (shown !== recorder.shown) {
          recorder.shown = shown;
          $("record-note").textContent = shown + " s (at most " + app.record_seconds + " s)";
        }
      });
      const mute = ctx.createGain();
      mute.gain.value = 0; // pulled by the output, heard by nobody
      ctx.createMediaStreamSource(stream).connect(node);
      node.connect(mute).connect(ctx.destination);
      await ctx.resume();
      const timer = setTimeout(stopRecording, app.record_seconds * 1000);
      recorder = { ctx, stream, node, blocks, timer, samples: 0 };
      button.dataset.recording = "true";
      button.textContent = "Stop";
      $("record-note").textContent = "0.0 s (at most " + app.record_seconds + " s)";
      P.setStatus("busy", "Recording: press Stop when done.");
    } catch (err) {
      console.error(err);
      P.setStatus("error", "Could not record: " + (err.message || err));
    } finally {
      button.disabled = false;
    }
  }

  function joinBlocks(blocks) {
    const channels = Math.max(1, ...blocks.map((b) => b.length));
    const total = blocks.reduce((n, b) => n + b[0].length, 0);
    const out = Array.from({ length: channels }, () => new Float32Array(total));
    let at = 0;
    for (const block of blocks) {
      for (let c = 0; c < channels; c++) out[c].set(block[Math.min(c, block.length - 1)], at);
      at += block[0].length;
    }
    return out;
  }

  async function stopRecording() {
    if (!recorder) return;
    const r = recorder;
    recorder = null;
    clearTimeout(r.timer);
    r.stream.getTracks().forEach((t) => t.stop());
    r.node.disconnect();
    await r.ctx.close();
    const button = $("record");
    button.dataset.recording = "false";
    button.textContent = "Record";
    $("record-note").textContent = "";
    const run = ++runs;
    const name = "recording " + ++recordings;
    try {
      const channels = joinBlocks(r.blocks);
      if (!channels[0].length) throw new Error("the microphone gave no samples");
      const blob = wavBlob(channels[0], r.ctx.sampleRate);
      const entry = await classifyChannels(name, channels, r.ctx.sampleRate, blob, []);
      finish(run, name + ": " + entry.seconds.toFixed(1) + " s at " + r.ctx.sampleRate + " Hz, classified.");
    } catch (err) {
      console.error(err);
      P.setStatus("error", "Could not classify the recording: " + (err.message || err));
    }
  }

  /* A 16-bit WAV of the first channel, to listen to what was classified. */
  function wavBlob(samples, rate) {
    const view = new DataView(new ArrayBuffer(44 + 2 * samples.length));
    const text = (at, s) => [...s].forEach((ch, i) => view.setUint8(at + i, ch.charCodeAt(0)));
    text(0, "RIFF");
    view.setUint32(4, 36 + 2 * samples.length, true);
    text(8, "WAVEfmt ");
    view.setUint32(16, 16, true);
    view.setUint16(20, 1, true);
    view.setUint16(22, 1, true);
    view.setUint32(24, rate, true);
    view.setUint32(28, 2 * rate, true);
    view.setUint16(32, 2, true);
    view.setUint16(34, 16, true);
    text(36, "data");
    view.setUint32(40, 2 * samples.length, true);
    samples.forEach((v, i) => view.setInt16(44 + 2 * i, Math.max(-32768, Math.min(32767, Math.round(v * 32768))), true));
    return new Blob([view.buffer], { type: "audio/wav" });
  }

  // -- results as CSV ------------------------------------------------------------------------

  /* One row per classified clip: the top label and its probability, then every class's. */
  function resultsCsv() {
    const head = ["file", "seconds", "windows", "label", "probability", ...app.labels.map((l) => "p_" + l)];
    const lines = [head.map(P.csvField).join(",")];
    for (const r of results) {
      if (r.error) continue;
      const fields = [r.name, r.seconds.toFixed(3), r.windows, r.top[0].label, r.top[0].probability.toFixed(6),
        ...r.probabilities.map((p) => p.toFixed(6))];
      lines.push(fields.map(P.csvField).join(","));
    }
    return lines.join("\r\n") + "\r\n";
  }

  function wireInputs() {
    P.wireDrop($("drop"), $("file"), (files) => classifyFiles(files));
    $("record").addEventListener("click", () => (recorder ? stopRecording() : startRecording()));
    $("download").addEventListener("click", () => P.downloadCsv(resultsCsv(), app.title + "-predictions.csv"));
  }

  function describe() {
    document.title = app.title;
    $("title").textContent = app.title;
    $("about").textContent =
      app.labels.length + " classes \u00b7 " + pre.sample_rate / 1000 + " kHz mono, windows of " +
      pre.window_seconds + " s (" + Math.round(pre.window_overlap * 100) + "% overlap) \u00b7 " +
      (pre.network || "audio") + " \u00b7 onnxruntime-web " + app.onnxruntime_web;
  }

  describe();
  wireInputs();
  /* Seconds of microphone signal received so far (0 when not recording). */
  const recordedSeconds = () => (recorder ? recorder.samples / recorder.ctx.sampleRate : 0);
  window.ModeltailorAudioApp = { resultsCsv, predictWave, recordedSeconds };
  const ready = (async () => {
    session = await P.createSession(P.modelBytes(app.model_bytes));
  })().then(
    () => {
      if ($("status").dataset.state === "loading") P.setStatus("ready", "Ready: choose, drop or record a clip.");
      return true;
    },
    (err) => {
      console.error(err);
      P.setStatus("error", "Could not load the model: " + (err.message || err));
      return false;
    }
  );
})();
