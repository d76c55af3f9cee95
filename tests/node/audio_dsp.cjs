// Node side of tests/test_audio_web.py: `node audio_dsp.cjs audio_dsp.js job.json` prints JSON.
// job: {wave: [...], rates: [[from, to], ...], stereo: [[...], [...]], lengths: [...],
//       size, step, files: [paths], int16: [[...], ...]} ->
// {resampled: {"from>to": [...]}, downmix: [...], windows: [{starts, samples, mask}], rates: [...],
//  oggSamples: [...], int16: [{changed, samples}, ...]}
const fs = require("fs");
const A = require(process.argv[2]);
const job = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const wave = Float32Array.from(job.wave);
const resampled = {};
for (const [from, to] of job.rates) resampled[from + ">" + to] = Array.from(A.resample(wave, from, to));
const windows = job.lengths.map((n) => {
  const w = A.clipWindows(wave.subarray(0, n), job.size, job.step);
  return { starts: w.starts, samples: Array.from(w.samples), mask: Array.from(w.mask) };
});
const out = {
  resampled,
  downmix: Array.from(A.downmix(job.stereo.map((c) => Float32Array.from(c)))),
  windows,
  rates: job.files.map((f) => A.nativeRate(new Uint8Array(fs.readFileSync(f)))),
  oggSamples: job.files.map((f) => A.oggSamples(new Uint8Array(fs.readFileSync(f)))),
  int16: job.int16.map((c) => {
    const samples = Float32Array.from(c);
    const changed = A.exactInt16(samples);
    return { changed, samples: Array.from(samples) };
  }),
};
process.stdout.write(JSON.stringify(out));
