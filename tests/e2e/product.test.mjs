// The page as a product, in headless Chromium: each rough edge a new user met has a test here
// (it failed on the page before they were fixed), and so do explanations, the confusion matrix
// as text, dark mode, reduced motion and the screenshots (written to tests/e2e/screenshots/).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { TEST, WORK, browserSuite, hostWorkers, root } from "../../scripts/harness.mjs";

const fixture = (name) => path.join(root, "tests/fixtures/mini/data", name);
const SHOTS = path.join(root, "tests/e2e/screenshots");
const suite = browserSuite({ before, after });
before(() => mkdirSync(SHOTS, { recursive: true }));

const open = suite.open;

async function classified(page) {
  await page.click("#classify");
  await page.locator("#result").waitFor({ state: "visible", timeout: WORK });
  const label = (await page.locator("#label").textContent()).trim();
  const fused = await page.locator("#fused .bar").evaluateAll((rows) => rows.map((r) => Number(r.dataset.probability)));
  return { label, fused };
}

const LABELS = ["negative", "neutral", "positive"];

test("Clear empties the file input: the same picture can be chosen again", { timeout: TEST }, async () => {
  const { context, page, errors } = await open();
  await page.setInputFiles("#file", fixture("4066.jpg"));
  await page.locator("#preview").waitFor({ state: "visible" });
  await page.click("#clear");
  assert.equal(await page.locator("#file").inputValue(), "");
  assert.ok(await page.locator("#preview").isHidden());
  await page.setInputFiles("#file", fixture("4066.jpg"));
  await page.locator("#preview").waitFor({ state: "visible" });
  assert.ok(await page.locator("#classify").isEnabled());
  assert.deepEqual(errors, []);
  await context.close();
});

test("new input hides the previous answer", { timeout: TEST }, async () => {
  const { context, page, errors } = await open();
  await page.setInputFiles("#file", fixture("4066.jpg"));
  await page.fill("#caption", "What a lovely day");
  await classified(page);
  await page.type("#caption", "!");
  assert.ok(await page.locator("#result").isHidden(), "a changed caption leaves the old answer up");
  await classified(page);
  await page.setInputFiles("#file", fixture("2626.jpg"));
  assert.ok(await page.locator("#result").isHidden(), "a new picture leaves the old answer up");
  assert.deepEqual(errors, []);
  await context.close();
});

test("a failed model switch keeps the menu on the model that answers; a good one is kept in the address and storage", { timeout: TEST }, async () => {
  const { context, page, errors } = await open();
  assert.equal(await page.locator("#model").inputValue(), "model");
  await context.setOffline(true);
  await page.selectOption("#model", "model-small");
  await page.locator("#error").waitFor({ state: "visible", timeout: WORK });
  // Said as what it is: offline, and which models this browser holds for offline use.
  const title = JSON.parse(readFileSync(path.join(root, "www/models.json"), "utf8")).models[0].title;
  const said = await page.locator("#error").textContent();
  assert.match(said, /could not be loaded: the page is offline, and this browser has not downloaded it \(available offline: /);
  assert.ok(said.includes(`available offline: ${title})`), said);
  assert.doesNotMatch(said, /Failed to fetch/);
  assert.equal(await page.locator("#model").inputValue(), "model");
  assert.doesNotMatch(page.url(), /model=/);
  await context.setOffline(false);
  await page.selectOption("#model", "model-small");
  await page.waitForSelector('body[data-model="model-small"]', { timeout: WORK });
  assert.match(page.url(), /model=model-small/);
  // A visit without ?model= opens the model chosen last.
  await page.goto(`${suite.server.url}/index.html?backend=cpu`);
  await page.waitForSelector("body[data-ready]", { timeout: WORK });
  assert.equal(await page.locator("#model").inputValue(), "model-small");
  assert.deepEqual(errors, []);
  await context.close();
});

test("a worker that stops is replaced: the page says so, loads the model again and classifies", { timeout: TEST }, async () => {
  const { context, page, errors } = await open("backend=cpu&model=small");
  const loaded = await page.evaluate(() => document.body.dataset.readyAt);
  // An uncaught error in the serving worker (as a crash in its module would raise).
  const [worker] = hostWorkers(page);
  await worker.evaluate(() => setTimeout(() => {
    throw new Error("simulated crash");
  }));
  await page.locator("#error").waitFor({ state: "visible", timeout: WORK });
  assert.match(await page.locator("#error").textContent(), /worker stopped .*simulated crash.*loading the model again/);
  await page.waitForFunction((was) => document.body.dataset.readyAt !== was, loaded, { timeout: WORK });
  // The crashed worker is ended (with its thread pool, which takes a moment).
  const deadline = Date.now() + WORK;
  while (hostWorkers(page).length > 1 && Date.now() < deadline) await page.waitForTimeout(100);
  assert.equal(hostWorkers(page).length, 1);
  await page.setInputFiles("#file", fixture("4066.jpg"));
  await page.fill("#caption", "back on its feet");
  const { fused } = await classified(page);
  assert.ok(Math.abs(fused.reduce((a, b) => a + b, 0) - 1) < 1e-3);
  assert.deepEqual(errors, []);
  await context.close();
});

test("a chosen file is checked at once: non-pictures and damaged pictures are refused in plain words; WebP and GIF work", { timeout: TEST }, async () => {
  const { context, page, errors } = await open();
  await page.setInputFiles("#file", path.join(root, "README.md"));
  await page.locator("#error").waitFor({ state: "visible" });
  assert.match(await page.locator("#error").textContent(), /README\.md: this file cannot be used: not a picture.*JPEG, PNG, WebP or GIF/);
  assert.ok(await page.locator("#preview").isHidden(), "a non-picture is previewed");
  assert.ok(await page.locator("#classify").isDisabled(), "Classify is enabled for a non-picture");

  const jpeg = readFileSync(fixture("4066.jpg"));
  const cut = { name: "cut.jpg", mimeType: "image/jpeg", buffer: jpeg.subarray(0, Math.floor(jpeg.length / 3)) };
  await page.setInputFiles("#file", cut);
  await page.waitForFunction(() => /cut\.jpg/.test(document.querySelector("#error").textContent));
  assert.match(await page.locator("#error").textContent(), /cut short: it stops before its end-of-image marker/);
  assert.ok(await page.locator("#classify").isDisabled());

  // A WebP (Chromium's canvas encodes one) and a 1 x 1 GIF are read and classified.
  const webp = await page.evaluate(async () => {
    const canvas = new OffscreenCanvas(64, 48);
    const g = canvas.getContext("2d");
    g.fillStyle = "#3a7";
    g.fillRect(0, 0, 64, 48);
    const blob = await canvas.convertToBlob({ type: "image/webp" });
    return [...new Uint8Array(await blob.arrayBuffer())];
  });
  const gif = Buffer.from("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==", "base64");
  for (const file of [
    { name: "green.webp", mimeType: "image/webp", buffer: Buffer.from(webp) },
    { name: "dot.gif", mimeType: "image/gif", buffer: gif },
  ]) {
    await page.setInputFiles("#file", file);
    await page.locator("#preview").waitFor({ state: "visible" });
    assert.ok(await page.locator("#error").isHidden(), await page.locator("#error").textContent());
    const { fused } = await classified(page);
    assert.equal(fused.length, 3, file.name);
  }
  assert.deepEqual(errors, []);
  await context.close();
});

test("the caption's size is counted against the model's limit as it is typed", { timeout: TEST }, async () => {
  const { context, page, errors } = await open();
  await page.fill("#caption", "héllo");
  assert.equal(await page.locator("#caption-count").textContent(), "6 / 4,096 bytes");
  await page.fill("#caption", "x".repeat(4100));
  assert.match(await page.locator("#caption-count").textContent(), /4,100 \/ 4,096 bytes — too long by 4/);
  assert.ok(await page.locator("#caption-count.over").isVisible());
  assert.ok(await page.locator("#classify").isDisabled());
  await page.fill("#caption", "x".repeat(4096));
  assert.ok(await page.locator("#classify").isEnabled());
  assert.deepEqual(errors, []);
  await context.close();
});

test("the page says what it does, which model answered, the samples' labels, and the confusion matrix as text", { timeout: TEST }, async () => {
  const { context, page, errors } = await open();
  assert.match(await page.locator("#intro").textContent(), /negative, neutral or positive/);
  const favicon = await page.locator('link[rel="icon"]').getAttribute("href");
  assert.equal((await page.request.get(`${suite.server.url}/${favicon}`)).status(), 200);
  const truths = await page.locator("#sample-list .truth").allTextContents();
  assert.ok(truths.length >= 4 && truths.every((t) => /^labelled (negative|neutral|positive)$/.test(t)), String(truths));
  await page.locator("#sample-list button").first().click();
  await page.locator("#result").waitFor({ state: "visible", timeout: WORK });
  const title = JSON.parse(readFileSync(path.join(root, "www/models.json"), "utf8")).models[0].title;
  assert.match(await page.locator("#timing").textContent(), new RegExp(`Answered by ${title.replace(/[+]/g, "\\+")} in [0-9.]+ ms`));
  const counts = await page.locator("#confusion td").evaluateAll((cells) => cells.map((c) => Number(c.textContent)));
  const metrics = JSON.parse(readFileSync(path.join(root, "www/model/metrics.json"), "utf8")).validation;
  assert.deepEqual(counts, metrics.confusion.flat());
  assert.deepEqual(errors, []);
  await context.close();
});

test("explanations: hiding the top word moves the answer as shown; the heat map has the picture's shape", { timeout: TEST }, async () => {
  const { context, page, errors } = await open();
  await page.setInputFiles("#file", fixture("2626.jpg"));
  const caption = "Nice day chilling in the park yesterday relieved my mood for a short while. #friends #summer";
  await page.fill("#caption", caption);
  const first = await classified(page);
  await page.waitForSelector("body[data-explained]", { timeout: WORK });
  const words = await page.locator("#why-words .word").evaluateAll((spans) =>
    spans.map((s) => ({ word: s.textContent, effect: Number(s.dataset.effect) })),
  );
  assert.equal(words.map((w) => w.word).join(" "), caption);
  const top = words.reduce((a, b) => (b.effect > a.effect ? b : a));
  assert.ok(top.effect > 0, JSON.stringify(words));
  const k = LABELS.indexOf(first.label);
  await page.fill("#caption", words.filter((w) => w !== top).map((w) => w.word).join(" "));
  const hidden = await classified(page);
  assert.ok(hidden.fused[k] < first.fused[k], `${top.word}: ${first.fused[k]} → ${hidden.fused[k]}`);
  assert.ok(Math.abs(first.fused[k] - hidden.fused[k] - top.effect) < 1e-3, `the drop is ${first.fused[k] - hidden.fused[k]}, shown ${top.effect}`);

  await page.waitForSelector("#why-picture:not([hidden])", { timeout: WORK });
  const natural = await page.evaluate(async (src) => {
    const img = new Image();
    img.src = src;
    await img.decode();
    return img.naturalWidth / img.naturalHeight;
  }, "tests/fixtures/mini/data/2626.jpg");
  const box = await page.locator("#heatmap").boundingBox();
  assert.ok(Math.abs(box.width / box.height - natural) < 0.02, `${box.width}x${box.height} vs ${natural}`);
  assert.equal(await page.locator("#heatmap-cells > div").count(), 16);
  assert.deepEqual(errors, []);
  await context.close();
});

test("dark mode and reduced motion follow the system; screenshots at desktop and phone width", { timeout: TEST }, async () => {
  for (const [name, viewport, scheme] of [
    ["desktop", { width: 1280, height: 800 }, "light"],
    ["phone", { width: 390, height: 844 }, "light"],
    ["phone-dark", { width: 390, height: 844 }, "dark"],
  ]) {
    const { context, page, errors } = await open("backend=cpu", { viewport, colorScheme: scheme, reducedMotion: "reduce" });
    await page.setInputFiles("#file", fixture("2626.jpg"));
    await page.fill("#caption", "Nice day chilling in the park yesterday #friends");
    await classified(page);
    await page.waitForSelector("#why-picture:not([hidden])", { timeout: WORK });
    const look = await page.evaluate(() => ({
      background: getComputedStyle(document.documentElement).backgroundColor,
      transition: getComputedStyle(document.querySelector("#fused .fill")).transitionDuration,
      confusionFont: parseFloat(getComputedStyle(document.querySelector("#confusion td")).fontSize),
      overflow: document.documentElement.scrollWidth > window.innerWidth,
    }));
    const dark = look.background === "rgb(18, 21, 28)";
    assert.equal(dark, scheme === "dark", look.background);
    assert.equal(look.transition, "0s");
    assert.ok(look.confusionFont >= 14, `the confusion matrix is ${look.confusionFont} px`);
    assert.equal(look.overflow, false, `${name}: the page is wider than the window`);
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
    assert.deepEqual(errors, []);
    await context.close();
  }
});
