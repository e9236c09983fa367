// How the page is served and how Chromium is started, in one place for the page's end-to-end
// test, the browser benchmark and `scripts/serve.sh` (through scripts/serve.mjs).
import { createServer } from "node:http";
import { createReadStream, readFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { lookup } from "mrmime";
import sirv from "sirv";

/** The repository root: what the server serves. */
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The models the page offers (`www/models.json`, written by the trainer). */
export function models() {
  return JSON.parse(readFileSync(path.join(root, "www/models.json"), "utf8")).models;
}

/**
 * The headers that make a page cross-origin isolated, which is what lets it share memory
 * between workers (the page's threaded module). sw.js adds the same to what it serves.
 */
export const ISOLATION = {
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-embedder-policy": "require-corp",
};

/**
 * The page's workers that host worker.js, one per loaded model; the others are the threaded
 * module's pool workers, each host's own, which end with it.
 */
export function hostWorkers(page) {
  return page.workers().filter((w) => new URL(w.url()).pathname.endsWith("/www/worker.js"));
}

/** The badge of a page on the CPU: "CPU (wasm)", or with its threads where it is isolated. */
export const CPU_BADGE = /^CPU \(wasm(, \d+ threads)?\)$/;

/**
 * Serve the repository on loopback. `port` 0 picks a free one. Files are read afresh on every
 * request (a rebuilt pkg/ or a retrained model shows up on reload). With `throttle`
 * (bytes per second), files over 256 kB trickle out at that rate, as over a slow network.
 * `isolate: false` leaves out the COOP/COEP headers, as a plain static host does.
 */
export async function startServer({ port = 0, host = "127.0.0.1", throttle = 0, isolate = true } = {}) {
  const headers = isolate ? ISOLATION : {};
  const files = sirv(root, { dev: true, dotfiles: false });
  const notFound = (res) => {
    res.statusCode = 404;
    res.end("not found");
  };
  const server = createServer(async (req, res) => {
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    if (throttle && (await trickle(req, res, throttle))) return;
    files(req, res, () => notFound(res));
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const url = `http://${host}:${server.address().port}`;
  return { url, close: () => new Promise((resolve) => server.close(resolve)) };
}

// Send the file `req` asks for at `rate` bytes per second; false if it is not a large file.
async function trickle(req, res, rate) {
  const file = path.join(root, decodeURIComponent(new URL(req.url, "http://x").pathname));
  if (!file.startsWith(root + path.sep)) return false;
  const info = await stat(file).catch(() => null);
  if (!info?.isFile() || info.size < 256 * 1024) return false;
  res.writeHead(200, {
    "content-length": info.size,
    "content-type": lookup(file) ?? "application/octet-stream",
    "cache-control": "no-store",
  });
  for await (const chunk of createReadStream(file, { highWaterMark: 64 * 1024 })) {
    res.write(chunk);
    await sleep((chunk.length / rate) * 1000);
  }
  res.end();
  return true;
}

/**
 * Chromium's flags: WebGPU on (SwiftShader where there is no GPU), and no background traffic
 * (this machine's closed network refuses it). Root needs --no-sandbox.
 */
export const chromiumArgs = [
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-default-apps",
  "--disable-domain-reliability",
];

/** Debian's headless Chromium (or `$CHROMIUM`), driven by playwright-core; `args` replace
 * the flags above (a browser without WebGPU, say). */
export async function launchChromium(args = chromiumArgs) {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args,
    timeout: WORK,
  });
}

/** Bounds that only stop a hung page: every wait of the browser tests ends when its state is
 * reached. Software WebGPU on a busy 2-core machine takes minutes to warm up, so they are
 * generous. */
export const WORK = 600_000;
export const TEST = 1_200_000;

/**
 * Every context `browser` opens (and every page of `browser.newPage()`) waits up to WORK by
 * default, so that no click or wait falls back to Playwright's 30 s, which a busy 2-core
 * machine can exceed while the worker compiles.
 */
export function patient(browser) {
  const newContext = browser.newContext.bind(browser);
  browser.newContext = async (options) => {
    const context = await newContext(options);
    context.setDefaultTimeout(WORK);
    context.setDefaultNavigationTimeout(WORK);
    return context;
  };
  // newPage opens a context of its own, which closes with the page.
  browser.newPage = async (options) => {
    const context = await browser.newContext(options);
    const page = await context.newPage();
    page.on("close", () => context.close().catch(() => {}));
    return page;
  };
  return browser;
}

/**
 * A loopback server and a headless Chromium for one test file, started before its tests and
 * closed after (`hooks`: node:test's `before` and `after`). `open(query, options)` opens the
 * page in a new browser context, collects its uncaught errors and waits until a model is loaded.
 */
export function browserSuite({ before, after }) {
  const suite = { server: null, browser: null };
  before(async () => {
    suite.server = await startServer();
    suite.browser = patient(await launchChromium());
  });
  after(async () => {
    await suite.browser?.close();
    await suite.server?.close();
  });
  suite.open = async (query = "backend=cpu", options = {}) => {
    const context = await suite.browser.newContext(options);
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${suite.server.url}/index.html?${query}`);
    await page.waitForSelector("body[data-ready]", { timeout: WORK });
    return { context, page, errors };
  };
  return suite;
}

/**
 * Choose `backend` in the page's Backend menu. WebGPU on a software adapter (SwiftShader
 * here) first asks, in the page, whether to go on: `confirm` answers (true: load anyway).
 * Resolves once the menu's choice has loaded, or the page kept the model it had.
 */
export async function selectBackend(page, backend, { confirm = true } = {}) {
  const loaded = await page.evaluate(() => document.body.dataset.readyAt);
  await page.selectOption("#backend-choice", backend);
  const asked = await page.waitForFunction(
    (was) => (!document.querySelector("#gpu-warning").hidden ? "asked" : document.body.dataset.readyAt !== was || !document.querySelector("#error").hidden ? "done" : null),
    loaded,
    { timeout: WORK },
  );
  if ((await asked.jsonValue()) !== "asked") return;
  await page.click(confirm ? "#gpu-go" : "#gpu-stay");
  if (confirm) await page.waitForFunction((was) => document.body.dataset.readyAt !== was, loaded, { timeout: WORK });
}

/** Hand a File made in the page by `make` (a function run there: a canvas picture, or bytes)
 * to the page's picture input, as choosing it would. */
export async function chooseMade(page, make) {
  await page.evaluate(async (source) => {
    const file = await new Function(`return (${source})`)()();
    const transfer = new DataTransfer();
    transfer.items.add(file);
    const input = document.querySelector("#file");
    input.files = transfer.files;
    input.dispatchEvent(new Event("change"));
  }, make.toString());
}

/** For `chooseMade`: an 8000 x 8000 JPEG (a gradient), slow to check. */
export async function hugeJpeg() {
  const canvas = new OffscreenCanvas(8000, 8000);
  const g = canvas.getContext("2d");
  const fill = g.createLinearGradient(0, 0, 8000, 8000);
  fill.addColorStop(0, "#fc3");
  fill.addColorStop(1, "#36c");
  g.fillStyle = fill;
  g.fillRect(0, 0, 8000, 8000);
  const blob = await canvas.convertToBlob({ type: "image/jpeg", quality: 0.9 });
  return new File([blob], "huge.jpg", { type: "image/jpeg" });
}
