/* Text -> windows of token ids, and window logits -> one row: TextEncoder.encode in JS.
 *
 * A text model reads at most `pre.max_length` tokens at once, so Python never truncates a
 * long text: it cuts the text's ids into overlapping windows, gives every window the prefix
 * and the special tokens, keeps at most `pre.max_windows` of them evenly spread, and averages
 * the windows' outputs. The page must do exactly the same or its probabilities drift from
 * `tailor predict`; this file is a line-by-line port of `windows`, `spread`,
 * `_stable_prefix_ids` and `TextEncoder.encode` in modeltailor/backbones/text.py, and of the
 * averaging in `pooled_outputs` (modeltailor/training/inputs.py). Keep them in step:
 * tests/test_js_tokenizer.py compares the two on a hostile corpus.
 *
 * Python's round() rounds halves to even and int() truncates; JavaScript's Math.round rounds
 * halves up, hence `pyRound` and Math.trunc below.
 *
 * Works as a classic <script> (defines globalThis.ModeltailorTextWindows) and as a CommonJS
 * module in Node (module.exports); plain ES2020, no imports. The tokenizer it takes is a
 * Tokenizers.js Tokenizer made by ModeltailorTokenizer.loadTokenizer (text_tokenizer.js).
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module && module.exports) module.exports = api;
  else root.ModeltailorTextWindows = api;
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  /* Python's round() of a float to an int: halves go to the even neighbour. */
  function pyRound(x) {
    const floor = Math.floor(x);
    const diff = x - floor; // exact for the magnitudes used here
    if (diff > 0.5) return floor + 1;
    if (diff < 0.5) return floor;
    return floor % 2 === 0 ? floor : floor + 1;
  }

  /* Windows of `size` ids, consecutive ones sharing `overlap` of a window; the last one ends
   * at the text's end (text.py: windows). */
  function windows(ids, size, overlap) {
    if (overlap === undefined) overlap = 0.125;
    if (size < 1) throw new Error("the prefix and special tokens leave no room for text");
    if (ids.length <= size) return [ids.slice()];
    const step = Math.max(1, size - Math.trunc(size * overlap));
    const starts = [];
    for (let s = 0; s < ids.length - size + 1; s += step) starts.push(s);
    if (starts[starts.length - 1] + size < ids.length) starts.push(ids.length - size);
    return starts.map((s) => ids.slice(s, s + size));
  }

  /* At most `limit` of `chunks`, evenly spaced, always the first and the last; a null, 0 or
   * undefined limit keeps all (text.py: spread). */
  function spread(chunks, limit) {
    if (!limit || chunks.length <= limit) return chunks;
    if (limit === 1) return chunks.slice(0, 1);
    const picks = new Set();
    for (let i = 0; i < limit; i++) picks.add(pyRound((i * (chunks.length - 1)) / (limit - 1)));
    return Array.from(picks)
      .sort((a, b) => a - b)
      .map((i) => chunks[i]);
  }

  /* Ids of `text` without special tokens (text.py: TextEncoder._ids). */
  function contentIds(tokenizer, text) {
    return tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  /* The prefix's ids as they come out when text follows it (text.py: _stable_prefix_ids):
   * alone, "query: " ends in a lone "▁" that disappears before a word. */
  function stablePrefixIds(tokenizer, prefix) {
    if (!prefix) return [];
    const a = contentIds(tokenizer, prefix + "a");
    const b = contentIds(tokenizer, prefix + "日本");
    let n = 0;
    while (n < a.length && n < b.length && a[n] === b[n]) n++;
    return a.slice(0, n);
  }

  function tokenId(tokenizer, name) {
    let token = tokenizer.config && tokenizer.config[name];
    if (token && typeof token === "object") token = token.content; // older configs
    const id = token == null ? undefined : tokenizer.token_to_id(token);
    if (id === undefined) throw new Error("the tokenizer has no " + name);
    return id;
  }

  const CACHE = new WeakMap();

  /* Per tokenizer and prefix: the prefix ids and the [CLS]/[SEP] (<s>/</s>) ids. */
  function framing(tokenizer, prefix) {
    let byPrefix = CACHE.get(tokenizer);
    if (!byPrefix) CACHE.set(tokenizer, (byPrefix = new Map()));
    if (!byPrefix.has(prefix)) {
      byPrefix.set(prefix, {
        prefix: stablePrefixIds(tokenizer, prefix),
        cls: tokenId(tokenizer, "cls_token"),
        sep: tokenId(tokenizer, "sep_token"),
      });
    }
    return byPrefix.get(prefix);
  }

  /**
   * The windows of token ids the model reads for `text` (text.py: TextEncoder.encode).
   *
   * @param tokenizer a Tokenizer from ModeltailorTokenizer.loadTokenizer
   * @param {string} text
   * @param {object} pre the run's text preprocessing (TextPreprocessing.to_dict(): max_length,
   *   prefix, window_overlap, max_windows)
   * @param {boolean} capped keep at most pre.max_windows windows (default true)
   * @returns {number[][]} windows, each [CLS, ...prefix, ...content, SEP]
   */
  function encodeText(tokenizer, text, pre, capped) {
    const prefixText = pre.prefix || "";
    const frame = framing(tokenizer, prefixText);
    const prefix = frame.prefix;
    const ids = contentIds(tokenizer, prefixText + text);
    const starts = prefix.every((id, i) => ids[i] === id) && ids.length >= prefix.length;
    // When the text merged with the prefix, the text is tokenised on its own.
    const content = starts ? ids.slice(prefix.length) : contentIds(tokenizer, text);
    const budget = pre.max_length - 2 - prefix.length;
    const overlap = pre.window_overlap === undefined ? 0.125 : pre.window_overlap;
    let chunks = windows(content, budget, overlap);
    if (capped !== false) chunks = spread(chunks, pre.max_windows);
    return chunks.map((w) => [frame.cls, ...prefix, ...w, frame.sep]);
  }

  /**
   * The mean of a text's window outputs (logits or embeddings), as `pooled_outputs` does:
   * summed in double precision, divided by the count, rounded to float32.
   *
   * @param {ArrayLike<number>[]} rows one row per window
   * @returns {Float32Array}
   */
  function meanRows(rows) {
    if (!rows.length) throw new Error("no windows to average");
    const sums = new Float64Array(rows[0].length);
    for (const row of rows) for (let j = 0; j < sums.length; j++) sums[j] += row[j];
    return Float32Array.from(sums, (s) => s / rows.length);
  }

  return { pyRound, windows, spread, stablePrefixIds, encodeText, meanRows };
});
