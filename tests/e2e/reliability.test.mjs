// Reliability of the page over time, in headless Chromium: the wasm memory a huge picture
// costs (the bound docs/testing.md states), and a soak: hundreds of classifications in a row with
// model and backend switches, double clicks, input changed mid-classification and a model
// switched during one; no error, no stale answer, no growth of wasm memory once warm.
// SOAK_PAIRS sets the soak's length (default 300).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { WORK, browserSuite, chooseMade, hostWorkers, hugeJpeg, root, selectBackend } from "../../scripts/harness.mjs";

const DATA = path.join(root, "tests/fixtures/mini/data");
const SOAK_PAIRS = Number(process.env.SOAK_PAIRS ?? 300);
const MB = 2 ** 20;
const suite = browserSuite({ before, after });

// The fixture pairs: picture bytes and caption.
const pairs = readdirSync(DATA)
  .filter((f) => f.endsWith(".jpg"))
  .map((f) => ({
    name: f,
    image: readFileSync(path.join(DATA, f)),
    caption: readFileSync(path.join(DATA, f.replace(".jpg", ".txt")), "latin1").trim() || "no words",
  }));

const open = suite.open;

// Choose the pair's picture, wait until the page has checked and previewed it, type its caption.
async function give(page, pair) {
  const shown = await page.evaluate(() => document.querySelector("#preview").src);
  await page.setInputFiles("#file", { name: pair.name, mimeType: "image/jpeg", buffer: pair.image });
  await previewed(page, shown);
  await page.fill("#caption", pair.caption);
}

const previewed = (page, was) =>
  page.waitForFunction((was) => { const p = document.querySelector("#preview"); return !p.hidden && p.src && p.src !== was; }, was, { timeout: WORK });

// The answer on the page once it is shown: label, fused probabilities, model, wasm memory.
async function answer(page) {
  await page.locator("#result").waitFor({ state: "visible", timeout: WORK });
  return page.evaluate(() => ({
    label: document.querySelector("#label").textContent.trim(),
    fused: [...document.querySelectorAll("#fused .bar")].map((r) => Number(r.dataset.probability)),
    model: document.querySelector("#result").dataset.model,
    wasmBytes: Number(document.querySelector("#result").dataset.wasmBytes),
    error: document.querySelector("#error").hidden ? null : document.querySelector("#error").textContent,
  }));
}

async function classify(page, pair) {
  await give(page, pair);
  await page.click("#classify");
  return answer(page);
}

// `classify`, then wait for its explanation to be drawn (it runs after the answer, and
// allocates too).
async function classifyExplained(page, pair) {
  const was = await page.evaluate(() => document.body.dataset.explained ?? "");
  await give(page, pair);
  await page.click("#classify");
  const shown = await answer(page);
  await page.waitForFunction((w) => (document.body.dataset.explained ?? "") !== w, was, { timeout: WORK });
  return shown;
}

test("a huge picture costs the page's wasm memory at most 100 MB; a file over the size limit is refused unread", { timeout: 2 * WORK }, async () => {
  const { context, page, errors } = await open("backend=cpu");
  const small = pairs[0];
  await classifyExplained(page, small);
  const before = (await classifyExplained(page, small)).wasmBytes;

  const makers = {
    "8000x8000 JPEG": hugeJpeg,
    "3500x2900 PNG": async () => {
      const canvas = new OffscreenCanvas(3500, 2900);
      const g = canvas.getContext("2d");
      g.fillStyle = "#8a4";
      g.fillRect(0, 0, 3500, 2900);
      g.fillStyle = "rgba(20, 40, 200, 0.5)";
      g.fillRect(500, 500, 2000, 1500);
      const blob = await canvas.convertToBlob({ type: "image/png" });
      return new File([blob], "large.png", { type: "image/png" });
    },
  };
  for (const [what, make] of Object.entries(makers)) {
    const explained = await page.evaluate(() => document.body.dataset.explained ?? "");
    const shown = await page.evaluate(() => document.querySelector("#preview").src);
    await chooseMade(page, make);
    await previewed(page, shown);
    await page.fill("#caption", "a big picture of a lovely day");
    await page.click("#classify");
    const big = await answer(page);
    assert.equal(big.error, null, what);
    await page.waitForFunction((was) => (document.body.dataset.explained ?? "") !== was, explained, { timeout: WORK });
  }
  const after = (await classify(page, small)).wasmBytes;
  console.log(`wasm memory: ${(before / MB).toFixed(0)} MiB with the model, ${(after / MB).toFixed(0)} MiB after the huge pictures`);
  assert.ok(after - before <= 100 * MB, `grew by ${((after - before) / MB).toFixed(0)} MiB`);

  // Over the file size limit: said at once, nothing read, and the page goes on.
  await chooseMade(page, () => new File([new Uint8Array(33 * 2 ** 20)], "giant.jpg", { type: "image/jpeg" }));
  await page.waitForFunction(() => /giant\.jpg/.test(document.querySelector("#error").textContent));
  assert.match(await page.locator("#error").textContent(), /33\.0 MB; pictures up to 32\.0 MB are read/);
  assert.equal((await classify(page, small)).error, null);
  assert.deepEqual(errors, []);
  await context.close();
});

// Whether this browser has a WebGPU adapter at all (a software one included).
const hasAdapter = (page) => page.evaluate(async () => Boolean(await navigator.gpu?.requestAdapter()));

async function switchTo(page, { model, backend }) {
  const loaded = await page.evaluate(() => document.body.dataset.readyAt);
  if (model) await page.selectOption("#model", model);
  if (backend) await selectBackend(page, backend);
  await page.waitForFunction((was) => document.body.dataset.readyAt !== was, loaded, { timeout: WORK });
}

test(`soak: ${SOAK_PAIRS} classifications with model and backend switches, double clicks and input changed mid-answer`, { timeout: 6 * WORK }, async () => {
  const { context, page, errors } = await open("backend=cpu");
  const gpu = await hasAdapter(page);
  const models = ["model", "model-small"];
  const reference = new Map(); // `${model}/${pair}` → fused probabilities, on the CPU
  let count = 0;
  let backend = "cpu";
  const memory = [];
  // Every answer shown must be the one for the input given last, by the model chosen last.
  const check = (shown, pair, model, why) => {
    count++;
    memory.push(shown.wasmBytes);
    assert.equal(shown.error, null, `${why}: ${shown.error}`);
    assert.equal(shown.model, model, why);
    const want = reference.get(`${model}/${pair.name}`);
    if (!want) return reference.set(`${model}/${pair.name}`, shown.fused);
    const off = Math.max(...want.map((p, i) => Math.abs(p - shown.fused[i])));
    assert.ok(off <= (backend === "cpu" ? 1e-6 : 2e-3), `${why}: ${pair.name} off by ${off} on ${backend}`);
  };
  // The references: each pair once on each model, one at a time. The first one waits for its
  // explanation too (the page explains each answer, and an explanation's batches of occluded
  // inputs are what a worker's memory peaks at): being warm includes having explained once,
  // whether or not an explanation gets to run during the soak before the next question.
  for (const model of models) {
    await switchTo(page, { model });
    check(await classifyExplained(page, pairs[0]), pairs[0], model, "reference");
    for (const pair of pairs.slice(1)) check(await classify(page, pair), pair, model, "reference");
  }
  // Distinct answers, so that one shown for the wrong pair would be caught.
  const distinct = new Set([...reference.values()].map((f) => f.map((p) => p.toFixed(5)).join()));
  assert.ok(distinct.size >= reference.size - 2, `${distinct.size} distinct answers of ${reference.size}`);
  let warm = null;
  for (let step = 0; count < SOAK_PAIRS; step++) {
    const model = models[Math.floor(step / 40) % 2];
    if (step % 40 === 0) await switchTo(page, { model });
    // Twice a run, a stretch on WebGPU (where the browser has an adapter), then back.
    const onGpu = gpu && step % 120 >= 100 && step % 120 < 105;
    if (onGpu !== (backend === "webgpu")) {
      backend = onGpu ? "webgpu" : "cpu";
      await switchTo(page, { backend });
    }
    const pair = pairs[step % pairs.length];
    const next = pairs[(step + 1) % pairs.length];
    if (step % 10 === 3) {
      await give(page, pair);
      await page.dblclick("#classify");
      check(await answer(page), pair, model, "double click");
    } else if (step % 10 === 6) {
      // A new picture and caption while the answer for the old ones is on its way.
      await give(page, pair);
      await page.click("#classify");
      await give(page, next);
      await page.click("#classify");
      check(await answer(page), next, model, "input changed mid-answer");
    } else if (step === 150) {
      // The model switched while a classification runs: the answer, if it shows, is the old
      // model's; once the new one is loaded, it answers.
      const other = models.find((m) => m !== model);
      await give(page, pair);
      await page.click("#classify");
      await switchTo(page, { model: other });
      check(await classify(page, pair), pair, other, "after a switch mid-answer");
      await switchTo(page, { model });
    } else {
      check(await classify(page, pair), pair, model, "one after another");
    }
    // Warm: both models and both backends have been loaded once.
    if (warm === null && step === 130) warm = Math.max(...memory);
  }
  warm ??= Math.max(...memory.slice(0, Math.ceil(memory.length / 2)));
  const last = Math.max(...memory.slice(-50));
  console.log(`soak: ${count} answers; wasm memory ${(memory[0] / MB).toFixed(0)} MiB at first, ${(warm / MB).toFixed(0)} MiB warm, ${(last / MB).toFixed(0)} MiB at most over the last 50`);
  assert.ok(last <= warm, `wasm memory grew from ${warm} to ${last} bytes once warm`);
  // Every replaced worker has been ended (each model and backend loaded in one of its own), and
  // its thread pool with it: what is left is one host and at most one pool.
  const pool = await page.evaluate(() => Math.min(navigator.hardwareConcurrency || 1, 8));
  const left = () => [hostWorkers(page).length, page.workers().length - hostWorkers(page).length];
  const deadline = Date.now() + WORK;
  while ((left()[0] > 1 || left()[1] > pool) && Date.now() < deadline) await page.waitForTimeout(100);
  assert.equal(left()[0], 1, "workers left running");
  assert.ok(left()[1] <= pool, `${left()[1]} pool workers left running, ${pool} at most`);
  assert.deepEqual(errors, []);
  await context.close();
});
