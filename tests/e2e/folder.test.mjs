// Folder mode and offline use, in headless Chromium: the fixture folder in the lab's layout
// gives the same `guid,tag` file as the native predictor (tests/golden/mini-predictions.txt,
// checked against `predict --list` by tests/cli.rs), with accuracy and a confusion matrix for
// its labelled pairs; and after one visit the page opens and classifies with the network off.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { TEST, WORK, browserSuite, root } from "../../scripts/harness.mjs";

const mini = path.join(root, "tests/fixtures/mini");
const suite = browserSuite({ before, after });

test("a folder in the lab's layout: every pair classified, labelled ones scored, guid,tag as the native predictor writes it", { timeout: TEST }, async () => {
  const { context, page, errors } = await suite.open("backend=cpu", { acceptDownloads: true });
  await page.setInputFiles("#folder", mini);
  const lines = (name) => readFileSync(path.join(mini, name), "utf8").trim().split(/\r?\n/).slice(1);
  const labelled = lines("train.txt").length;
  const total = labelled + lines("test_without_label.txt").length;
  await page.waitForFunction((n) => document.querySelector("#folder-count").textContent === `${n} of ${n} pairs`, total, { timeout: WORK });
  await page.locator("#folder-stop").waitFor({ state: "hidden" });
  assert.equal(await page.locator("#folder-table tbody tr").count(), total);
  assert.match(await page.locator("#folder-summary").textContent(), new RegExp(`accuracy [0-9.]+ % on the ${labelled} labelled ones`));
  const cells = await page.locator("#folder-confusion td").evaluateAll((c) => c.map((x) => Number(x.textContent)));
  assert.equal(cells.reduce((a, b) => a + b, 0), labelled);

  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#folder-download")]);
  const written = readFileSync(await download.path(), "utf8");
  assert.equal(written, readFileSync(path.join(root, "tests/golden/mini-predictions.txt"), "utf8"));

  // The table sorts and filters.
  await page.click('#folder-table th button[data-sort="guid"]');
  const guids = await page.locator("#folder-table tbody tr").evaluateAll((r) => r.map((x) => x.dataset.guid));
  assert.deepEqual(guids, [...guids].sort((a, b) => b.localeCompare(a, "en", { numeric: true })));
  await page.selectOption("#folder-filter", "positive");
  const shown = await page.locator("#folder-table tbody tr").evaluateAll((r) => r.map((x) => x.dataset.label));
  assert.ok(shown.every((l) => l === "positive"), String(shown));
  assert.deepEqual(errors, []);
  await context.close();
});

test("after one visit the page opens and classifies offline, with either model and the samples", { timeout: TEST }, async () => {
  const { context, page, errors } = await suite.open();
  await page.evaluate(async () => {
    await navigator.serviceWorker.ready;
  });
  // Both models used once online (each loads in a worker of its own), the default one last.
  for (const model of ["model-small", "model"]) {
    await page.selectOption("#model", model);
    await page.waitForSelector(`body[data-model="${model}"]`, { timeout: WORK });
  }
  const threads = await page.locator("body").getAttribute("data-threads");
  await context.setOffline(true);
  await page.reload();
  await page.waitForSelector("body[data-ready]", { timeout: WORK });
  assert.equal(await page.locator("body").getAttribute("data-from-cache"), "true");
  // On as many threads as online: the threaded module and its pool's script were cached too.
  assert.equal(await page.locator("body").getAttribute("data-threads"), threads, await page.locator("#backend").getAttribute("title"));
  await page.setInputFiles("#file", path.join(mini, "data/4066.jpg"));
  await page.fill("#caption", "offline and still working");
  await page.click("#classify");
  await page.locator("#result").waitFor({ state: "visible", timeout: WORK });
  const manifest = await page.evaluate(async () => (await fetch("www/app.webmanifest")).json());
  assert.equal(manifest.display, "standalone");
  // Offline, a new worker still gets its script and module, and the small model its cached files.
  await page.selectOption("#model", "model-small");
  await page.waitForSelector('body[data-model="model-small"]', { timeout: WORK });
  await page.locator("#sample-list button").first().click();
  await page.locator("#result").waitFor({ state: "visible", timeout: WORK });
  assert.equal(await page.locator("#error").isHidden(), true, await page.locator("#error").textContent());
  assert.equal(await page.locator("#result").getAttribute("data-model"), "model-small");
  // Its confusion matrix too (each model's metrics.json is cached when the page installs).
  await page.waitForSelector('#confusion[data-model="model-small"] table', { timeout: WORK });
  assert.deepEqual(errors, []);
  await context.close();
});
