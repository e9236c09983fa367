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
 * Serve the repository on loopback. `port` 0 picks a free one. Files are read afresh on every
 * request (a rebuilt pkg/ or a retrained model shows up on reload). With `throttle`
 * (bytes per second), files over 256 kB trickle out at that rate, as over a slow network.
 */
export async function startServer({ port = 0, host = "127.0.0.1", throttle = 0 } = {}) {
  const files = sirv(root, { dev: true, dotfiles: false });
  const notFound = (res) => {
    res.statusCode = 404;
    res.end("not found");
  };
  const server = createServer(async (req, res) => {
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

/** Debian's headless Chromium (or `$CHROMIUM`), driven by playwright-core. */
export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: chromiumArgs,
  });
}

/** Bounds that only stop a hung page: every wait of the browser tests ends when its state is
 * reached. Software WebGPU on a busy 2-core machine takes minutes to warm up, so they are
 * generous. */
export const WORK = 600_000;
export const TEST = 1_200_000;

/**
 * A loopback server and a headless Chromium for one test file, started before its tests and
 * closed after (`hooks`: node:test's `before` and `after`). `open(query, options)` opens the
 * page in a new browser context, collects its uncaught errors and waits until a model is loaded.
 */
export function browserSuite({ before, after }) {
  const suite = { server: null, browser: null };
  before(async () => {
    suite.server = await startServer();
    suite.browser = await launchChromium();
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
