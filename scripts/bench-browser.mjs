// Browser benchmark: serves the repository on loopback, opens www/bench.html in Debian's headless
// Chromium (WebGPU enabled) for each model of www/models.json, and prints per backend the time
// to build and warm the classifier, each stage of a classification, first and warm inference,
// the cost of a call into the wasm; and each module's size (raw, gzip, brotli) and each model's
// download. Numbers only, no assertions.
import { readFileSync } from "node:fs";
import { brotliCompressSync, gzipSync } from "node:zlib";
import path from "node:path";
import { launchChromium, models, root, startServer } from "./harness.mjs";

const ms = (x) => `${x.toFixed(1)} ms`;
const server = await startServer();
const browser = await launchChromium();
try {
  const mb = (bytes) => `${(bytes / 1e6).toFixed(2)} MB`;
  for (const kind of ["cpu", "webgpu"]) {
    const wasm = readFileSync(path.join(root, `pkg/${kind}/mvsa_sentiment_bg.wasm`));
    console.log(`pkg/${kind} module: ${mb(wasm.length)} raw, ${mb(gzipSync(wasm, { level: 9 }).length)} gzip, ${mb(brotliCompressSync(wasm).length)} brotli`);
  }
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
    // What a first visit fetches before the model can classify: the CPU module and its glue,
    // then the folder's files; raw, and gzip-compressed as a static host would send them.
    const first = ["pkg/cpu/mvsa_sentiment_bg.wasm", "pkg/cpu/mvsa_sentiment.js", ...Object.keys(model.files).map((f) => `www/${model.id}/${f}`)]
      .map((f) => readFileSync(path.join(root, f)));
    const raw = first.reduce((a, b) => a + b.length, 0);
    const gzipped = first.reduce((a, b) => a + gzipSync(b, { level: 9 }).length, 0);
    console.log(`first visit until it can classify: ${mb(raw)} raw, ${mb(gzipped)} gzip`);
    console.log(`download of the folder from the local server: ${result.download_ms?.toFixed(0)} ms`);
    for (const [backend, r] of Object.entries(result.backends)) {
      if (r.skipped) {
        console.log(`${backend}: not measured (${r.skipped})`);
        continue;
      }
      const s = r.stages_ms;
      console.log(`${backend}: module ${ms(r.module_ms)}, build ${ms(r.load_ms)}, warm-up ${ms(r.warm_up_ms)}; first inference ${ms(r.first_ms)}, warm ${ms(r.warm_median_ms)} (median of ${r.runs}, min ${ms(r.warm_min_ms)})`);
      console.log(`${backend} stages: preprocessing ${ms(s.preprocess)}, image encoder ${ms(s.image_encoder)}, text encoder ${ms(s.text_encoder)}, heads ${ms(s.heads)}; a call into the wasm ${r.call_us.toFixed(2)} µs`);
    }
    // The page itself, opened twice: the second time the model comes from the Cache API.
    // Long main-thread tasks (over 50 ms) from the first script on: the model runs in a worker,
    // so the page should have none while it loads.
    await page.addInitScript(() => {
      window.longTasks = [];
      new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) window.longTasks.push(Math.round(entry.duration));
      }).observe({ type: "longtask", buffered: true });
    });
    const usable = [];
    const longTasks = [];
    for (let visit = 0; visit < 2; visit++) {
      await page.goto(`${server.url}/index.html?backend=cpu&model=${model.id}`);
      await page.waitForSelector("body[data-ready]", { timeout: 600_000 });
      usable.push(Number(await page.locator("body").getAttribute("data-ready-at")));
      longTasks.push(await page.evaluate(() => window.longTasks));
    }
    console.log(`page usable (loaded and warmed, CPU): ${ms(usable[0])} after opening it, ${ms(usable[1])} with the model cached`);
    console.log(`long main-thread tasks while the page loads (ms): ${JSON.stringify(longTasks[0])} the first time, ${JSON.stringify(longTasks[1])} cached`);
    await context.close();
  }
} finally {
  await browser.close();
  await server.close();
}
