/* Decoded audio -> the graph's rows, as `tailor predict` makes them (modeltailor/data/audio.py
 * and modeltailor/training/inputs.py, ported line by line; keep them in step).
 *
 * Python decodes a clip at the file's own rate, takes the mean of its channels, resamples with
 * scipy's resample_poly (a polyphase FIR: Kaiser-windowed sinc, beta 5, 20 * max(up, down) + 1
 * taps) and cuts the result into half-overlapping windows. A browser's own resampling (an
 * OfflineAudioContext at 16 kHz) uses another filter, which moves the log-mel features and so
 * the probabilities; so the page decodes at the file's rate (read from its header here),
 * downmixes itself and resamples with this port of resample_poly. tests/test_audio_web.py
 * compares every function here with Python under node.
 *
 * Works as a classic <script> (defines globalThis.ModeltailorAudio) and as a CommonJS module in
 * Node (module.exports); plain ES2020, no imports.
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module && module.exports) module.exports = api;
  else root.ModeltailorAudio = api;
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  const ascii = (b, at, n) => String.fromCharCode(...b.subarray(at, at + n));
  const u32le = (b, at) => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;

  /* RIFF/RF64 WAVE: the fmt chunk's sample rate. */
  function wavRate(b) {
    let at = 12;
    while (at + 8 <= b.length) {
      const id = ascii(b, at, 4);
      const size = u32le(b, at + 4);
      if (id === "fmt " && at + 16 <= b.length) return u32le(b, at + 12);
      at += 8 + size + (size & 1);
    }
    return null;
  }

  /* FLAC: STREAMINFO (the first metadata block) holds the rate in 20 bits at byte 18. */
  function flacRate(b) {
    let at = 4;
    if (ascii(b, 0, 3) === "ID3") return null; // a tagged FLAC: let the browser say
    if (b.length < at + 4 + 13 || (b[at] & 0x7f) !== 0) return null;
    const s = at + 4 + 10;
    return ((b[s] << 12) | (b[s + 1] << 4) | (b[s + 2] >> 4)) >>> 0;
  }

  /* Ogg: the first page's packet is Vorbis's identification header or OpusHead. Opus always
   * decodes at 48 kHz (whatever rate its header says the input had). */
  function oggRate(b) {
    if (b.length < 27) return null;
    const segments = b[26];
    const packet = 27 + segments;
    if (ascii(b, packet, 7) === "\x01vorbis") return u32le(b, packet + 12);
    if (ascii(b, packet, 8) === "OpusHead") return 48000;
    return null;
  }

  /* AIFF/AIFC: COMM's rate is an 80-bit extended float. */
  function aiffRate(b) {
    let at = 12;
    while (at + 8 <= b.length) {
      const id = ascii(b, at, 4);
      const size = ((b[at + 4] << 24) | (b[at + 5] << 16) | (b[at + 6] << 8) | b[at + 7]) >>> 0;
      if (id === "COMM") {
        const e = at + 8 + 8;
        const exponent = ((b[e] & 0x7f) << 8) | b[e + 1];
        let mantissa = 0;
        for (let i = 0; i < 8; i++) mantissa = mantissa * 256 + b[e + 2 + i];
        return Math.round(mantissa * Math.pow(2, exponent - 16383 - 63));
      }
      at += 8 + size + (size & 1);
    }
    return null;
  }

  /* The sample rate the file stores, read from its header (null: not a format read here). */
  function nativeRate(bytes) {
    const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    if (b.length < 12) return null;
    const head = ascii(b, 0, 4);
    let rate = null;
    if ((head === "RIFF" || head === "RF64") && ascii(b, 8, 4) === "WAVE") rate = wavRate(b);
    else if (head === "fLaC") rate = flacRate(b);
    else if (head === "OggS") rate = oggRate(b);
    else if (head === "FORM" && /^AIF[FC]$/.test(ascii(b, 8, 4))) rate = aiffRate(b);
    return rate && rate >= 1 && rate <= 768000 ? rate : null;
  }

  /* Ogg: the sample count the file declares (the last page's granule position; for Vorbis
   * the samples at its own rate), or null. Chromium's decoder drops the end of some Ogg
   * Vorbis files (the last partial block), which the page then says. */
  function oggSamples(bytes) {
    const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    if (b.length < 27 || ascii(b, 0, 4) !== "OggS") return null;
    if (ascii(b, 27 + b[26], 7) !== "\x01vorbis") return null; // Opus counts at 48 kHz, pre-skip
    for (let at = b.length - 27; at >= 0; at--) {
      if (b[at] !== 0x4f || ascii(b, at, 4) !== "OggS") continue;
      const low = u32le(b, at + 6);
      const high = u32le(b, at + 10);
      return high === 0 ? low : null;
    }
    return null;
  }

  /* Samples as libsndfile gives 16-bit PCM: v / 32768. Chromium divides positive values by
   * 32767 (negative ones by 32768), 3e-5 too loud; a channel whose positive samples are all
   * multiples of 1/32767 (and not all of 1/32768) is rescaled, in place. Other browsers or
   * sample formats fail the test and are left alone. */
  function exactInt16(channel) {
    let asym = false;
    for (let i = 0; i < channel.length; i++) {
      const x = channel[i];
      if (x <= 0) continue;
      const a = x * 32767;
      if (Math.abs(a - Math.round(a)) > 1e-3) return false;
      const s = x * 32768;
      if (Math.abs(s - Math.round(s)) > 1e-3) asym = true;
    }
    if (!asym) return false;
    for (let i = 0; i < channel.length; i++) {
      if (channel[i] > 0) channel[i] = Math.round(channel[i] * 32767) / 32768;
    }
    return true;
  }

  /* numpy's float32 `data.mean(axis=1)`: a float32 running sum, then / channels. */
  function downmix(channels) {
    if (channels.length === 1) return Float32Array.from(channels[0]);
    const n = channels[0].length;
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (const ch of channels) sum = Math.fround(sum + ch[i]);
      out[i] = sum / channels.length;
    }
    return out;
  }

  function gcd(a, b) {
    while (b) [a, b] = [b, a % b];
    return a;
  }

  /* Modified Bessel function of the first kind, order 0 (power series; what Kaiser needs). */
  function besselI0(x) {
    let sum = 1;
    let term = 1;
    const q = (x * x) / 4;
    for (let k = 1; k < 500; k++) {
      term *= q / (k * k);
      sum += term;
      if (term < sum * 1e-17) break;
    }
    return sum;
  }

  const sinc = (x) => (x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x));

  /* scipy.signal.firwin(taps, cutoff, window=("kaiser", beta)): a low-pass, scaled so its
   * gain at 0 Hz is exactly 1; cutoff relative to Nyquist. */
  function firwinKaiser(taps, cutoff, beta) {
    const alpha = (taps - 1) / 2;
    const h = new Float64Array(taps);
    let total = 0;
    for (let n = 0; n < taps; n++) {
      const m = n - alpha;
      const r = (2 * n) / (taps - 1) - 1;
      const w = besselI0(beta * Math.sqrt(Math.max(0, 1 - r * r))) / besselI0(beta);
      h[n] = cutoff * sinc(cutoff * m) * w;
      total += h[n];
    }
    for (let n = 0; n < taps; n++) h[n] /= total;
    return h;
  }

  /* scipy.signal.resample_poly(x, up, down) for float32 x (default Kaiser window, zero
   * padding), as modeltailor's `resample(wave, rate, target)` calls it. */
  function resample(x, rate, target) {
    if (rate === target) return x;
    const g = gcd(rate, target);
    const up = target / g;
    const down = rate / g;
    const nIn = x.length;
    const nOut = Math.floor((nIn * up) / down) + ((nIn * up) % down ? 1 : 0);
    const maxRate = Math.max(up, down);
    const halfLen = 10 * maxRate;
    // resample_poly designs h in float64, casts it to x's dtype (float32), then h *= up
    const h = Float32Array.from(firwinKaiser(2 * halfLen + 1, 1 / maxRate, 5.0));
    for (let k = 0; k < h.length; k++) h[k] = Math.fround(h[k] * up);
    const preRemove = Math.floor((halfLen + (down - (halfLen % down))) / down);
    const offset = down - (halfLen % down); // zeros scipy puts before h
    const out = new Float32Array(nOut);
    // y[n] = sum_j x[j] * hp[p - j * up], p = (n + preRemove) * down, hp = h delayed by offset
    for (let n = 0; n < nOut; n++) {
      const p = (n + preRemove) * down - offset;
      const jLow = Math.max(0, Math.ceil((p - (h.length - 1)) / up));
      const jHigh = Math.min(nIn - 1, Math.floor(p / up));
      let acc = 0;
      for (let j = jLow; j <= jHigh; j++) acc += x[j] * h[p - j * up];
      out[n] = acc;
    }
    return out;
  }

  /* clip_windows: {samples, mask} (count x size, row-major) and the number of windows. A clip
   * of at most `size` samples is one zero-padded window; a longer one is cut at 0, step,
   * 2 step, ... while the window fits, plus one ending at the clip's end if they miss it. */
  function clipWindows(wave, size, step) {
    let starts = [0];
    if (wave.length > size) {
      starts = [];
      for (let s = 0; s + size <= wave.length; s += step) starts.push(s);
      if (starts[starts.length - 1] + size < wave.length) starts.push(wave.length - size);
    }
    const samples = new Float32Array(starts.length * size);
    const mask = new Float32Array(starts.length * size);
    starts.forEach((s, row) => {
      const part = wave.subarray(s, Math.min(wave.length, s + size));
      samples.set(part, row * size);
      mask.fill(1, row * size, row * size + part.length);
    });
    return { samples, mask, count: starts.length, starts };
  }

  /* The windows' logits -> their mean (float64 sums, as numpy's mean over float32 rows is
   * close enough: the page is compared to 1e-3 in probability). */
  function meanRows(data, rows) {
    const classes = data.length / rows;
    const mean = new Float64Array(classes);
    for (let r = 0; r < rows; r++) for (let c = 0; c < classes; c++) mean[c] += data[r * classes + c];
    return Array.from(mean, (v) => v / rows);
  }

  return { nativeRate, oggSamples, exactInt16, downmix, firwinKaiser, resample, clipWindows, meanRows };
});
