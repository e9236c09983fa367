// The page's worker: it downloads the wasm module and a model folder (streamed, with progress,
// the folder through the Cache API), has the Rust side (pkg/) build the classifier, warms it up
// and classifies, all off the main thread. app.js talks to it with messages: requests
// {id, type, ...} in; {id, type: "progress" | "loaded" | "result" | "error", ...} out (results
// of classify, inspect and pair carry `wasmBytes`, the wasm memory held), and
// {id, type: "backend", backend, why} once `auto` has compared WebGPU with the CPU. Requests:
// load, classify, explain (after a classify: skipped once newer input came), inspect (check a
// picture as it is chosen), pair (one pair of a folder, from its files' bytes) and retire (no
// answer: another worker serves now). bridge.js starts one worker for each model it loads.
//
// Three builds of the module: on the CPU, pkg/cpu-threads (the kernels on a pool of workers
// sharing the module's memory) where the page is cross-origin isolated and more than one thread
// is wanted, else pkg/cpu (one thread); pkg/webgpu is fetched only where the browser has a
// hardware WebGPU adapter.

import { adapterInfo } from "./gpu.js";

const modules = {}; // kind ("cpu" | "cpu-threads" | "webgpu") → the initialised wasm-bindgen module
const memories = {}; // kind → that module's linear memory (it grows, and never shrinks)
let classifier = null; // the WebClassifier answering now
let asked = 0; // requests about new input so far (classify, inspect, pair): explanations asked before the newest are skipped
let wasmLock = Promise.resolve(); // one call into the wasm at a time
let loading = 0; // generation of the newest load

const post = (message) => self.postMessage(message);
const message = (e) => (e instanceof Error ? e.message : String(e));

// The bytes of wasm memory the page holds now, every module together.
const wasmBytes = () => Object.values(memories).reduce((sum, m) => sum + m.buffer.byteLength, 0);

// Run `f` when no other call into the wasm is running (downloads run alongside).
function exclusive(f) {
  const run = wasmLock.then(f, f);
  wasmLock = run.catch(() => {});
  return run;
}

self.onmessage = async ({ data }) => {
  const { id, type } = data;
  try {
    if (type === "retire") asked++; // another worker serves now: pending explanations are skipped
    else if (type === "load") await load(id, data);
    else if (type === "classify") post({ id, type: "result", ...(await classify(data)), wasmBytes: wasmBytes() });
    else if (type === "explain") post({ id, type: "result", ...(await explain(data)) });
    else if (type === "inspect") post({ id, type: "result", ...(await inspect(data)), wasmBytes: wasmBytes() });
    else if (type === "pair") post({ id, type: "result", ...(await pair(data)), wasmBytes: wasmBytes() });
    else throw new Error(`unknown request ${type}`);
  } catch (e) {
    post({ id, type: "error", message: message(e) });
  }
};

async function classify({ image, caption }) {
  if (!classifier) throw new Error("no model is loaded yet");
  asked++;
  const bytes = image ? new Uint8Array(image) : undefined;
  return exclusive(() => classifier.classify(bytes, caption || undefined));
}

// Occlusion explanations cost a few forward passes (seconds on a slow CPU), which cannot be
// stopped once begun: one begins only after a short pause, and is skipped if new input came
// meanwhile, so going on to the next picture never waits behind an explanation nobody reads.
const EXPLAIN_AFTER_MS = 300;

async function explain({ image, caption, grid }) {
  if (!classifier) throw new Error("no model is loaded yet");
  const mine = asked;
  const bytes = image ? new Uint8Array(image) : undefined;
  await new Promise((resolve) => setTimeout(resolve, EXPLAIN_AFTER_MS));
  return exclusive(() => (mine !== asked ? { stale: true } : classifier.explain(bytes, caption || undefined, grid)));
}

// A picture checked as it is chosen; before any model is loaded it is checked on classify.
async function inspect({ image }) {
  asked++;
  if (!classifier) return { unchecked: true };
  // Decoding only, synchronous, on the CPU: it need not wait behind a slow explanation.
  return classifier.inspect(new Uint8Array(image));
}

// One pair of a folder, from its files' bytes, under the model crate's rule for folders
// (what `predict --list` runs): the caption decoded as the trainer reads it, an empty one
// leaving the picture alone, an unreadable picture the caption alone, each said in `notes`.
async function pair({ image, caption }) {
  if (!classifier) throw new Error("no model is loaded yet");
  asked++;
  const bytes = (b) => (b ? new Uint8Array(b) : undefined);
  return exclusive(() => classifier.classifyPair(bytes(image), bytes(caption)));
}

const ms = (x) => `${x.toFixed(1)} ms`;

// Load the model `model` (an entry of www/models.json) from `base` on `backend`: "cpu",
// "webgpu", or "auto": the CPU build first, then, where the adapter is hardware, WebGPU in the
// background, which takes over only if its warm classification is faster than the CPU's.
// `threads`: how many the CPU may use. Each answer says why it runs where it runs.
async function load(id, { base, model, backend, threads }) {
  const generation = ++loading;
  const progress = (stage, detail = {}) => post({ id, type: "progress", stage, ...detail });
  const adapter = backend === "cpu" ? null : await adapterInfo();
  // Forced WebGPU without an adapter: said in words, before any download.
  if (backend === "webgpu" && adapter.kind === "none") throw new Error(`${adapter.why}`);
  const files = download(base, model, progress);
  files.catch(() => {}); // awaited below, unless the module fails first
  const cpu = cpuModule(threads);
  const ready = backend === "webgpu" ? await build("webgpu", files, progress) : await buildCpu(cpu, files, progress);
  if (generation !== loading) return ready.next.free();
  swap(ready.next);
  const why = {
    cpu: "the CPU was chosen in the Backend menu",
    webgpu: "WebGPU was chosen in the Backend menu",
    auto: adapter?.kind === "hardware" ? `trying WebGPU (${adapter?.name}) in the background` : adapter?.why,
  }[backend];
  const { fromCache } = await files;
  const limits = ready.next.limits;
  const onCpu = ready.next.backend === "cpu" ? { threads: cpu.threads, threadsWhy: cpu.why } : {};
  post({ id, type: "loaded", backend: ready.next.backend, warm: ready.warm, fromCache, why, limits, ...onCpu });
  if (backend === "auto" && adapter.kind === "hardware") await compare(id, generation, files, ready.warm, adapter.name, cpu);
}

// Which CPU module to load for `wanted` threads (the page asks for the device's cores, at most
// 8: one picture's convolutions stop gaining well before that), and why: the threaded one needs
// memory shared between workers, which browsers give only to cross-origin isolated pages.
function cpuModule(wanted) {
  const threads = Math.max(1, Math.floor(wanted ?? 1));
  if (threads === 1) return { kind: "cpu", threads, why: "one thread was asked for" };
  if (!self.crossOriginIsolated) {
    return { kind: "cpu", threads: 1, why: "one thread: the page is not cross-origin isolated (the server sends no COOP/COEP headers, and the service worker adds them from the next visit)" };
  }
  if (!sharedMemory()) return { kind: "cpu", threads: 1, why: "one thread: this browser has no WebAssembly threads" };
  return { kind: "cpu-threads", threads, why: `${threads} threads` };
}

function sharedMemory() {
  try {
    return new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer;
  } catch {
    return false;
  }
}

// The classifier on the CPU module `cpu` picked (updated in place where the threaded one
// cannot start, and the single-threaded one answers instead).
async function buildCpu(cpu, files, progress) {
  if (cpu.kind === "cpu") return build("cpu", files, progress);
  try {
    return await build(cpu.kind, files, progress, cpu.threads);
  } catch (e) {
    await files; // a bad download is the error, not the threads
    Object.assign(cpu, { kind: "cpu", threads: 1, why: `one thread: the threaded module failed (${message(e)})` });
    return build("cpu", files, progress);
  }
}

// Build the model on WebGPU too, and keep it only if a warm classification there is faster.
async function compare(id, generation, files, cpu, name, module) {
  const threads = { threads: module.threads, threadsWhy: module.why }; // of the CPU module, said when it stays
  const answer = (backend, why) => post({ id, type: "backend", backend, why, ...(backend === "cpu" ? threads : {}) });
  try {
    const gpu = await build("webgpu", files, () => {});
    if (generation !== loading) return gpu.next.free();
    const timing = `WebGPU (${name}) ${ms(gpu.warm.warm_ms)} a classification, the CPU ${ms(cpu.warm_ms)}`;
    if (gpu.warm.warm_ms < cpu.warm_ms) {
      swap(gpu.next);
      answer("webgpu", `faster here: ${timing}`);
    } else {
      gpu.next.free();
      answer("cpu", `the CPU is faster here: ${timing}`);
    }
  } catch (e) {
    if (generation === loading) answer("cpu", `WebGPU failed, so the CPU answers: ${message(e)}`);
  }
}

function swap(next) {
  return exclusive(() => {
    classifier?.free();
    classifier = next;
  });
}

// The classifier on `kind`'s module, built from the downloaded files and warmed up.
async function build(kind, files, progress, threads = 1) {
  const module = await wasmModule(kind, progress, threads);
  const { bytes } = await files;
  progress("preparing");
  const next = await exclusive(() => module.WebClassifier.create(bytes, kind === "webgpu" ? "webgpu" : "cpu"));
  progress("warming");
  const warm = await exclusive(() => next.warmUp());
  return { next, warm };
}

async function wasmModule(kind, progress, threads) {
  if (!modules[kind]) {
    modules[kind] = (async () => {
      const dir = new URL(`../pkg/${kind}/`, import.meta.url);
      const glue = await import(new URL("mvsa_sentiment.js", dir));
      // Revalidated with the server (a rebuilt module is never stale), or offline the copy the
      // browser has; counted as it streams.
      const url = new URL("mvsa_sentiment_bg.wasm", dir);
      const response = await fetch(url, { cache: "no-cache" }).catch(() => fetch(url, { cache: "force-cache" }));
      if (!response.ok) throw new Error(`the ${kind} module: HTTP ${response.status}`);
      const counted = counting(response, (loaded, total) =>
        progress("engine", { loaded, total }),
      );
      const exports = await glue.default({ module_or_path: counted });
      // The threaded module's pool: workers of its own that run the kernels while this one
      // waits. A pool worker that cannot fetch its script never says it is ready, so the wait
      // is bounded: then the one-thread module answers.
      if (kind === "cpu-threads") await within(POOL_START_MS, glue.initThreadPool(threads), "the thread pool did not start");
      memories[kind] = exports.memory;
      return glue;
    })();
    modules[kind].catch(() => delete modules[kind]);
  }
  return modules[kind];
}

const POOL_START_MS = 20_000;

// `promise`, or an error saying `what` once `ms` have passed.
function within(ms, promise, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

// `response` again, its body reported to `onProgress(loaded, total)` as it is read.
function counting(response, onProgress) {
  const total = Number(response.headers.get("content-length") ?? 0);
  let loaded = 0;
  const body = response.body.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        loaded += chunk.byteLength;
        onProgress(loaded, total);
        controller.enqueue(chunk);
      },
    }),
  );
  return new Response(body, { headers: { "content-type": "application/wasm" } });
}

// Every file of the model folder, as {bytes: {name: Uint8Array}, fromCache}. Files come from a
// cache named after the manifest entry (any retrained model has a new one; older ones of the
// same model are deleted), else from the network while being written to that cache. Each file
// must have the size and SHA-256 the manifest lists: a cached copy that does not is dropped
// and fetched again; a downloaded one that does not is an error naming the file.
async function download(base, model, progress) {
  const cacheName = `mvsa:${model.id}:${await digest(JSON.stringify(model))}`;
  const cache = await caches.open(cacheName);
  await forgetOlder(model.id, cacheName);
  const total = Object.values(model.files).reduce((a, b) => a + b, 0);
  let done = 0;
  let fromCache = true;
  const bytes = {};
  for (const name of Object.keys(model.files)) {
    const url = new URL(name, base).href;
    const before = done;
    const onProgress = (cached) => (loaded) => {
      done = before + loaded;
      progress("model", { loaded: done, total, fromCache: cached });
    };
    const cached = await cache.match(url);
    if (cached) {
      const file = await readAll(cached, model.files[name], onProgress(true));
      if ((await mismatch(model, name, file)) === null) {
        bytes[name] = file;
        continue;
      }
      await cache.delete(url); // truncated or stale: fetched again below
    }
    fromCache = false;
    const { file, stored } = await fetchFile(url, name, cache, model.files[name], onProgress(false));
    const wrong = await mismatch(model, name, file);
    if (wrong !== null) {
      await stored; // so the bad copy is not written after it is deleted
      await cache.delete(url);
      throw new Error(`${name}: the download does not match www/models.json (${wrong}); the file on the server is corrupted or from another training run`);
    }
    bytes[name] = file;
  }
  return { bytes, fromCache };
}

// One file from the network, written to `cache` as it is read (not waited for: a full disk
// only costs the next visit), as {file, stored}: its bytes, and when the cache has it.
async function fetchFile(url, name, cache, expected, onProgress) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
  const [forCache, forUs] = response.body.tee();
  const stored = cache.put(url, new Response(forCache, { headers: response.headers })).catch(() => {});
  const file = await readAll(new Response(forUs, { headers: response.headers }), expected, onProgress);
  return { file, stored };
}

// What is wrong with `file` against the manifest's size and SHA-256 for `name`, or null.
async function mismatch(model, name, file) {
  if (file.byteLength !== model.files[name]) return `${file.byteLength} bytes, ${model.files[name]} expected`;
  const want = model.sha256?.[name];
  if (!want) return null; // a manifest written before hashes were listed
  const got = await sha256(file);
  return got === want ? null : `sha256 ${got.slice(0, 12)}…, ${want.slice(0, 12)}… expected`;
}

async function sha256(bytes) {
  const hash = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(hash)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// The whole body in one buffer (sized from the manifest), read chunk by chunk.
async function readAll(response, expected, onProgress) {
  let buffer = new Uint8Array(expected);
  let length = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (length + value.byteLength > buffer.byteLength) {
      const grown = new Uint8Array(Math.max(buffer.byteLength * 2, length + value.byteLength));
      grown.set(buffer.subarray(0, length));
      buffer = grown;
    }
    buffer.set(value, length);
    length += value.byteLength;
    onProgress(length);
  }
  return length === buffer.byteLength ? buffer : buffer.slice(0, length);
}

async function digest(text) {
  return (await sha256(new TextEncoder().encode(text))).slice(0, 16);
}

// Delete the caches of older versions of the model `id` (and those of the first versions of
// the page, which named caches after a digest alone).
async function forgetOlder(id, keep) {
  for (const name of await caches.keys()) {
    const older = name.startsWith(`mvsa:${id}:`) || /^mvsa-model-[0-9a-f]{16}$/.test(name);
    if (older && name !== keep) await caches.delete(name);
  }
}
