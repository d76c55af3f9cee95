// Node side of tests/test_text_web.py: `node text_side.cjs text_side.js job.json` prints JSON.
// job: {doc: tfidf_side.json, tables: python_text_tables(), texts: [...]} ->
// {logits: per text, lower: str.lower() per text, strip: str.strip() per text}
const fs = require("fs");
const T = require(process.argv[2]);
const job = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const out = {
  logits: job.doc ? job.texts.map((t) => Array.from(T.sideLogits(job.doc, job.tables, t))) : [],
  lower: job.texts.map((t) => T.pyLower(t, job.tables)),
  strip: job.texts.map((t) => T.pyStrip(t, job.tables)),
};
process.stdout.write(JSON.stringify(out));
