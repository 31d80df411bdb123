// rlipv2 in the browser: the page's API over the WebAssembly module (pkg/, built by build.sh).
// Each call that touches the GPU is a job of the module run through WebAssembly.promising (see
// src/lib.rs); jobs run one at a time, in the order they were asked for.
import init, * as wasm from "./pkg/rlipv2_web.js";

/** Why this browser cannot run the page, or null. */
export function missing() {
  if (!("gpu" in navigator)) {
    return "WebGPU is not available in this browser (navigator.gpu is missing). It ships in Chrome and Edge 113+ on Windows, macOS and ChromeOS, Chrome 121+ on Android, Safari 26, and Firefox 141+ on Windows; on Linux, Chrome needs --enable-unsafe-webgpu (and a Vulkan driver).";
  }
  if (typeof WebAssembly.Suspending !== "function" || typeof WebAssembly.promising !== "function") {
    return "This browser has WebGPU but not WebAssembly JSPI (WebAssembly.Suspending / promising), which the page needs to wait for the GPU from synchronous code: Chrome and Edge 137+ have it.";
  }
  return null;
}

/** Loads the module; resolves to the API below, or rejects with why this browser cannot. */
export async function load() {
  const why = missing();
  if (why) throw new Error(why);
  if (!(await navigator.gpu.requestAdapter())) {
    throw new Error("This browser has WebGPU but offers no GPU adapter (no usable GPU or driver, or the GPU is blocklisted; on Linux, Chrome needs --enable-unsafe-webgpu).");
  }
  const exports = await init();
  const run = WebAssembly.promising(exports.rlipv2_run);
  let queue = Promise.resolve();
  // queues a job with `ask`, runs it, answers its parsed JSON (or throws its error)
  const job = (ask) => {
    const done = queue.then(async () => {
      ask();
      await run();
      return JSON.parse(wasm.take_result());
    });
    queue = done.catch(() => {});
    return done;
  };
  return {
    /** Opens the browser's GPU: { device, details: [[key, value], …], adapter: the browser's
     *  GPUAdapterInfo (vendor, architecture, device, description), fallback (a software adapter) }. */
    open: async () => {
      const opened = await job(() => wasm.open());
      // wgpu names no adapter on the web; the browser's own description says which GPU it is
      const adapter = await navigator.gpu.requestAdapter();
      const info = adapter && adapter.info ? adapter.info : {};
      opened.adapter = { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description };
      opened.fallback = Boolean(adapter && (adapter.isFallbackAdapter || (adapter.info && adapter.info.isFallbackAdapter)));
      return opened;
    },
    /** Loads a converted model (a File): { file, tensors, values, variant, backbone, queries, labels, … }. */
    loadModel: async (file) => {
      const bytes = new Uint8Array(await file.arrayBuffer());
      return job(() => wasm.load_model(file.name, bytes));
    },
    /** Detects in an image File: rlipv2 detect's JSON document, plus `stages` and `seconds`. */
    detect: async (file, { topK = 10, threshold = 0, draw = 5 } = {}) => {
      const bytes = new Uint8Array(await file.arrayBuffer());
      return job(() => wasm.detect(file.name, bytes, topK, threshold, draw));
    },
    /** The last detect's image with its best detections drawn: ImageData, or null. */
    drawn: (width, height) => {
      const rgba = wasm.take_drawn();
      return rgba ? new ImageData(new Uint8ClampedArray(rgba.buffer), width, height) : null;
    },
    /** ms_deform_attn on seeded inputs, checked against the cpu backend and timed (see src/lib.rs). */
    msda: (spec) => job(() => wasm.msda(JSON.stringify(spec))),
    /** A tensor of the last msda job (value, a, b, c, output): Float32Array or undefined. */
    tensor: (name) => wasm.take_tensor(name),
  };
}
