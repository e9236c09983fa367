// Browser benchmark: serves the repository on loopback, opens www/bench.html in Debian's headless
// Chromium (WebGPU enabled), and prints first / warm inference times per backend, time to ready,
// the .wasm size (raw and gzip) and the weights' download size. Numbers only, no assertions.
import { spawn } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const port = 8000 + Math.floor(Math.random() * 1000);
const server = spawn("python3", ["-m", "http.server", String(port), "--bind", "127.0.0.1"], { cwd: root, stdio: "ignore" });
await new Promise((r) => setTimeout(r, 800));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  const wasm = readFileSync(path.join(root, "pkg/mvsa_sentiment_bg.wasm"));
  console.log(`wasm: ${(wasm.length / 1e6).toFixed(2)} MB raw, ${(gzipSync(wasm, { level: 9 }).length / 1e6).toFixed(2)} MB gzip`);
  for (const [name, folder] of [["default", "model"], ["small", "model-small"]]) {
    // A fresh page (and browser context) per model: nothing cached from the other one.
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${port}/www/bench.html?model=${name}`);
    const result = await page.waitForFunction(() => window.benchResult, null, { timeout: 600_000, polling: 1000 }).then((h) => h.jsonValue());
    console.log(`\n${name} model (www/${folder}/), ${result.userAgent}`);
    if (result.error) console.log(`error: ${result.error}`);
    const size = (file) => statSync(path.join(root, "www", folder, file)).size / 1e6;
    console.log(`download: weights ${size("model.bpk").toFixed(2)} MB + tokenizer ${size("tokenizer.json").toFixed(2)} MB + config and metrics`);
    console.log(`page load to model ready: ${result.ready_ms?.toFixed(0)} ms`);
    for (const [backend, r] of Object.entries(result.backends)) {
      if (r.skipped) console.log(`${backend}: not measured (${r.skipped})`);
      else console.log(`${backend}: first inference ${r.first_ms.toFixed(1)} ms, warm ${r.warm_median_ms.toFixed(1)} ms (median of ${r.runs}, min ${r.warm_min_ms.toFixed(1)} ms)`);
    }
    await context.close();
  }
} finally {
  await browser.close();
  server.kill();
}
