/*
 * modeltailor web export, text: type a text or drop a CSV, see labels and probabilities.
 *
 * As `tailor predict` does: the run's tokenizer (Tokenizers.js with exact ports of the Rust
 * normalisers, text_tokenizer.js) gives the ids, text_windows.js cuts them into the windows
 * TextEncoder.encode makes, onnxruntime-web runs model.onnx on them (logits already divided by
 * the calibration temperature), the windows' logits are averaged per text, the TF-IDF side
 * head's logits are added when the run has one (text_side.js), and a softmax gives the
 * probabilities.
 *
 * Everything arrives through classic <script> tags (no fetch, no module workers), because
 * browsers refuse both for pages opened from file://. The model (in parts), the tokenizer and
 * the runtime's wasm binary are base64 inside .js files. No request leaves the page.
 */
(function () {
  "use strict";

  const P = window.ModeltailorPage;
  const app = window.MODELTAILOR_APP;
  const pre = app.preprocessing;
  const $ = P.$;
  const setStatus = P.setStatus;
  let session = null;
  let tokenizer = null;
  let runs = 0;
  let table = null; // the dropped CSV: {name, columns, rows, column, results}

  /* The run's tokenizer, checked against what the export wrote down about it. */
  function loadTokenizer() {
    const json = new TextDecoder().decode(P.base64Bytes(window.MODELTAILOR_TOKENIZER));
    window.MODELTAILOR_TOKENIZER = null;
    const tok = ModeltailorTokenizer.loadTokenizer(TokenizersJS.Tokenizer, JSON.parse(json));
    const prefix = ModeltailorTextWindows.stablePrefixIds(tok, pre.prefix || "");
    if (JSON.stringify(prefix) !== JSON.stringify(pre.prefix_ids || [])) {
      throw new Error("the tokenizer gives prefix ids " + prefix + ", the export says " + pre.prefix_ids);
    }
    for (const role of ["cls", "sep"]) {
      const special = pre.special_tokens[role];
      if (tok.token_to_id(special.token) !== special.id) throw new Error("the tokenizer has no " + special.token);
    }
    return tok;
  }

  /* Logits of some windows: padded rows in batches of app.window_batch. */
  async function windowLogits(windows) {
    const rows = [];
    const pad = pre.special_tokens.pad.id;
    for (let s = 0; s < windows.length; s += app.window_batch) {
      const batch = windows.slice(s, s + app.window_batch);
      const length = Math.max(...batch.map((w) => w.length));
      const ids = new BigInt64Array(batch.length * length).fill(BigInt(pad));
      const mask = new BigInt64Array(batch.length * length);
      batch.forEach((w, r) => {
        for (let j = 0; j < w.length; j++) {
          ids[r * length + j] = BigInt(w[j]);
          mask[r * length + j] = 1n;
        }
      });
      const dims = [batch.length, length];
      const output = await session.run({
        input_ids: new ort.Tensor("int64", ids, dims),
        attention_mask: new ort.Tensor("int64", mask, dims),
      });
      const data = output[session.outputNames[0]].data;
      const classes = data.length / batch.length;
      for (let r = 0; r < batch.length; r++) rows.push(data.subarray(r * classes, (r + 1) * classes));
    }
    return rows;
  }

  /* One text -> {labels, logits, probabilities, top, windows}, as `tailor predict`. */
  async function predictText(text) {
    const windows = ModeltailorTextWindows.encodeText(tokenizer, text, pre);
    const mean = ModeltailorTextWindows.meanRows(await windowLogits(windows));
    let logits = Array.from(mean);
    if (app.tfidf_side) {
      const side = ModeltailorTfidf.sideLogits(app.tfidf_side, app.python, text);
      logits = logits.map((v, i) => v + side[i]);
    }
    const probabilities = P.softmax(logits);
    const top = P.topK(app.labels, probabilities, app.top_k);
    return { labels: app.labels, logits, probabilities, top, windows: windows.length };
  }

  async function whenReady() {
    if (!session && !(await ready)) throw new Error("the model did not load");
  }

  /* For pages that embed this one, and for tests: classify texts as they are. */
  async function classifyTexts(texts) {
    await whenReady();
    const out = [];
    for (const text of texts) out.push(await predictText(String(text)));
    return out;
  }

  function render(top) {
    P.renderTop($("predictions"), top);
    $("text-result").hidden = false;
  }

  async function classifyBox() {
    const text = $("text").value;
    const run = ++runs;
    if (!text.trim()) {
      setStatus(session ? "ready" : "loading", "Type or paste a text first.");
      return;
    }
    setStatus("busy", "Classifying\u2026");
    try {
      await whenReady();
      const started = performance.now();
      const result = await predictText(text);
      if (run !== runs) return; // a newer request meanwhile
      window.MODELTAILOR_LAST = { text, ...result };
      render(result.top);
      $("status").dataset.run = String(run);
      const ms = Math.round(performance.now() - started);
      const windows = result.windows > 1 ? " (" + result.windows + " windows)" : "";
      setStatus("done", "Classified in " + ms + " ms" + windows + ".");
    } catch (err) {
      console.error(err);
      setStatus("error", "Could not classify the text: " + (err.message || err));
    }
  }

  // -- CSV ------------------------------------------------------------------------------------

  /* UTF-8 (BOM or not), else Shift_JIS/CP932 (Excel's Japanese CSV), as `tailor predict`. */
  function decodeCsv(bytes) {
    try {
      return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), encoding: "utf-8" };
    } catch (err) {
      return { text: new TextDecoder("shift_jis").decode(bytes), encoding: "shift_jis" };
    }
  }

  /* RFC 4180 fields: quotes around fields, "" inside them, newlines inside quotes. */
  function parseDelimited(text, delimiter) {
    const rows = [];
    let row = [];
    let field = "";
    let quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i++;
          } else quoted = false;
        } else field += c;
      } else if (c === '"' && field === "") quoted = true;
      else if (c === delimiter) {
        row.push(field);
        field = "";
      } else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(field);
        rows.push(row);
        row = [];
        field = "";
      } else field += c;
    }
    if (field !== "" || row.length) {
      row.push(field);
      rows.push(row);
    }
    return rows.filter((r) => r.length > 1 || r[0] !== "");
  }

  function readTable(name, bytes) {
    const decoded = decodeCsv(bytes);
    const text = decoded.text.replace(/^\ufeff/, "");
    const firstLine = text.split(/\r?\n/, 1)[0];
    const tsv = /\.tsv$/i.test(name) || (firstLine.includes("\t") && !firstLine.includes(","));
    const [header, ...body] = parseDelimited(text, tsv ? "\t" : ",");
    if (!header) throw new Error(name + " is empty");
    const columns = header.map((c) => c.trim());
    const rows = body.map((fields) => Object.fromEntries(columns.map((c, i) => [c, fields[i] ?? ""])));
    const named = columns.find((c) => c.toLowerCase() === "text");
    const column = named ?? (columns.length === 1 ? columns[0] : null);
    return { name, columns, rows, column, encoding: decoded.encoding, delimiter: tsv ? "\t" : ",", results: [] };
  }

  /* The text of a row as `tailor predict` reads it: newlines normalised, Python-stripped. */
  function rowText(row, column) {
    const raw = (row[column] ?? "").replace(/\r\n/g, "\n").replace(/\r/g, "\n");
    return ModeltailorTfidf.pyStrip(raw, app.python);
  }

  async function classifyTable() {
    const run = ++runs;
    const t = table;
    t.results = [];
    $("table").hidden = false;
    $("download").disabled = true;
    const body = document.querySelector("#rows tbody");
    body.replaceChildren();
    try {
      await whenReady();
      const started = performance.now();
      for (let i = 0; i < t.rows.length; i++) {
        if (run !== runs) return;
        const text = rowText(t.rows[i], t.column);
        const result = text ? await predictText(text) : null;
        t.results.push(result);
        body.append(tableRow(i, text, result));
        $("table-status").textContent = "row " + (i + 1) + " of " + t.rows.length;
        if (i % 8 === 7) await new Promise((r) => setTimeout(r)); // let the page repaint
      }
      const skipped = t.results.filter((r) => !r).length;
      const ms = Math.round(performance.now() - started);
      $("table-status").textContent =
        t.rows.length - skipped + " rows classified" + (skipped ? ", " + skipped + " empty skipped" : "") +
        " (" + t.encoding + ", " + ms + " ms)";
      $("download").disabled = false;
      $("status").dataset.run = String(run);
      $("status").dataset.table = t.name;
      setStatus("done", t.name + ": " + (t.rows.length - skipped) + " texts classified.");
    } catch (err) {
      console.error(err);
      setStatus("error", "Could not classify " + t.name + ": " + (err.message || err));
    }
  }

  function tableRow(i, text, result) {
    const tr = document.createElement("tr");
    const cells = [String(i + 1), text.length > 300 ? text.slice(0, 300) + "\u2026" : text];
    if (result) {
      tr.className = "row";
      tr.dataset.label = result.top[0].label;
      tr.dataset.probability = String(result.top[0].probability);
      cells.push(result.top[0].label, P.percent(result.top[0].probability));
    } else {
      tr.className = "row skipped";
      cells.push("(empty text: skipped)", "");
    }
    cells.forEach((c, k) => {
      const td = document.createElement("td");
      td.className = ["n", "text", "label", "pct"][k];
      td.textContent = c;
      tr.append(td);
    });
    return tr;
  }

  /* The rows as read, plus label and probability (predicted_ when the file has either), as
   * `tailor predict FILE.csv` writes them; empty rows are left out, as it does (saved as UTF-8
   * with a BOM by P.downloadCsv, so Excel reads Japanese correctly). */
  function resultsCsv(t) {
    const clash = t.columns.some((c) => ["label", "probability"].includes(c.toLowerCase()));
    const extra = clash ? ["predicted_label", "predicted_probability"] : ["label", "probability"];
    const lines = [[...t.columns, ...extra].map(P.csvField).join(",")];
    t.rows.forEach((row, i) => {
      const r = t.results[i];
      if (!r) return;
      const fields = t.columns.map((c) => row[c]);
      lines.push([...fields, r.top[0].label, r.top[0].probability.toFixed(6)].map(P.csvField).join(","));
    });
    return lines.join("\r\n") + "\r\n";
  }

  function download() {
    P.downloadCsv(resultsCsv(table), table.name.replace(/\.(csv|tsv|txt)$/i, "") + "-predictions.csv");
  }

  async function openCsv(file) {
    if (!file) return;
    try {
      table = readTable(file.name, new Uint8Array(await file.arrayBuffer()));
    } catch (err) {
      setStatus("error", "Could not read " + file.name + ": " + (err.message || err));
      return;
    }
    const select = $("column");
    select.replaceChildren(
      ...table.columns.map((c) => {
        const o = document.createElement("option");
        o.value = o.textContent = c;
        return o;
      })
    );
    $("column-choice").hidden = table.columns.length < 2;
    if (!table.column) {
      $("table").hidden = false;
      select.value = "";
      setStatus("ready", file.name + ": no column is named \u201ctext\u201d; choose the text column.");
      return;
    }
    select.value = table.column;
    setStatus("busy", "Classifying the rows of " + file.name + "\u2026");
    await classifyTable();
  }

  function wireInputs() {
    $("text-form").addEventListener("submit", (e) => {
      e.preventDefault();
      classifyBox();
    });
    $("text").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        classifyBox();
      }
    });
    P.wireDrop($("drop"), $("csv"), (files) => openCsv(files[0]));
    $("column").addEventListener("change", (e) => {
      if (!table) return;
      table.column = e.target.value;
      setStatus("busy", "Classifying the rows of " + table.name + "\u2026");
      classifyTable();
    });
    $("download").addEventListener("click", download);
  }

  function describe() {
    document.title = app.title;
    $("title").textContent = app.title;
    const side = app.tfidf_side ? " + TF-IDF " + app.tfidf_side.analyzer + " n-grams" : "";
    $("about").textContent =
      app.labels.length + " classes \u00b7 windows of " + pre.max_length + " tokens" + side +
      " \u00b7 onnxruntime-web " + app.onnxruntime_web + " \u00b7 tokenizers.js " + app.tokenizers_js;
  }

  describe();
  wireInputs();
  window.ModeltailorTextApp = { classifyTexts, resultsCsv: () => table && resultsCsv(table) };
  const ready = (async () => {
    tokenizer = loadTokenizer();
    session = await P.createSession(P.modelBytes(app.model_bytes));
  })().then(
    () => {
      if ($("status").dataset.state === "loading") setStatus("ready", "Ready: type a text or drop a CSV.");
      return true;
    },
    (err) => {
      console.error(err);
      setStatus("error", "Could not load the model: " + (err.message || err));
      return false;
    }
  );
})();
