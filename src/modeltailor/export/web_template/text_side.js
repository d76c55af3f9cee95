/* Python's string rules in JS, and the TF-IDF side head of a text run.
 *
 * A linear-probe text run may add TF-IDF n-gram features to its head (tfidf_side.json; its
 * reference implementation is side_logits_from_json in modeltailor/export/text.py):
 *   word analyzer: str.lower(), the tokens of (?u)\b\w\w+\b, n-grams joined by one space;
 *   char analyzer: str.lower(), runs of 2+ whitespace characters (\s\s+) made one space,
 *                  n-grams of characters;
 *   tf = 1 + ln(count) when sublinear, times idf, L2-normed; logits = weight @ tfidf + bias.
 *
 * Python iterates strings by code point, JavaScript's strings are UTF-16 ("a𠮷b" is 3
 * characters in Python, 4 code units in JS), so everything here walks code points
 * (Array.from). JavaScript's \w and \b are ASCII-only, its \s is another set than Python's,
 * and toLowerCase follows the browser's Unicode version; so the page does not use them: it
 * gets Python's own decisions per code point as tables (`tables`, made by
 * modeltailor.export.web_text.python_text_tables): `word` and `space` ranges, the `lower`
 * mapping, and the two classes CPython's final-sigma rule reads.
 *
 * (?u)\b\w\w+\b finds exactly the maximal runs of word characters at least two code points
 * long: \b cannot hold inside a run, and the greedy \w+ stops only at the run's end.
 *
 * Works as a classic <script> (defines globalThis.ModeltailorTfidf) and as a CommonJS module
 * in Node; plain ES2020, no imports.
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module && module.exports) module.exports = api;
  else root.ModeltailorTfidf = api;
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  /* Is `cp` inside one of the sorted [first, last] `ranges`? */
  function inRanges(ranges, cp) {
    let lo = 0;
    let hi = ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (cp < ranges[mid][0]) hi = mid - 1;
      else if (cp > ranges[mid][1]) lo = mid + 1;
      else return true;
    }
    return false;
  }

  const cpOf = (ch) => ch.codePointAt(0);

  /* CPython's handle_capital_sigma: U+03A3 is final after a cased letter (case-ignorable
   * characters skipped) unless a cased letter follows (case-ignorable skipped). */
  function finalSigma(chars, i, sigma) {
    let j = i - 1;
    while (j >= 0 && inRanges(sigma.ignorable, cpOf(chars[j]))) j--;
    if (j < 0 || !inRanges(sigma.cased, cpOf(chars[j]))) return false;
    j = i + 1;
    while (j < chars.length && inRanges(sigma.ignorable, cpOf(chars[j]))) j++;
    return j === chars.length || !inRanges(sigma.cased, cpOf(chars[j]));
  }

  /* str.lower(), code point by code point. */
  function pyLower(text, tables) {
    const chars = Array.from(text);
    let out = "";
    for (let i = 0; i < chars.length; i++) {
      const cp = cpOf(chars[i]);
      if (cp === 0x3a3) out += finalSigma(chars, i, tables.sigma) ? "\u03c2" : "\u03c3";
      else {
        const mapped = tables.lower[cp];
        out += mapped === undefined ? chars[i] : mapped;
      }
    }
    return out;
  }

  const isSpace = (ch, tables) => inRanges(tables.space, cpOf(ch));

  /* str.strip(): Python's whitespace removed from both ends. */
  function pyStrip(text, tables) {
    const chars = Array.from(text);
    let a = 0;
    let b = chars.length;
    while (a < b && isSpace(chars[a], tables)) a++;
    while (b > a && isSpace(chars[b - 1], tables)) b--;
    return chars.slice(a, b).join("");
  }

  /* The tokens of (?u)\b\w\w+\b: maximal runs of >= 2 word code points. */
  function wordTokens(text, tables) {
    const out = [];
    let run = [];
    const flush = () => {
      if (run.length >= 2) out.push(run.join(""));
      run = [];
    };
    for (const ch of text) {
      if (inRanges(tables.word, cpOf(ch))) run.push(ch);
      else flush();
    }
    flush();
    return out;
  }

  /* re.sub(r"\s\s+", " ", text) as a list of code points. */
  function charUnits(text, tables) {
    const chars = Array.from(text);
    const out = [];
    for (let i = 0; i < chars.length; ) {
      let j = i;
      while (j < chars.length && isSpace(chars[j], tables)) j++;
      if (j - i >= 2) {
        out.push(" ");
        i = j;
      } else {
        out.push(chars[i]);
        i++;
      }
    }
    return out;
  }

  const INDEX = new WeakMap();

  function termIndex(doc) {
    let index = INDEX.get(doc);
    if (!index) {
      index = new Map(doc.terms.map((t, i) => [t, i]));
      INDEX.set(doc, index);
    }
    return index;
  }

  /**
   * The side head's logits for one text (side_logits_from_json), in double precision.
   * @param {object} doc tfidf_side.json
   * @param {object} tables python_text_tables()
   * @param {string} text
   * @returns {Float64Array} one logit per class
   */
  function sideLogits(doc, tables, text) {
    const index = termIndex(doc);
    if (doc.lowercase) text = pyLower(text, tables);
    const word = Boolean(doc.token_pattern);
    if (word && doc.token_pattern !== "(?u)\\b\\w\\w+\\b")
      throw new Error("unsupported token_pattern " + doc.token_pattern);
    const units = word ? wordTokens(text, tables) : charUnits(text, tables);
    const joiner = word ? " " : "";
    const counts = new Map();
    const [low, high] = doc.ngram_range;
    for (let n = low; n <= high; n++) {
      for (let start = 0; start + n <= units.length; start++) {
        const k = index.get(units.slice(start, start + n).join(joiner));
        if (k !== undefined) counts.set(k, (counts.get(k) || 0) + 1);
      }
    }
    const out = Float64Array.from(doc.bias);
    if (!counts.size) return out;
    const cols = Array.from(counts.keys());
    const values = cols.map((k) => (doc.sublinear_tf ? 1 + Math.log(counts.get(k)) : counts.get(k)) * doc.idf[k]);
    if (doc.norm === "l2") {
      const norm = Math.sqrt(values.reduce((s, v) => s + v * v, 0)) || 1;
      for (let i = 0; i < values.length; i++) values[i] /= norm;
    }
    for (let c = 0; c < out.length; c++) {
      let sum = 0;
      for (let i = 0; i < cols.length; i++) sum += doc.weight[c][cols[i]] * values[i];
      out[c] = sum + doc.bias[c];
    }
    return out;
  }

  return { pyLower, pyStrip, wordTokens, charUnits, sideLogits };
});
