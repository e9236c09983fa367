// The page's service worker: it makes the page open and classify offline after one visit.
// It lives beside index.html because a service worker only controls pages at or below its
// own folder. Same-origin requests go to the network first (a rebuilt page or model is never
// stale) and fall back to this cache; the page's files and both CPU modules are cached when it
// installs. Model weights are not kept here: the page's worker keeps each model folder in its
// own cache, checked against www/models.json and replaced when the model changes.
//
// Everything it serves carries the COOP/COEP headers that make the page cross-origin
// isolated: on a static host that sends none, the page can then share memory between workers
// and answer on several threads (pkg/cpu-threads) from its second visit on.

const CACHE = "mvsa-page-v1";
const PAGE = [
  "./",
  "index.html",
  "www/answer.js",
  "www/app.js",
  "www/bridge.js",
  "www/explain.js",
  "www/folder.js",
  "www/gpu.js",
  "www/models.js",
  "www/worker.js",
  "www/style.css",
  "www/icon.svg",
  "www/icon-192.png",
  "www/icon-512.png",
  "www/app.webmanifest",
  "www/models.json",
  "www/samples/samples.json",
  "pkg/cpu/mvsa_sentiment.js",
  "pkg/cpu/mvsa_sentiment_bg.wasm",
];
// Loaded instead of pkg/cpu where the page is cross-origin isolated.
const THREADED = ["pkg/cpu-threads/mvsa_sentiment.js", "pkg/cpu-threads/mvsa_sentiment_bg.wasm"];
// Kept by the worker's model caches instead (tens of MB each).
const MODEL_FILES = /\/(model\.bpk|tokenizer\.json)$/;

self.addEventListener("install", (event) => {
  event.waitUntil(
    precache().then(() => self.skipWaiting()),
  );
});

// The page's files, the threaded CPU module (with the script its pool's workers start from,
// whose path the module's glue names), the sample pairs' pictures that samples.json lists, and
// each model's metrics.json (its confusion matrix, shown offline too).
async function precache() {
  const cache = await caches.open(CACHE);
  await cache.addAll(PAGE);
  await cache.addAll(THREADED);
  const glue = await (await cache.match(THREADED[0])).text();
  const snippets = [...glue.matchAll(/from ['"]\.\/(snippets\/[^'"]+)['"]/g)];
  await cache.addAll(snippets.map((m) => new URL(m[1], new URL(THREADED[0], location)).href));
  const samples = await (await cache.match("www/samples/samples.json")).json();
  await cache.addAll(samples.map((s) => `www/${s.image}`));
  const { models } = await (await cache.match("www/models.json")).json();
  await cache.addAll(models.map((m) => `www/${m.id}/metrics.json`));
}

self.addEventListener("activate", (event) => {
  const older = (name) => name.startsWith("mvsa-page-") && name !== CACHE;
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter(older).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (MODEL_FILES.test(url.pathname)) return;
  event.respondWith(networkFirst(event.request).then(isolated));
});

// `response` with the headers that isolate the page (the browser reads them off the response
// the service worker hands back, wherever it came from).
function isolated(response) {
  if (response.status === 0) return response; // opaque: nothing to add
  const headers = new Headers(response.headers);
  headers.set("Cross-Origin-Opener-Policy", "same-origin");
  headers.set("Cross-Origin-Embedder-Policy", "require-corp");
  const empty = [204, 205, 304].includes(response.status);
  return new Response(empty ? null : response.body, { status: response.status, statusText: response.statusText, headers });
}

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok && response.type === "basic") await cache.put(request, response.clone());
    return response;
  } catch (offline) {
    // A page address may carry ?model= or ?backend=: the page is the same.
    const cached = await cache.match(request, { ignoreSearch: request.mode === "navigate" });
    if (cached) return cached;
    throw offline;
  }
}
