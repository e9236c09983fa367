// A page a user can trust, in headless Chromium: every answer says what it used (a picture
// still being checked is waited for; a caption the model cannot read, or reads only in part,
// is said so on the answer), every refusal is kept (a cut-short JPEG; a stopped folder run's
// download says it is partial), every control is reachable by keyboard and keeps its focus,
// the answer scrolls into view on a phone, WebGPU without an adapter is said in words, and
// axe-core finds no serious accessibility violation in either colour scheme. Each test here
// failed on the page before its fix.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { CPU_BADGE, TEST, WORK, browserSuite, chooseMade, chromiumArgs, hugeJpeg, launchChromium, patient, root, selectBackend } from "../../scripts/harness.mjs";

const DATA = path.join(root, "tests/fixtures/mini/data");
const fixture = (name) => path.join(DATA, name);
const jpegs = readdirSync(DATA).filter((f) => f.endsWith(".jpg")).sort();
const suite = browserSuite({ before, after });
const open = suite.open;

async function answered(page) {
  await page.locator("#result").waitFor({ state: "visible", timeout: WORK });
  return page.evaluate(() => ({
    label: document.querySelector("#label").textContent.trim(),
    used: document.querySelector("#used")?.textContent ?? null,
    notes: [...document.querySelectorAll("#notes li")].map((li) => ({ kind: li.dataset.kind, text: li.textContent })),
    fused: [...document.querySelectorAll("#fused .bar")].map((r) => Number(r.dataset.probability)),
    image: [...document.querySelectorAll("#image .bar")].map((r) => Number(r.dataset.probability)),
    text: [...document.querySelectorAll("#text .bar")].map((r) => Number(r.dataset.probability)),
    textNone: document.querySelector("#text .none")?.textContent ?? null,
  }));
}

const close = (a, b) => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) < 1e-5);

test("Classify pressed while a new picture is checked answers about that picture", { timeout: TEST }, async () => {
  const { context, page, errors } = await open();
  const caption = "What a day at the beach with everyone";
  await page.setInputFiles("#file", fixture("4066.jpg"));
  await page.fill("#caption", caption);
  await page.click("#classify");
  await answered(page);
  // Another picture, and Classify at once: the answer is about the new picture and the caption.
  await page.setInputFiles("#file", fixture("2626.jpg"));
  await page.click("#classify");
  const fast = await answered(page);
  assert.equal(fast.image.length, 3, "the picture was left out");
  assert.equal(fast.used, "From the picture and the caption.");
  // The same pair classified at leisure gives the same answer.
  await page.fill("#caption", `${caption} `);
  await page.fill("#caption", caption);
  await page.click("#classify");
  const slow = await answered(page);
  assert.ok(close(fast.fused, slow.fused), `${fast.fused} vs ${slow.fused}`);

  // From a fresh page: a caption, an 8000 x 8000 JPEG, Classify at once.
  const fresh = await open();
  await fresh.page.fill("#caption", caption);
  await chooseMade(fresh.page, hugeJpeg);
  await fresh.page.click("#classify");
  const huge = await answered(fresh.page);
  assert.equal(huge.image.length, 3, "the picture was left out");
  assert.equal(huge.used, "From the picture and the caption.");
  assert.deepEqual([...errors, ...fresh.errors], []);
  await fresh.context.close();
  await context.close();
});

test("a cut-short JPEG is refused in the page, and read from its caption with a note in folder mode", { timeout: TEST }, async () => {
  const { context, page, errors } = await open();
  await page.setInputFiles("#file", fixture("4066.jpg"));
  await page.locator("#preview").waitFor({ state: "visible" });
  const good = await page.locator("#preview").getAttribute("src");
  // The first third of every fixture JPEG (no end-of-image marker; some decode in grey).
  for (const name of jpegs) {
    const jpeg = readFileSync(fixture(name));
    const cut = { name: `cut-${name}`, mimeType: "image/jpeg", buffer: jpeg.subarray(0, Math.floor(jpeg.length / 3)) };
    await page.setInputFiles("#file", cut);
    await page.waitForFunction((n) => document.querySelector("#error").textContent.includes(n), cut.name, { timeout: WORK });
    assert.match(await page.locator("#error").textContent(), /cut short: it stops before its end-of-image marker.*The picture chosen before it is kept/);
    assert.equal(await page.locator("#preview").getAttribute("src"), good, `${name}: the good picture was dropped`);
  }
  // Folder mode: the same cut picture beside its caption, and a whole pair.
  const jpeg = readFileSync(fixture("2626.jpg"));
  await page.setInputFiles("#files", [
    { name: "1.jpg", mimeType: "image/jpeg", buffer: jpeg.subarray(0, Math.floor(jpeg.length / 3)) },
    { name: "1.txt", mimeType: "text/plain", buffer: Buffer.from("a lovely evening in the park") },
    { name: "2.jpg", mimeType: "image/jpeg", buffer: jpeg },
    { name: "2.txt", mimeType: "text/plain", buffer: Buffer.from("a lovely evening in the park") },
    { name: "3.txt", mimeType: "text/plain", buffer: Buffer.from("no picture with this one") },
  ]);
  await page.waitForFunction(() => document.querySelector("#folder-count").textContent === "3 of 3 pairs", null, { timeout: WORK });
  const row = (guid) => page.locator(`#folder-table tr[data-guid="${guid}"] td:last-child`).textContent();
  assert.match(await row("1"), /picture unreadable \(.*end-of-image.*\): the caption alone/);
  assert.doesNotMatch(await row("2"), /alone/);
  assert.match(await row("3"), /no picture: the caption alone/);
  assert.match(await page.locator("#folder-summary").textContent(), /^3 pairs classified; 2 pairs with a note/);
  assert.deepEqual(errors, []);
  await context.close();
});

test("a stopped folder run's counts agree, and its download says it is partial", { timeout: TEST }, async () => {
  const { context, page, errors } = await open("backend=cpu&model=small", { acceptDownloads: true });
  // 120 pairs (the fixture's pictures and captions under new names), listed in a test list.
  const files = [];
  const guids = [];
  for (let i = 0; i < 120; i++) {
    const source = jpegs[i % jpegs.length];
    guids.push(String(1000 + i));
    files.push({ name: `data/${1000 + i}.jpg`, mimeType: "image/jpeg", buffer: readFileSync(fixture(source)) });
    files.push({ name: `data/${1000 + i}.txt`, mimeType: "text/plain", buffer: readFileSync(fixture(source.replace(".jpg", ".txt"))) });
  }
  files.push({ name: "test_without_label.txt", mimeType: "text/plain", buffer: Buffer.from(`guid,tag\n${guids.map((g) => `${g},null`).join("\n")}\n`) });
  await page.setInputFiles("#files", files);
  await page.waitForFunction(() => /^([3-9]|\d\d+) of 120 pairs/.test(document.querySelector("#folder-count").textContent), null, { timeout: WORK });
  // Mid-run there is nothing to download yet.
  assert.ok(await page.locator("#folder-download").isHidden(), "Download offered mid-run");
  await page.click("#folder-stop");
  const count = await page.locator("#folder-count").textContent();
  const done = Number(count.match(/^(\d+) of 120 pairs$/)?.[1]);
  assert.ok(done > 0 && done < 120, count);
  await page.waitForTimeout(500); // a pair that was on its way must not change the counts
  assert.equal(await page.locator("#folder-count").textContent(), count);
  assert.match(await page.locator("#folder-summary").textContent(), new RegExp(`^${done} of 120 pairs classified \\(stopped\\)`));
  assert.equal(await page.locator("#folder-table tbody tr").count(), done);
  assert.match(await page.locator("#folder-download").textContent(), /partial/);
  assert.match(await page.locator("#folder-partial").textContent(), new RegExp(`lack ${120 - done} guids of the 120 listed in test_without_label\\.txt`));
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#folder-download")]);
  assert.equal(download.suggestedFilename(), "predictions-partial.txt");
  const lines = readFileSync(await download.path(), "utf8").trim().split("\n");
  assert.equal(lines.length, done + 1);
  assert.deepEqual(errors, []);
  await context.close();
});

test("every control is reachable by keyboard, and Classify keeps its focus", { timeout: TEST }, async () => {
  const { context, page, errors } = await open();
  await page.focus("#clear");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.id), "choose-folder");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.id), "choose-files");
  // Enter on the button opens the file chooser: the hidden input is clicked (the chooser
  // itself is kept shut, so that no race with Playwright's interception decides the test).
  await page.evaluate(() => {
    window.opened = [];
    for (const id of ["folder", "files"]) {
      document.getElementById(id).addEventListener("click", (e) => {
        window.opened.push(id);
        e.preventDefault();
      });
    }
  });
  await page.keyboard.press("Enter");
  await page.keyboard.press("Shift+Tab");
  await page.keyboard.press("Space");
  assert.deepEqual(await page.evaluate(() => window.opened), ["files", "folder"]);
  await page.setInputFiles("#files", [fixture("4066.jpg"), fixture("4066.txt")]);
  await page.waitForFunction(() => document.querySelector("#folder-count").textContent === "1 of 1 pair", null, { timeout: WORK });

  await page.setInputFiles("#file", fixture("2626.jpg"));
  await page.fill("#caption", "a quiet morning");
  for (const key of ["Enter", "Space"]) {
    await page.focus("#classify");
    const explained = await page.evaluate(() => document.body.dataset.explained ?? "");
    await page.keyboard.press(key);
    await answered(page);
    assert.equal(await page.evaluate(() => document.activeElement.id), "classify", `focus lost after ${key}`);
    await page.waitForFunction((was) => (document.body.dataset.explained ?? "") !== was, explained, { timeout: WORK });
    await page.fill("#caption", `a quiet morning ${key}`);
  }
  // Ctrl+Enter in the caption classifies too.
  await page.focus("#caption");
  await page.keyboard.press("Control+Enter");
  assert.equal((await answered(page)).used, "From the picture and the caption.");
  assert.deepEqual(errors, []);
  await context.close();
});

test("WebGPU without an adapter is said in words and the menu goes back; a software adapter asks first", { timeout: TEST }, async () => {
  // Chromium without --enable-unsafe-webgpu: navigator.gpu is there, but no adapter.
  const browser = patient(await launchChromium(chromiumArgs.filter((a) => a !== "--enable-unsafe-webgpu")));
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${suite.server.url}/index.html?backend=cpu`);
    await page.waitForSelector("body[data-ready]", { timeout: WORK });
    const loaded = await page.evaluate(() => document.body.dataset.readyAt);
    await page.selectOption("#backend-choice", "webgpu");
    await page.locator("#error").waitFor({ state: "visible" });
    const said = await page.locator("#error").textContent();
    assert.match(said, /no WebGPU adapter; still on the CPU/);
    assert.doesNotMatch(said, /WgpuDevice|could not be loaded/);
    assert.equal(await page.locator("#backend-choice").inputValue(), "cpu");
    assert.match((await page.locator("#backend").textContent()).trim(), CPU_BADGE);
    assert.equal(await page.evaluate(() => document.body.dataset.readyAt), loaded);
    await page.setInputFiles("#file", fixture("4066.jpg"));
    await page.click("#classify");
    assert.equal((await answered(page)).fused.length, 3);
    // A link asking for WebGPU opens on the CPU, and says why.
    await page.goto(`${suite.server.url}/index.html?backend=webgpu`);
    await page.waitForSelector("body[data-ready]", { timeout: WORK });
    assert.match(await page.locator("#error").textContent(), /no WebGPU adapter; loading on the CPU instead/);
    assert.match((await page.locator("#backend").textContent()).trim(), CPU_BADGE);
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await browser.close();
  }
  // This suite's Chromium has a software adapter (SwiftShader): choosing WebGPU asks first.
  const { context, page } = await open();
  const software = await page.evaluate(async () => (await navigator.gpu?.requestAdapter())?.info?.isFallbackAdapter ?? null);
  if (software) {
    const loaded = await page.evaluate(() => document.body.dataset.readyAt);
    await selectBackend(page, "webgpu", { confirm: false });
    assert.match(await page.locator("#gpu-warning-text").textContent(), /software fallback.*minutes/);
    assert.ok(await page.locator("#gpu-warning").isHidden());
    assert.equal(await page.locator("#backend-choice").inputValue(), "cpu");
    assert.equal(await page.evaluate(() => document.body.dataset.readyAt), loaded);
  } else {
    console.log(`this Chromium's WebGPU adapter is ${software === null ? "missing" : "hardware"}: the software warning is not exercised`);
  }
  await context.close();
});

test("on a phone the answer scrolls into view, after Classify and after a sample", { timeout: TEST }, async () => {
  const { context, page, errors } = await open("backend=cpu", { viewport: { width: 390, height: 844 }, reducedMotion: "reduce" });
  // The label and the fused bars below it are on screen.
  const inView = () =>
    page.waitForFunction(() => {
      const label = document.querySelector("#label").getBoundingClientRect();
      const fused = document.querySelector("#fused").getBoundingClientRect();
      return label.height > 0 && label.top >= 0 && fused.bottom <= innerHeight;
    }, null, { timeout: 10_000 });
  await page.setInputFiles("#file", fixture("4066.jpg"));
  await page.fill("#caption", "Such a happy sunny day with friends #love");
  await page.click("#classify");
  await answered(page);
  await inView();
  await page.locator("#sample-list button").first().scrollIntoViewIfNeeded();
  const explained = await page.evaluate(() => document.body.dataset.explained);
  await page.locator("#sample-list button").first().click();
  await page.waitForFunction((was) => document.body.dataset.explained !== was, explained, { timeout: WORK });
  await answered(page);
  await inView();
  assert.deepEqual(errors, []);
  await context.close();
});

test("a caption in another script is not read beside a picture, and said unreliable alone", { timeout: TEST }, async () => {
  const { context, page, errors } = await open();
  const chinese = "太糟糕了，我的猫死了，我很伤心。";
  await page.setInputFiles("#file", fixture("4066.jpg"));
  await page.fill("#caption", chinese);
  await page.click("#classify");
  const withPicture = await answered(page);
  assert.ok(close(withPicture.fused, withPicture.image), "the fused answer is not the picture's");
  assert.equal(withPicture.used, "From the picture alone: the caption was not read (see below).");
  assert.equal(withPicture.notes[0].kind, "caption-foreign");
  assert.match(withPicture.textNone, /not read/);
  await page.click("#clear");
  await page.fill("#caption", chinese);
  await page.click("#classify");
  const alone = await answered(page);
  assert.match(alone.notes[0].text, /unreliable/);
  assert.ok(await page.locator("#text.unreliable").isVisible());
  assert.deepEqual(errors, []);
  await context.close();
});

test("a long caption says where the model stopped reading, and every word read is explained", { timeout: TEST }, async () => {
  const { context, page, errors } = await open();
  const filler = "the weather today is quite ordinary and the bus came on time ".repeat(13);
  const caption = `${filler}but then my dog died and I am heartbroken and furious`;
  await page.setInputFiles("#file", fixture("4066.jpg"));
  await page.fill("#caption", caption);
  await page.click("#classify");
  const shown = await answered(page);
  const note = shown.notes.find((n) => n.kind === "caption-cut");
  assert.ok(note, JSON.stringify(shown.notes));
  const [, read, words] = note.text.match(/read the first (\d+) of its (\d+) words/).map(Number);
  assert.equal(words, caption.split(/\s+/).length);
  await page.waitForSelector("body[data-explained]", { timeout: WORK });
  const spans = await page.locator("#why-words .word").evaluateAll((s) => s.map((w) => ({ unread: w.classList.contains("unread"), effect: w.dataset.effect })));
  assert.equal(spans.length, words);
  assert.equal(spans.filter((w) => !w.unread).length, read);
  assert.ok(spans.slice(0, read).every((w) => w.effect !== undefined), "a word read has no effect");
  assert.ok(spans.slice(read).every((w) => w.unread && w.effect === undefined));
  assert.match(await page.locator("#why-summary").textContent(), new RegExp(`last ${words - read} words were not read`));
  assert.deepEqual(errors, []);
  await context.close();
});

test("axe-core: no serious or critical violation with an answer and its explanation, light and dark", { timeout: TEST }, async () => {
  const axe = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
  for (const colorScheme of ["light", "dark"]) {
    const { context, page, errors } = await open("backend=cpu", { colorScheme });
    await page.setInputFiles("#file", fixture("2626.jpg"));
    await page.fill("#caption", "Nice day chilling in the park yesterday relieved my mood for a short while. #friends #summer");
    await page.click("#classify");
    await answered(page);
    await page.waitForSelector("#why-picture:not([hidden])", { timeout: WORK });
    await page.addScriptTag({ path: axe });
    const violations = await page.evaluate(async () => {
      const result = await window.axe.run(document, { resultTypes: ["violations"] });
      return result.violations
        .filter((v) => v.impact === "serious" || v.impact === "critical")
        .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => `${n.target.join(" ")} ${n.failureSummary}`).join(" | ")}`);
    });
    assert.deepEqual(violations, [], colorScheme);
    assert.deepEqual(errors, []);
    await context.close();
  }
});
