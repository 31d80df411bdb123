// The page: file pickers, the two tabs, drawing. The work is rlipv2.js's.
import { load } from "./rlipv2.js";

const $ = (id) => document.getElementById(id);
const status = (text, error = false) => {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
};
const fail = (e) => status(e instanceof WebAssembly.RuntimeError
  ? `rlipv2 stopped with an internal error (${e.message}; details in the browser console): reload the page to start again.`
  : String(e && e.message ? e.message : e), true);
const row = (cells) => {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(document.createElement("td")).textContent = c;
  return tr;
};

for (const tab of document.querySelectorAll("[role=tab]")) {
  tab.onclick = () => {
    for (const t of document.querySelectorAll("[role=tab]")) {
      t.setAttribute("aria-selected", String(t === tab));
      $(t.getAttribute("aria-controls")).hidden = t !== tab;
    }
  };
}

let api;
let model = null; // the File loaded into the module

async function detect() {
  const modelFile = $("model").files[0];
  const imageFile = $("image").files[0];
  if (!modelFile || !imageFile) return status("Pick a converted model and an image first.", true);
  $("run-detect").disabled = true;
  try {
    if (model !== modelFile) {
      status(`Reading ${modelFile.name} (${(modelFile.size / 2 ** 20).toFixed(0)} MiB)…`);
      const m = await api.loadModel(modelFile);
      model = modelFile;
      status(`Loaded ${m.file}: ${m.variant}, ${m.backbone}, ${m.queries} queries, ${m.labels} labels (${m.objects} objects, ${m.verbs} verbs).`);
    }
    status(`Detecting in ${imageFile.name}…`);
    const doc = await api.detect(imageFile, {
      topK: Number($("topk").value),
      threshold: Number($("threshold").value),
      draw: Number($("draw").value),
    });
    const img = api.drawn(doc.width, doc.height);
    const canvas = $("canvas");
    canvas.width = doc.width;
    canvas.height = doc.height;
    if (img) canvas.getContext("2d").putImageData(img, 0, 0);
    const body = $("triplets").tBodies[0];
    body.replaceChildren(...doc.detections.map((d, i) =>
      row([i + 1, d.subject ?? "person", d.verb, d.object, d.score >= 0.001 ? d.score.toFixed(3) : d.score.toExponential(2)])));
    $("triplets").hidden = false;
    $("stages").tBodies[0].replaceChildren(...doc.stages.map(([n, s]) => row([n, (s * 1e3).toFixed(1)])));
    $("stages").hidden = false;
    status(`${doc.detections.length} triplets in ${(doc.seconds * 1e3).toFixed(0)} ms (${doc.width}×${doc.height}, ${doc.backend}).`);
    window.lastDocument = doc;
  } catch (e) {
    fail(e);
  } finally {
    $("run-detect").disabled = false;
  }
}

async function bench() {
  $("run-bench").disabled = true;
  const spec = { case: $("case").value, form: $("form").value, repeat: Number($("repeat").value), seed: 1 };
  try {
    status(`Running ms_deform_attn (${spec.case}, ${spec.form})…`);
    const r = await api.msda(spec);
    $("bench-results").tBodies[0].appendChild(row([spec.case, spec.form, r.ms_min.toFixed(3), r.ms_median.toFixed(3),
      r.gb_per_s.toFixed(1), r.gflop_per_s.toFixed(1), r.max_abs_diff_vs_cpu.toExponential(2)]));
    status(`ms_deform_attn ${spec.case}: ${r.ms_min.toFixed(3)} ms, ${r.gb_per_s.toFixed(1)} GB/s on ${r.device}.`);
  } catch (e) {
    fail(e);
  } finally {
    $("run-bench").disabled = false;
  }
}

try {
  api = await load();
  status("Opening the GPU…");
  const gpu = await api.open();
  const limits = Object.fromEntries(gpu.details);
  const a = gpu.adapter;
  const name = [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(" ") || "unnamed adapter";
  $("adapter").textContent = `GPU: ${name}${gpu.fallback ? " (software fallback adapter)" : ""}. Max buffer ${limits["max buffer"]}.`;
  status("Ready: pick a converted model and an image.");
  $("run-detect").disabled = false;
  $("run-bench").disabled = false;
  $("run-detect").onclick = detect;
  $("run-bench").onclick = bench;
  window.rlipv2 = api; // for tests and the console
  window.rlipv2Ready = true;
} catch (e) {
  fail(e);
  window.rlipv2Error = String(e && e.message ? e.message : e);
}
