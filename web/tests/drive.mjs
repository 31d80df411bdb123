// Drives the page (web/index.html) in a real headless chromium and writes what it shows, for
// tests/suite/browser.rs to compare with the native backends. Serves web/ on 127.0.0.1 itself.
//
//   node web/tests/drive.mjs --out DIR [--msda CASES.json] [--model M.safetensors --image I.png]
//
// DIR/open.json: the opened GPU; DIR/no-webgpu.txt: what the page says in a chromium started
// without --enable-unsafe-webgpu (no adapter here). For each spec i of CASES.json (a JSON array of the page's msda
// specs): DIR/msda-i.json (the job's answer) and DIR/msda-i-<tensor>.f32 (value, a, b, c,
// output; little-endian f32). With --model and --image: the page's Detect tab is used as a
// visitor would (file pickers, the button) and DIR/detect.json is its document, DIR/canvas.png
// a screenshot of the drawn canvas, DIR/page.png of the whole page. Exits 1 with the reason on
// stderr when a step fails. The browser: $RLIPV2_CHROMIUM or /usr/bin/chromium.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
if (!args.out) {
  console.error("usage: drive.mjs --out DIR [--msda CASES.json] [--model M.safetensors --image I.png]");
  process.exit(2);
}
fs.mkdirSync(args.out, { recursive: true });
const out = (name) => path.join(args.out, name);
const step = (what) => console.log(`drive: ${what}`);

const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
const server = http.createServer((req, res) => {
  const file = path.join(web, path.normalize(decodeURIComponent(new URL(req.url, "http://page").pathname)));
  if (!file.startsWith(web + path.sep)) {
    res.writeHead(403).end();
    return;
  }
  fs.readFile(file, (err, data) => {
    if (err) return res.writeHead(404).end();
    res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" }).end(data);
  });
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));

// this machine's network is closed: no background connections, no component updates
const launch = (webgpu) => chromium.launch({
  executablePath: process.env.RLIPV2_CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [...(webgpu ? ["--enable-unsafe-webgpu"] : []), "--no-sandbox", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"],
});
const url = `http://127.0.0.1:${server.address().port}/index.html`;
let failed = null;
// without WebGPU: the page must say so
try {
  const plain = await launch(false);
  try {
    const page = await plain.newPage();
    await page.goto(url);
    await page.waitForFunction(() => window.rlipv2Ready || window.rlipv2Error, null, { timeout: 60_000 });
    const said = await page.evaluate(() => `${window.rlipv2Error ?? "ready"}\n${document.getElementById("status").className}`);
    fs.writeFileSync(out("no-webgpu.txt"), said);
    step(`without --enable-unsafe-webgpu: ${said.split("\n")[0]}`);
  } finally {
    await plain.close();
  }
} catch (e) {
  failed = e;
}
const browser = await launch(true);
try {
  if (failed) throw failed;
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on("console", (m) => m.type() === "error" && console.error(`page console: ${m.text()}`));
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => window.rlipv2Ready || window.rlipv2Error, null, { timeout: 120_000 });
  const error = await page.evaluate(() => window.rlipv2Error);
  if (error) throw new Error(`the page could not start: ${error}`);
  const gpu = await page.evaluate(() => ({
    status: document.getElementById("status").textContent,
    adapter: document.getElementById("adapter").textContent,
    userAgent: navigator.userAgent,
  }));
  fs.writeFileSync(out("open.json"), JSON.stringify(gpu, null, 1));
  step(gpu.adapter);

  const specs = args.msda ? JSON.parse(fs.readFileSync(args.msda, "utf8")) : [];
  for (const [i, spec] of specs.entries()) {
    const r = await page.evaluate(async (spec) => {
      const answer = await window.rlipv2.msda(spec);
      const tensors = {};
      for (const name of ["value", "a", "b", "c", "output"]) {
        const bytes = new Uint8Array(window.rlipv2.tensor(name).buffer);
        let s = "";
        for (let k = 0; k < bytes.length; k += 0x8000) s += String.fromCharCode(...bytes.subarray(k, k + 0x8000));
        tensors[name] = btoa(s);
      }
      return { answer, tensors };
    }, spec);
    fs.writeFileSync(out(`msda-${i}.json`), JSON.stringify(r.answer, null, 1));
    for (const [name, b64] of Object.entries(r.tensors)) fs.writeFileSync(out(`msda-${i}-${name}.f32`), Buffer.from(b64, "base64"));
    step(`msda ${JSON.stringify(spec)}: ${r.answer.ms_min.toFixed(3)} ms, max |gpu - cpu| ${r.answer.max_abs_diff_vs_cpu}`);
  }

  if (args.model && args.image) {
    await page.setInputFiles("#model", args.model);
    await page.setInputFiles("#image", args.image);
    await page.click("#run-detect");
    // done when the button is back and a document (or an error) is there
    await page.waitForFunction(
      () => !document.getElementById("run-detect").disabled &&
        (window.lastDocument || document.getElementById("status").className === "error"),
      null, { timeout: 600_000, polling: 250 },
    );
    const shown = await page.evaluate(() => ({ doc: window.lastDocument, status: document.getElementById("status").textContent }));
    if (!shown.doc) throw new Error(`detect failed in the page: ${shown.status}`);
    fs.writeFileSync(out("detect.json"), JSON.stringify(shown.doc, null, 1));
    // the canvas at its own size, cut from a screenshot of the page (element screenshots round
    // a fractional layout position outwards, a row or column too many)
    const box = await page.evaluate(() => {
      const c = document.getElementById("canvas");
      const r = c.getBoundingClientRect();
      return { x: Math.round(r.x + window.scrollX), y: Math.round(r.y + window.scrollY), width: c.width, height: c.height };
    });
    await page.screenshot({ path: out("canvas.png"), clip: box, fullPage: true });
    await page.screenshot({ path: out("page.png"), fullPage: true });
    step(`detect: ${shown.status}`);
  }
} catch (e) {
  failed = e;
} finally {
  await browser.close();
  server.close();
}
if (failed) {
  console.error(`drive: ${failed.message ?? failed}`);
  process.exit(1);
}
