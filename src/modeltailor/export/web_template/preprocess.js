/*
 * modeltailor web export: the Python evaluation preprocessing, re-implemented bit for bit.
 *
 * Python (modeltailor.data.transforms.eval_transform) runs torchvision's v2 pipeline on a uint8
 * tensor: Resize(shorter side, antialias=True) -> CenterCrop -> ToDtype(float32, scale=True).
 * On CPU, torch resizes uint8 images with PIL-SIMD's fixed-point separable filter
 * (aten/src/ATen/native/cpu/UpSampleKernel.cpp, _compute_index_ranges_int16_weights, and
 * UpSampleKernelAVXAntialias.h): float64 weights normalised per output pixel, scaled to int16
 * with a per-axis precision, a horizontal pass then a vertical pass, each rounded and clamped to
 * uint8. Doing the same integer arithmetic here gives the same bytes, so the browser feeds the
 * model the tensor Python would. Normalisation (mean/std) lives inside the ONNX graph.
 *
 * Works as a classic browser script (window.ModelTailorPreprocess) and as a Node module
 * (the parity test runs it under node against torchvision).
 */
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.ModelTailorPreprocess = api;
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  /* Keys' cubic convolution with a = -0.5: torch's antialiased bicubic (same as PIL). */
  function cubic(x) {
    const a = -0.5;
    x = Math.abs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    return 0.0;
  }

  function triangle(x) {
    x = Math.abs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
  }

  const FILTERS = { bicubic: [cubic, 4], bilinear: [triangle, 2] };

  /* Python's round(): halves go to the even neighbour (torchvision's centre-crop anchor). */
  function roundHalfEven(x) {
    const f = Math.floor(x);
    const d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }

  /* torchvision _compute_resized_output_size for Resize(int): [height, width]. */
  function resizedSize(height, width, shorter) {
    const short = Math.min(height, width);
    const long = Math.max(height, width);
    const newLong = Math.trunc((shorter * long) / short);
    return width <= height ? [newLong, shorter] : [shorter, newLong];
  }

  /* Per-output-pixel taps: first input index, tap count, int16 weights, fixed-point precision. */
  function filterTaps(inSize, outSize, interpolation) {
    const [filter, interpSize] = FILTERS[interpolation];
    const scale = inSize / outSize;
    const support = scale >= 1.0 ? interpSize * 0.5 * scale : interpSize * 0.5;
    const maxTaps = Math.ceil(support) * 2 + 1;
    const invScale = scale >= 1.0 ? 1.0 / scale : 1.0;
    const weights = new Float64Array(outSize * maxTaps);
    const first = new Int32Array(outSize);
    const count = new Int32Array(outSize);
    let wtMax = 0.0;
    for (let i = 0; i < outSize; i++) {
      const center = scale * (i + 0.5);
      const lo = Math.max(Math.trunc(center - support + 0.5), 0);
      const n = Math.min(Math.max(Math.min(Math.trunc(center + support + 0.5), inSize) - lo, 0), maxTaps);
      let total = 0.0;
      for (let j = 0; j < n; j++) {
        const w = filter((j + lo - center + 0.5) * invScale);
        weights[i * maxTaps + j] = w;
        total += w;
      }
      if (total !== 0.0) {
        for (let j = 0; j < n; j++) {
          weights[i * maxTaps + j] /= total;
          wtMax = Math.max(wtMax, weights[i * maxTaps + j]);
        }
      }
      first[i] = lo;
      count[i] = n;
    }
    let precision = 0;
    for (; precision < 22; precision++) {
      if (Math.trunc(0.5 + wtMax * 2 ** (precision + 1)) >= 1 << 15) break;
    }
    const k = new Int32Array(outSize * maxTaps);
    for (let i = 0; i < k.length; i++) {
      const v = weights[i] * 2 ** precision;
      k[i] = v < 0 ? Math.trunc(-0.5 + v) : Math.trunc(0.5 + v);
    }
    return { first, count, k, maxTaps, precision };
  }

  /*
   * One separable pass over interleaved RGB bytes. `along` is 1 for rows (horizontal) or the
   * row length for columns (vertical); the sum starts at half an LSB and is shifted and clamped
   * exactly like the int32 SIMD lanes (packs/packus saturate to 0..255).
   */
  function pass(src, srcW, srcH, dstW, dstH, taps, horizontal) {
    const dst = new Uint8Array(dstW * dstH * 3);
    const { first, count, k, maxTaps, precision } = taps;
    const half = 1 << (precision - 1);
    for (let y = 0; y < dstH; y++) {
      for (let x = 0; x < dstW; x++) {
        const o = horizontal ? x : y;
        const base = o * maxTaps;
        const n = count[o];
        const start = horizontal ? (y * srcW + first[o]) * 3 : (first[o] * srcW + x) * 3;
        const step = horizontal ? 3 : srcW * 3;
        for (let c = 0; c < 3; c++) {
          let sum = half;
          for (let j = 0, p = start + c; j < n; j++, p += step) sum += k[base + j] * src[p];
          const v = sum >> precision;
          dst[(y * dstW + x) * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
        }
      }
    }
    return dst;
  }

  /* torch's legacy "nearest" (what torchvision's NEAREST uses): floor(i * in/out) in float32. */
  function resizeNearest(rgb, width, height, outW, outH) {
    const index = (i, inSize, outSize) => {
      if (outSize === 2 * inSize) return i >> 1;
      const scale = Math.fround(inSize / outSize);
      return Math.min(Math.floor(Math.fround(i * scale)), inSize - 1);
    };
    const dst = new Uint8Array(outW * outH * 3);
    for (let y = 0; y < outH; y++) {
      const sy = index(y, height, outH);
      for (let x = 0; x < outW; x++) {
        const s = (sy * width + index(x, width, outW)) * 3;
        const d = (y * outW + x) * 3;
        dst[d] = rgb[s];
        dst[d + 1] = rgb[s + 1];
        dst[d + 2] = rgb[s + 2];
      }
    }
    return dst;
  }

  /* Resize interleaved RGB bytes to outW x outH: horizontal pass first, as torch does. */
  function resize(rgb, width, height, outW, outH, interpolation) {
    if (interpolation === "nearest") return resizeNearest(rgb, width, height, outW, outH);
    if (!FILTERS[interpolation]) throw new Error("unsupported interpolation: " + interpolation);
    let img = rgb;
    let w = width;
    if (outW !== width) {
      img = pass(img, w, height, outW, height, filterTaps(width, outW, interpolation), true);
      w = outW;
    }
    if (outH !== height) {
      img = pass(img, w, height, w, outH, filterTaps(height, outH, interpolation), false);
    }
    return img;
  }

  /* torchvision center_crop: zero padding when too small, anchors rounded half-to-even. */
  function centerCrop(rgb, width, height, size) {
    const padL = size > width ? Math.floor((size - width) / 2) : 0;
    const padT = size > height ? Math.floor((size - height) / 2) : 0;
    const paddedW = size > width ? size : width;
    const paddedH = size > height ? size : height;
    const top = roundHalfEven((paddedH - size) / 2) - padT;
    const left = roundHalfEven((paddedW - size) / 2) - padL;
    const out = new Uint8Array(size * size * 3);
    for (let y = 0; y < size; y++) {
      const sy = y + top;
      if (sy < 0 || sy >= height) continue;
      for (let x = 0; x < size; x++) {
        const sx = x + left;
        if (sx < 0 || sx >= width) continue;
        const s = (sy * width + sx) * 3;
        const d = (y * size + x) * 3;
        out[d] = rgb[s];
        out[d + 1] = rgb[s + 1];
        out[d + 2] = rgb[s + 2];
      }
    }
    return out;
  }

  /*
   * RGBA (canvas getImageData) -> RGB composited on white, like modeltailor's _to_rgb
   * (PIL paste with the alpha mask: 255 - a + round(c * a / 255)).
   */
  function rgbaToRgb(rgba, width, height) {
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0, n = width * height; i < n; i++) {
      const a = rgba[i * 4 + 3];
      for (let c = 0; c < 3; c++) {
        const v = rgba[i * 4 + c];
        rgb[i * 3 + c] = a === 255 ? v : 255 - a + Math.floor((v * a + 127) / 255);
      }
    }
    return rgb;
  }

  /* HWC bytes -> NCHW float32 in [0, 1]: torch's uint8.to(float32).mul_(1/255) in float32. */
  function toTensor(rgb, size) {
    const plane = size * size;
    const out = new Float32Array(3 * plane);
    const scale = Math.fround(1.0 / 255.0);
    for (let i = 0; i < plane; i++) {
      out[i] = rgb[i * 3] * scale;
      out[plane + i] = rgb[i * 3 + 1] * scale;
      out[2 * plane + i] = rgb[i * 3 + 2] * scale;
    }
    return out;
  }

  /*
   * The whole pipeline. `pre` is the export's preprocessing.json: resize_shorter_side_to,
   * center_crop, interpolation. Returns the model input and the cropped bytes (for tests).
   */
  function preprocess(rgba, width, height, pre) {
    const rgb = rgbaToRgb(rgba, width, height);
    const [outH, outW] = resizedSize(height, width, pre.resize_shorter_side_to);
    const resized =
      outH === height && outW === width
        ? rgb
        : resize(rgb, width, height, outW, outH, pre.interpolation);
    const crop = centerCrop(resized, outW, outH, pre.center_crop);
    return { tensor: toTensor(crop, pre.center_crop), crop, size: pre.center_crop };
  }

  return { preprocess, resize, resizedSize, centerCrop, rgbaToRgb, toTensor, filterTaps };
});
