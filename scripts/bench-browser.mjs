// Browser benchmark: serves the repository on loopback, opens www/bench.html in Debian's headless
// Chromium (WebGPU enabled) for each model of www/models.json, and prints first / warm inference
// times per backend, time to ready, the .wasm size (raw and gzip) and each model's download
// size. Numbers only, no assertions.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { launchChromium, models, root, startServer } from "./harness.mjs";

const server = await startServer();
const browser = await launchChromium();
try {
  const wasm = readFileSync(path.join(root, "pkg/mvsa_sentiment_bg.wasm"));
  console.log(`wasm: ${(wasm.length / 1e6).toFixed(2)} MB raw, ${(gzipSync(wasm, { level: 9 }).length / 1e6).toFixed(2)} MB gzip`);
  for (const model of models()) {
    // A fresh browser context per model: nothing cached from the other one.
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${server.url}/www/bench.html?model=${model.id}`);
    const result = await page.waitForFunction(() => window.benchResult, null, { timeout: 600_000, polling: 1000 }).then((h) => h.jsonValue());
    console.log(`\n${model.id}: ${model.title} (www/${model.id}/), ${result.userAgent}`);
    if (result.error) console.log(`error: ${result.error}`);
    const files = Object.entries(model.files).map(([name, bytes]) => `${name} ${(bytes / 1e6).toFixed(2)} MB`);
    console.log(`download: ${files.join(" + ")}`);
    console.log(`page load to model ready: ${result.ready_ms?.toFixed(0)} ms`);
    for (const [backend, r] of Object.entries(result.backends)) {
      if (r.skipped) console.log(`${backend}: not measured (${r.skipped})`);
      else console.log(`${backend}: first inference ${r.first_ms.toFixed(1)} ms, warm ${r.warm_median_ms.toFixed(1)} ms (median of ${r.runs}, min ${r.warm_min_ms.toFixed(1)} ms)`);
    }
    await context.close();
  }
} finally {
  await browser.close();
  await server.close();
}
