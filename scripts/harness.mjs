// How the page is served and how Chromium is started, in one place for the page's end-to-end
// test, the browser benchmark and `scripts/serve.sh` (through scripts/serve.mjs).
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import sirv from "sirv";

/** The repository root: what the server serves. */
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The models the page offers (`www/models.json`, written by the trainer). */
export function models() {
  return JSON.parse(readFileSync(path.join(root, "www/models.json"), "utf8")).models;
}

/**
 * Serve the repository on loopback. `port` 0 picks a free one. Files are read afresh on every
 * request (a rebuilt pkg/ or a retrained model shows up on reload).
 */
export async function startServer({ port = 0, host = "127.0.0.1" } = {}) {
  const files = sirv(root, { dev: true, dotfiles: false });
  const server = createServer((req, res) =>
    files(req, res, () => {
      res.statusCode = 404;
      res.end("not found");
    }),
  );
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const url = `http://${host}:${server.address().port}`;
  return { url, close: () => new Promise((resolve) => server.close(resolve)) };
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
