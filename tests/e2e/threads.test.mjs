// The CPU on several threads: served with COOP/COEP (scripts/serve.sh) the page is cross-origin
// isolated and answers on the threaded module (pkg/cpu-threads); from a static host that sends
// no such headers it answers on one thread (pkg/cpu), and from the next visit on, once its
// service worker adds the headers, on threads. Both modules give the shipped model's golden
// probabilities (tests/golden/shipped.json, native) within 1e-4.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { TEST, WORK, launchChromium, patient, root, startServer } from "../../scripts/harness.mjs";

const golden = JSON.parse(readFileSync(path.join(root, "tests/golden/shipped.json"), "utf8")).pairs;
const TOLERANCE = 1e-4;
let browser;
let isolated; // serves with COOP/COEP, as scripts/serve.sh does
let plain; // serves without them, as a plain static host does

before(async () => {
  isolated = await startServer();
  plain = await startServer({ isolate: false });
  browser = patient(await launchChromium());
});
after(async () => {
  await browser?.close();
  await isolated?.close();
  await plain?.close();
});

// What the page says it runs on: {isolated, threads (body[data-threads]), badge, why}.
async function where(page) {
  await page.waitForSelector("body[data-ready]", { timeout: WORK });
  return page.evaluate(() => ({
    isolated: self.crossOriginIsolated,
    threads: Number(document.body.dataset.threads),
    badge: document.querySelector("#backend").textContent.trim(),
    why: document.querySelector("#backend").title,
  }));
}

// Every golden pair classified in the page, its fused probabilities against the native ones.
async function matchesGolden(page) {
  for (const pair of golden) {
    await page.setInputFiles("#file", path.join(root, `tests/fixtures/mini/data/${pair.guid}.jpg`));
    await page.fill("#caption", pair.caption);
    await page.click("#classify");
    await page.locator("#result").waitFor({ state: "visible", timeout: WORK }); // new input hid the last one
    const probs = await page
      .locator("#fused .bar")
      .evaluateAll((rows) => rows.map((r) => Number(r.dataset.probability)));
    probs.forEach((p, i) => {
      assert.ok(Math.abs(p - pair.fused[i]) <= TOLERANCE, `${pair.guid}: ${probs} against ${pair.fused}`);
    });
  }
}

test("served with COOP/COEP, the CPU answers on the threaded module, the golden probabilities within 1e-4", { timeout: TEST }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${isolated.url}/index.html?backend=cpu&threads=2`);
  const on = await where(page);
  assert.deepEqual([on.isolated, on.threads, on.badge], [true, 2, "CPU (wasm, 2 threads)"], JSON.stringify(on));
  await matchesGolden(page);
  assert.match(await page.locator("#timing").textContent(), /on the CPU \(wasm, 2 threads\)/);
  // ?threads=1 keeps the single-threaded module, isolated or not.
  await page.goto(`${isolated.url}/index.html?backend=cpu&threads=1`);
  const one = await where(page);
  assert.deepEqual([one.isolated, one.threads, one.badge], [true, 1, "CPU (wasm)"], JSON.stringify(one));
  assert.deepEqual(errors, []);
  await context.close();
});

test("from a plain static host: one thread at first, then isolated by the service worker and on threads", { timeout: TEST }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${plain.url}/index.html?backend=cpu&threads=2`);
  const first = await where(page);
  assert.deepEqual([first.isolated, first.threads, first.badge], [false, 1, "CPU (wasm)"], JSON.stringify(first));
  assert.match(first.why, /not cross-origin isolated/);
  await matchesGolden(page);
  // The service worker controls the page once it has installed; the next visit is isolated.
  await page.evaluate(async () => {
    await navigator.serviceWorker.ready;
  });
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: WORK });
  await page.reload();
  const next = await where(page);
  assert.deepEqual([next.isolated, next.threads, next.badge], [true, 2, "CPU (wasm, 2 threads)"], JSON.stringify(next));
  await matchesGolden(page);
  assert.deepEqual(errors, []);
  await context.close();
});
