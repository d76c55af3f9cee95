// Node side of tests/test_js_tokenizer.py: `node text_windows.mjs job.json` prints JSON.
//
// The scripts are run as a browser page would run them, as classic scripts in the global
// scope (vm.runInThisContext: no `module`, so they define globals), not as CommonJS modules.
// job: {scripts: [paths], assets: path or null, pre, texts, uncapped, ids_texts, grid, round, rows}
import fs from "node:fs";
import vm from "node:vm";

const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
for (const path of job.scripts) vm.runInThisContext(fs.readFileSync(path, "utf8"), { filename: path });
const W = globalThis.ModeltailorTextWindows;
const out = {};
if (job.assets) {
  const assets = JSON.parse(fs.readFileSync(job.assets, "utf8"));
  const tok = globalThis.ModeltailorTokenizer.loadTokenizer(globalThis.TokenizersJS.Tokenizer, assets);
  out.version = globalThis.TokenizersJS.version;
  out.windows = job.texts.map((text) => W.encodeText(tok, text, job.pre));
  out.uncapped = (job.uncapped || []).map((text) => W.encodeText(tok, text, job.pre, false).length);
  out.ids = (job.ids_texts || []).map((text) => tok.encode(text, { add_special_tokens: false }).ids);
}
// Pure functions on synthetic input: [n, size, overlap, limit] -> spread(windows(0..n-1)).
out.grid = (job.grid || []).map(([n, size, overlap, limit]) =>
  W.spread(W.windows(Array.from({ length: n }, (_, i) => i), size, overlap), limit).map((w) => [w[0], w.length]),
);
out.round = (job.round || []).map(W.pyRound);
out.mean = job.rows ? Array.from(W.meanRows(job.rows)) : null;
process.stdout.write(JSON.stringify(out));
