// The browser benchmark's measurements (www/bench.html starts this module as a worker, where the
// page's own worker.js runs the model too: a worker may wait on the threaded module's pool,
// where the page's main thread could only spin). Its query string is bench.html's.
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const result = { userAgent: navigator.userAgent, backends: {} };

async function time(f) {
  const t = performance.now();
  const value = await f();
  return [performance.now() - t, value];
}

// `?ops=1`: each encoder's operations timed too (profileOperations), as `bench --profile`.
const opsWanted = new URLSearchParams(self.location.search).get("ops") === "1";

// Per encoder, each operation's median over the rounds, slowest first.
function operations(rounds) {
  const out = {};
  for (const encoder of ["image", "text"]) {
    const names = Object.keys(rounds[0][encoder] ?? {});
    const medians = names.map((n) => [n, median(rounds.map((r) => r[encoder][n]))]);
    out[encoder] = Object.fromEntries(medians.sort((a, b) => b[1] - a[1]));
  }
  return out;
}

async function files(model) {
  const base = new URL(`${model.id}/`, import.meta.url);
  const bytes = {};
  for (const name of Object.keys(model.files)) {
    bytes[name] = new Uint8Array(await (await fetch(new URL(name, base))).arrayBuffer());
  }
  return bytes;
}

async function measure(kind, backend, model, bytes, image, caption, threads) {
  const [moduleMs, wasm] = await time(async () => {
    const glue = await import(`../pkg/${kind}/mvsa_sentiment.js`);
    await glue.default();
    if (kind === "cpu-threads") await glue.initThreadPool(threads);
    return glue;
  });
  const [loadMs, classifier] = await time(() => wasm.WebClassifier.create(bytes, backend));
  const [warmMs, warmUp] = await time(() => classifier.warmUp());
  const [firstMs] = await time(() => classifier.classify(image, caption));
  const warm = [];
  const stages = [];
  const ops = [];
  const runs = firstMs > 2000 ? 3 : 15; // fewer where one takes seconds (a software adapter)
  for (let i = 0; i < runs; i++) {
    warm.push((await time(() => classifier.classify(image, caption)))[0]);
    stages.push(await classifier.profile(image, caption));
    if (opsWanted && backend === "cpu") ops.push(classifier.profileOperations(image, caption));
  }
  const calls = 10000;
  const [callMs] = await time(() => { for (let i = 0; i < calls; i++) wasm.noop(); });
  const stage = (key) => median(stages.map((s) => s[key]));
  classifier.free();
  return {
    module_ms: moduleMs, load_ms: loadMs, warm_up_ms: warmMs, warm_up_run_ms: warmUp.warm_ms,
    first_ms: firstMs,
    warm_median_ms: median(warm), warm_min_ms: Math.min(...warm), runs,
    stages_ms: { preprocess: stage("preprocess"), image_encoder: stage("image_encoder"),
                 text_encoder: stage("text_encoder"), heads: stage("heads") },
    call_us: (callMs * 1000) / calls,
    ...(ops.length ? { operations_ms: operations(ops) } : {}),
    module: kind,
    threads: backend === "cpu" ? wasm.threads() : null,
  };
}

try {
  const { models } = await (await fetch(new URL("models.json", import.meta.url))).json();
  const wanted = new URLSearchParams(self.location.search).get("model");
  const model = models.find((m) => m.id === wanted) ?? models[0];
  result.model = model.id;
  const threads = Number(new URLSearchParams(self.location.search).get("threads") ?? 1);
  result.threads_requested = threads;
  result.cross_origin_isolated = self.crossOriginIsolated;
  const cpuKind = threads > 1 && self.crossOriginIsolated ? "cpu-threads" : "cpu";
  const [downloadMs, bytes] = await time(() => files(model));
  result.download_ms = downloadMs;
  const image = new Uint8Array(await (await fetch(new URL("samples/2626.jpg", import.meta.url))).arrayBuffer());
  const caption = "Nice day chilling in the park yesterday #friends #summer";
  for (const [kind, backend] of [[cpuKind, "cpu"], ["webgpu", "webgpu"]]) {
    try {
      result.backends[backend] = await measure(kind, backend, model, bytes, image, caption, threads);
    } catch (e) {
      result.backends[backend] = { skipped: String(e.message ?? e) };
    }
  }
} catch (e) {
  result.error = String(e.message ?? e);
}
self.postMessage(result);
