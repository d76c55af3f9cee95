/* Exact tokenisation for text models in the browser: @huggingface/tokenizers, corrected.
 *
 * Text models are exported as ONNX graphs over token ids, so the page must turn text into the
 * very ids Python's `tokenizers` (Rust) produces. @huggingface/tokenizers (Tokenizers.js) reads
 * the run's tokenizer.json and gets added tokens, WordPiece and Unigram right, but some of its
 * steps differ from the Rust library on real text (tests/test_js_tokenizer.py finds each):
 *
 *  - BertNormalizer (MiniLM, BERT): it pads CJK ideographs with spaces by walking UTF-16 code
 *    units, so ideographs outside the BMP ("𠮷", CJK extension B and later) stay glued to their
 *    neighbours; it lowercases the whole string, so a Greek word-final "Σ" becomes "ς" where
 *    Rust (char by char) gives "σ"; and its Unicode tables (the browser's) disagree with
 *    Rust's on which characters are controls or accents (Rust keeps format characters newer
 *    than its tables, e.g. U+0890, and strips U+1734 as an accent).
 *  - BertPreTokenizer: its punctuation is the browser's \p{P}, which disagrees with Rust's on
 *    about 140 code points ("؝", "৽", ...).
 *  - Precompiled (SentencePiece models, e5): it ignores the precompiled_charsmap and applies
 *    NFKC instead, so "ｶﾞ" becomes "ガ" where the charsmap gives "カ" + U+3099.
 *
 * Its Metaspace keeps the text as one piece where Rust (split: true) cuts it into words; that
 * changes nothing for SentencePiece vocabularies, whose pieces never hold "▁" past their
 * first character, so it is left as it is.
 *
 * `loadTokenizer` builds the library's Tokenizer and swaps in exact ports of these steps
 * (tokenizers/src/normalizers/bert.rs, precompiled.rs, pre_tokenizers/bert.rs).
 * Where Rust decides with its own Unicode tables (BertNormalizer, BertPreTokenizer), the page
 * gets those decisions as data, made by modeltailor from the run's own tokenizer
 * (modeltailor.export.text_js.unicode_tables), so no browser's Unicode version matters. The
 * Precompiled port uses Intl.Segmenter for grapheme clusters, as Rust does.
 *
 * Works as a classic <script> (defines globalThis.ModeltailorTokenizer) and as a CommonJS
 * module in Node (module.exports); plain ES2020, no imports.
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module && module.exports) module.exports = api;
  else root.ModeltailorTokenizer = api;
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  /* [first, last, ...] ranges sorted by first: the one holding `cp`, or null. */
  function findRange(ranges, cp) {
    let lo = 0;
    let hi = ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (cp < ranges[mid][0]) hi = mid - 1;
      else if (cp > ranges[mid][1]) lo = mid + 1;
      else return ranges[mid];
    }
    return null;
  }

  // -- BertNormalizer (tokenizers/src/normalizers/bert.rs) --------------------------------

  /* Hangul syllable -> its jamo (Unicode's algorithmic canonical decomposition). */
  function hangulJamo(cp) {
    const s = cp - 0xac00;
    const t = s % 28;
    const lv =
      String.fromCharCode(0x1100 + Math.floor(s / 588)) +
      String.fromCharCode(0x1161 + Math.floor((s % 588) / 28));
    return t ? lv + String.fromCharCode(0x11a7 + t) : lv;
  }

  /* Rust normalises char by char (clean text, pad CJK, NFD + drop Mn, lowercase with no
   * final-sigma rule), so the table of what it does to each code point on its own, made by
   * modeltailor from the run's own normalizer (`bert_normalizer_table`), reproduces it. */
  function bertNormalize(table, text) {
    let out = "";
    for (const ch of text) {
      const cp = ch.codePointAt(0);
      const range = findRange(table.ranges, cp);
      if (range === null) {
        const mapped = table.map[cp];
        out += mapped === undefined ? ch : mapped;
      } else if (range[2] === "space") out += " ";
      else if (range[2] === "pad") out += " " + ch + " ";
      else if (range[2] === "hangul") out += hangulJamo(cp);
      else if (range[2] !== "drop") throw new Error("unknown BertNormalizer table kind " + range[2]);
    }
    return out;
  }

  // -- Precompiled (tokenizers/src/normalizers/precompiled.rs, spm_precompiled) -----------

  function base64Bytes(b64) {
    if (typeof atob === "function") {
      const bin = atob(b64);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      return bytes;
    }
    return new Uint8Array(Buffer.from(b64, "base64"));
  }

  /* SentencePiece's precompiled charsmap: a darts-clone double-array trie over UTF-8 keys,
   * then the replacement strings, NUL-terminated. */
  function Charsmap(b64) {
    const bytes = base64Bytes(b64);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const trieBytes = view.getUint32(0, true);
    this.units = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < this.units.length; i++) this.units[i] = view.getUint32(4 + 4 * i, true);
    this.normalized = bytes.subarray(4 + trieBytes);
    this.encoder = new TextEncoder();
    this.decoder = new TextDecoder();
  }

  function unitOffset(u) {
    return (u >>> 10) << ((u & (1 << 9)) >>> 6);
  }

  /* The replacement of the shortest key that prefixes `chunk`, or null (spm's transform). */
  Charsmap.prototype.transform = function (chunk) {
    const units = this.units;
    const key = this.encoder.encode(chunk);
    let pos = unitOffset(units[0]);
    for (let i = 0; i < key.length; i++) {
      const c = key[i];
      if (c === 0) break;
      pos ^= c;
      const unit = units[pos];
      if ((unit & ((1 << 31) | 0xff)) >>> 0 !== c) return null;
      pos ^= unitOffset(unit);
      if ((unit >>> 8) & 1) {
        const start = units[pos] & 0x7fffffff;
        let end = start;
        while (end < this.normalized.length && this.normalized[end] !== 0) end++;
        return this.decoder.decode(this.normalized.subarray(start, end));
      }
    }
    return null;
  };

  const SEGMENTER =
    typeof Intl !== "undefined" && Intl.Segmenter
      ? new Intl.Segmenter(undefined, { granularity: "grapheme" })
      : null;

  /* Extended grapheme clusters, as Rust's unicode-segmentation gives them. */
  function graphemes(text) {
    if (SEGMENTER) return Array.from(SEGMENTER.segment(text), (s) => s.segment);
    return Array.from(text); // browsers before 2024 without Intl.Segmenter: per code point
  }

  function utf8Length(s) {
    let n = 0;
    for (const ch of s) {
      const cp = ch.codePointAt(0);
      n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    }
    return n;
  }

  /* Rust's loop, quirks included: a grapheme shorter than 6 UTF-8 bytes is looked up whole,
   * and when its first character has an entry the whole grapheme becomes that entry (so
   * "Ａ" + U+0301 gives "A"); otherwise each character is looked up on its own. */
  function precompiledNormalize(charsmap, text) {
    let out = "";
    for (const g of graphemes(text)) {
      if (utf8Length(g) < 6) {
        const whole = charsmap.transform(g);
        if (whole !== null) {
          out += whole;
          continue;
        }
      }
      for (const ch of g) {
        const one = charsmap.transform(ch);
        out += one === null ? ch : one;
      }
    }
    return out;
  }

  // -- pre-tokenizers ---------------------------------------------------------------------

  /* Rust's BertPreTokenizer: split on whitespace (dropped) and on each punctuation char,
   * both as Rust's tables say (`bert_pre_tokenizer_table`). */
  function bertPreTokenize(table, text) {
    const words = [];
    let word = "";
    for (const ch of text) {
      const cp = ch.codePointAt(0);
      const space = findRange(table.whitespace, cp) !== null;
      if (space || findRange(table.punctuation, cp) !== null) {
        if (word) words.push(word);
        if (!space) words.push(ch);
        word = "";
      } else {
        word += ch;
      }
    }
    if (word) words.push(word);
    return words;
  }

  // -- wiring -----------------------------------------------------------------------------

  function needTable(table, what) {
    if (!table) throw new Error(what + " needs the Unicode tables modeltailor makes for it");
    return table;
  }

  /* Replace the library's normalizer (and, in a Sequence, its members) by exact versions. */
  function fixNormalizer(node, config, tables) {
    if (!node || !config) return;
    if (config.type === "BertNormalizer") {
      const table = needTable(tables.bert_normalizer.shift(), "BertNormalizer");
      node.normalize = (text) => bertNormalize(table, text);
    } else if (config.type === "Precompiled" && config.precompiled_charsmap) {
      const charsmap = new Charsmap(config.precompiled_charsmap);
      node.normalize = (text) => precompiledNormalize(charsmap, text);
    } else if (config.type === "Sequence") {
      (config.normalizers || []).forEach((c, i) => fixNormalizer(node.normalizers[i], c, tables));
    }
  }

  function fixPreTokenizer(node, config, tables) {
    if (!node || !config) return;
    if (config.type === "BertPreTokenizer") {
      const table = needTable(tables.bert_pre_tokenizer, "BertPreTokenizer");
      node.pre_tokenize_text = (text) => bertPreTokenize(table, text);
    } else if (config.type === "Sequence") {
      (config.pretokenizers || []).forEach((c, i) =>
        fixPreTokenizer(node.tokenizers[i], c, tables)
      );
    }
  }

  /**
   * A Tokenizers.js Tokenizer for a run's tokenizer.json that gives Python's ids.
   *
   * @param {Function} Tokenizer the library's Tokenizer class (TokenizersJS.Tokenizer)
   * @param {object} assets what modeltailor.export.text_js.tokenizer_assets returns:
   *   {tokenizer: tokenizer.json, config: tokenizer_config.json, tables: Unicode tables}
   */
  function loadTokenizer(Tokenizer, assets) {
    const json = assets.tokenizer;
    if (json.added_tokens.some((t) => t.normalized)) {
      // The library normalises these with its own normaliser, before ours is swapped in.
      throw new Error("tokenizers with normalised added tokens are not supported yet");
    }
    const tok = new Tokenizer(json, assets.config || {});
    const tables = assets.tables || {};
    const bert = { ...tables, bert_normalizer: (tables.bert_normalizer || []).slice() };
    fixNormalizer(tok.normalizer, json.normalizer, bert);
    fixPreTokenizer(tok.pre_tokenizer, json.pre_tokenizer, tables);
    return tok;
  }

  return {
    loadTokenizer,
    bertNormalize,
    bertPreTokenize,
    Charsmap,
    precompiledNormalize,
  };
});
